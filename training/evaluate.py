"""Validation during and after training, through the same code the app and the CLI use.

Raw candidates come from `detector.predictor.Predictor` (score floor 0.01, NMS off), so training measures
exactly what a saved checkpoint will produce. They are then scored by `detector.scoring.score_candidates`
at the run's validation thresholds (`validation_thresholds`):
- mAP and the other COCO stats at a low score threshold (`map_score`, 0.05): COCO's AP integrates over
  the whole precision-recall curve, and cutting detections at 0.5 throws its low-precision end away;
- the seed validated at score 0.5 / NMS 0.5: the same stats at `val_score` are recorded with an
  `_at_val_score` suffix, and number accuracy (Task 2) is read at `val_score`.
After training, `calibrate_thresholds` (detector.calibration) picks the thresholds stored in the checkpoint.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from detector.calibration import Calibration, calibrate
from detector.checkpoint import CheckpointMeta
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.models import ModelConfig
from detector.predictor import Predictor
from detector.scoring import score_candidates
from detector.thresholds import Thresholds
from training.config import TrainConfig
from training.data import BadImage, BadImageLog
from training.distributed import DistInfo, gather_to_main


@dataclass
class EvalSet:
    """A named validation set and the loader over its images."""

    name: str
    records: list[ImageRecord]
    loader: DataLoader


def _finite(det: Detections) -> Detections:
    """A diverged model can emit NaN boxes; they are no detection at all (and pred.json must stay valid)."""
    keep = torch.isfinite(det.boxes).all(dim=1) & torch.isfinite(det.scores)
    return det if bool(keep.all()) else det.select(torch.nonzero(keep).flatten())


@torch.no_grad()
def collect_candidates(model: torch.nn.Module, model_config: ModelConfig, loader: DataLoader, device: torch.device,
                       amp_dtype: torch.dtype | None, info: DistInfo, bad_images: BadImageLog,
                       progress: bool, desc: str) -> dict[int, Detections] | None:
    """Raw candidates for every readable image of the loader, gathered on rank 0 (None on other ranks).

    The model is left in eval mode with the Predictor's raw-candidate settings (they only act in eval mode).
    """
    predictor = Predictor(model=model, meta=CheckpointMeta(config=model_config), device=device)
    local: dict[int, Detections] = {}
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                      disable=not (progress and info.is_main)):
        good = [(image_id, array) for image_id, array in batch if not isinstance(array, BadImage)]
        bad_images.report([array for _, array in batch if isinstance(array, BadImage)])
        if not good:
            continue
        with autocast:
            found = predictor.candidates([array for _, array in good], batch_size=len(good))
        for (image_id, _), det in zip(good, found, strict=False):
            local[image_id] = _finite(det)
    gathered = gather_to_main(info, local)
    if gathered is None:
        return None
    merged: dict[int, Detections] = {}
    for part in gathered:  # the sampler pads shards with repeats; the same id twice is the same image
        merged.update(part)
    return merged


def validation_thresholds(config: TrainConfig) -> Thresholds:
    """What a run validates at, and what its checkpoints carry until calibration: the seed's one score threshold
    for the boxes and the number."""
    return Thresholds(score=config.val_score, nms_iou=config.val_nms, number_score=config.val_score,
                      class_agnostic=config.class_agnostic)


def split_metrics(records: Sequence[ImageRecord], candidates: Mapping[int, Detections],
                  config: TrainConfig) -> dict[str, Any]:
    """The 12 COCO stats at map_score, the same at val_score, number accuracy at val_score, per-class AP."""
    if not any(r.image_id in candidates for r in records):  # unreadable images were reported and skipped
        raise RuntimeError("no readable validation image")
    score = score_candidates(records, candidates, validation_thresholds(config), backend=config.coco_backend,
                             map_floor=config.map_score)
    out: dict[str, Any] = dict(score.metrics.stats)
    out.update({f"{name}_at_val_score": value for name, value in score.metrics_at(config.val_score).stats.items()})
    out["number_accuracy"] = score.number_accuracy
    out["per_class_AP"] = {str(c): v for c, v in score.metrics.per_class_ap.items()}
    out["images"] = len(score.records)
    return out


def calibrate_thresholds(records: Sequence[ImageRecord], candidates: Mapping[int, Detections],
                         config: TrainConfig) -> Calibration:
    """The thresholds a run's best checkpoint carries: detector.calibration from the run's own NMS setting (the
    global number threshold, then per-digit ones where valid is large enough to show a gain)."""
    return calibrate(records, candidates, validation_thresholds(config))
