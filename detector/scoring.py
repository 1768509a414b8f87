"""Score a checkpoint on a labelled split: one place for what `python -m detector evaluate` and the benchmarks
report (COCO stats on detections above a low floor, number accuracy at the number threshold)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from detector.coco_eval import CocoMetrics, evaluate_coco, number_accuracy
from detector.detections import Detections
from detector.hw2 import Split, records_to_coco
from detector.predictor import Predictor
from detector.refilter import refilter_many

MAP_SCORE_FLOOR = 0.05  # COCO mAP wants low-score detections too: cutting at the display threshold costs mAP


@dataclass
class SplitScore:
    metrics: CocoMetrics
    number_accuracy: float
    number_threshold: float
    candidates: dict[int, Detections]

    def row(self) -> dict[str, Any]:
        return {**self.metrics.stats, "number_accuracy": self.number_accuracy}


def predict_split(predictor: Predictor, split: Split, batch_size: int = 8, progress: bool = True) -> dict[int, Detections]:
    """Raw candidates for every readable image of the split; unreadable ones are reported on stderr and skipped."""
    candidates = {}
    items = ((r.image_id, r.path) for r in split.records)
    for image_id, result in predictor.candidates_for_paths(items, batch_size, progress=progress, total=len(split)):
        if isinstance(result, Exception):
            print(f"warning: {result}", file=sys.stderr)
            continue
        candidates[image_id] = result
    return candidates


def score_split(predictor: Predictor, split: Split, *, nms_iou: float | None = None, class_agnostic: bool | None = None,
                number_threshold: float | None = None, backend: str = "pycocotools", batch_size: int = 8,
                progress: bool = True) -> SplitScore:
    """Thresholds default to the checkpoint's calibrated ones."""
    t = predictor.meta.thresholds
    nms_iou = float(t["nms_iou"] if nms_iou is None else nms_iou)
    agnostic = bool(t.get("class_agnostic", False) if class_agnostic is None else class_agnostic)
    number_threshold = float(t["number_score"] if number_threshold is None else number_threshold)
    candidates = predict_split(predictor, split, batch_size, progress)
    final = refilter_many(candidates, MAP_SCORE_FLOOR, nms_iou, agnostic)
    readable = [r for r in split.records if r.image_id in candidates]
    metrics = evaluate_coco(records_to_coco(readable), final, backend=backend)
    accuracy = number_accuracy(readable, final, number_threshold)
    return SplitScore(metrics=metrics, number_accuracy=accuracy, number_threshold=number_threshold, candidates=candidates)
