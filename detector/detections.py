"""The detections container shared by prediction, re-filtering, matching, evaluation and the app."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Detections:
    """Detections for one image, in original-image pixels.

    boxes: (N, 4) float32 xyxy; scores: (N,) float32; labels: (N,) int64 category ids 1..10 (1 is digit 0).
    A model's raw candidates (low score floor, no NMS) and the final, filtered detections share this type.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def empty(cls) -> Detections:
        return cls(torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64))

    def __len__(self) -> int:
        return int(self.scores.numel())

    def select(self, index: torch.Tensor) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.labels[index])

    def to(self, device: str | torch.device) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))
