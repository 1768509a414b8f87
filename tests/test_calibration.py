"""Threshold calibration after training picks the score threshold and NMS mode that read numbers best."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detector.detections import Detections
from detector.hw2 import ImageRecord
from training.config import resolve
from training.evaluate import calibrate_thresholds


def _record(image_id: int, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(image_id=image_id, file_name=f"{image_id}.png", width=100, height=50, path=Path("."),
                       boxes=np.array(boxes, dtype=np.float32), category_ids=np.array(labels, dtype=np.int64))


def test_calibration_prefers_class_agnostic_nms_when_a_digit_gets_two_classes() -> None:
    # digit "1" (category 2) at x 10..20 also scored as "7" (category 8) on the same box; digit "4" at 40..50
    record = _record(1, [[10, 5, 20, 45], [40, 5, 50, 45]], [2, 5])
    candidates = {1: Detections(torch.tensor([[10.0, 5, 20, 45], [10.5, 5, 20.5, 45], [40, 5, 50, 45]]),
                                torch.tensor([0.95, 0.92, 0.90]), torch.tensor([2, 8, 5]))}
    config = resolve({"data": "unused", "preset": "resnet18"})
    thresholds, points = calibrate_thresholds([record], candidates, config)
    assert thresholds.class_agnostic is True
    assert thresholds.number_score <= 0.9  # no score cut alone separates the "7" (0.92) from the "4" (0.90)
    assert max(p["number_accuracy"] for p in points) == 1.0

    # without the confusing second box, the run's own (class-aware) setting is kept
    plain = {1: candidates[1].select(torch.tensor([0, 2]))}
    thresholds, _ = calibrate_thresholds([record], plain, config)
    assert thresholds.class_agnostic is config.class_agnostic and thresholds.nms_iou == config.val_nms
