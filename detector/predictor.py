"""Run a detector once per image and keep its raw candidates, so thresholds can be changed without it.

The model runs with a low score floor and NMS switched off (IoU threshold 1.0 keeps every box), and returns
boxes in original-image pixels. Score and NMS thresholds are then applied to these cached candidates by
`detector.refilter`, which is what makes the app's sliders instant and lets evaluation sweep thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from detector.checkpoint import CheckpointMeta, load_checkpoint
from detector.detections import Detections
from detector.images import ImageSource, load_rgb

DEFAULT_SCORE_FLOOR = 0.01
DEFAULT_MAX_CANDIDATES = 300


def resolve_device(device: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when present; an unavailable device is a clear error, not a crash later."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    return dev


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    return F.to_dtype(F.to_image(image), torch.float32, scale=True)


@dataclass
class Predictor:
    """A loaded model in raw-candidate mode plus the checkpoint metadata it came with."""

    model: torch.nn.Module
    meta: CheckpointMeta
    device: torch.device
    score_floor: float = DEFAULT_SCORE_FLOOR
    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def __post_init__(self) -> None:
        heads = self.model.roi_heads
        heads.score_thresh = self.score_floor
        heads.nms_thresh = 1.0  # NMS happens later, on the cached candidates
        heads.detections_per_img = self.max_candidates
        self.model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = "auto", **kwargs: float) -> "Predictor":
        dev = resolve_device(device)
        loaded = load_checkpoint(path, device=dev)
        return cls(model=loaded.model, meta=loaded.meta, device=dev, **kwargs)

    @torch.inference_mode()
    def candidates(self, images: Sequence[ImageSource], batch_size: int = 8) -> list[Detections]:
        """Raw candidates for each image (any mode/size; loaded with detector.images.load_rgb)."""
        out: list[Detections] = []
        for start in range(0, len(images), batch_size):
            batch = [image_to_tensor(load_rgb(im)).to(self.device) for im in images[start:start + batch_size]]
            for result in self.model(batch):
                out.append(Detections(result["boxes"].float().cpu(), result["scores"].float().cpu(),
                                      result["labels"].cpu()))
        return out

    def candidates_for_paths(
        self, items: Iterable[tuple[int, Path]], batch_size: int = 8, progress: bool = True, total: int | None = None
    ) -> Iterator[tuple[int, Detections | Exception]]:
        """(image_id, candidates) for each (image_id, path); an unreadable image yields its error, not a crash."""
        from tqdm import tqdm

        items = list(items)
        bar = tqdm(total=total or len(items), disable=not progress, unit="img", desc="predict")
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            loaded: list[tuple[int, Image.Image]] = []
            for image_id, path in chunk:
                try:
                    loaded.append((image_id, load_rgb(path)))
                except ValueError as err:
                    yield image_id, err
            if loaded:
                for (image_id, _), det in zip(loaded, self.candidates([im for _, im in loaded], batch_size)):
                    yield image_id, det
            bar.update(len(chunk))
        bar.close()

