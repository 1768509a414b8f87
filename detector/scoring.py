"""Score a labelled split: the one path from raw candidates to COCO stats and number accuracy.

`score_candidates` is what `python -m detector evaluate` prints (through `score_split`), what training records
per epoch (training.evaluate) and what the app's validation tab shows (studio.failures): re-filter once, COCO
evaluation on every box down to a low floor, the house number read at the number threshold. Images without
candidates (unreadable ones) are left out of every figure.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.coco_eval import CocoMetrics, evaluate_coco, reading_accuracy
from detector.detections import Detections
from detector.hw2 import ImageRecord, Split, records_to_coco
from detector.number import NumberReading
from detector.predictor import Predictor
from detector.refilter import above_score, refilter_many
from detector.thresholds import Thresholds

MAP_SCORE_FLOOR = 0.05  # COCO mAP wants low-score detections too: cutting at the display threshold costs mAP


@dataclass(eq=False)  # holds tensors
class SplitScore:
    metrics: CocoMetrics  # on every box down to map_floor
    number_accuracy: float
    thresholds: Thresholds
    map_floor: float
    records: list[ImageRecord]  # the scored (readable) images
    final: dict[int, Detections]  # NMS survivors down to min(map_floor, score, any number cut): later cuts are exact
    readings: dict[int, NumberReading]  # each image's number, read at the thresholds' number cuts
    backend: str
    seconds: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {**self.metrics.stats, "number_accuracy": self.number_accuracy}

    def at(self, score_threshold: float) -> dict[int, Detections]:
        """Each image's final detections at or above a score threshold (as many as `final` holds)."""
        return {image_id: above_score(d, score_threshold) for image_id, d in self.final.items()}

    def metrics_at(self, score_threshold: float) -> CocoMetrics:
        """COCO stats on the boxes at or above another score threshold (e.g. the display one)."""
        return evaluate_coco(records_to_coco(self.records), self.at(score_threshold), backend=self.backend)


def score_candidates(records: Sequence[ImageRecord], candidates: Mapping[int, Detections], thresholds: Thresholds,
                     *, backend: str = "pycocotools", map_floor: float = MAP_SCORE_FLOOR) -> SplitScore:
    """COCO stats and number accuracy of a model's raw candidates (score floor, no NMS) at these thresholds.

    NMS runs once, at the lowest score anything needs; every higher cut is then exact (see detector.refilter).
    """
    readable = [r for r in records if r.image_id in candidates]
    if not readable:
        raise ValueError(f"none of the {len(records)} images has predictions (all unreadable?); nothing to score")
    start = time.perf_counter()
    floor = min(map_floor, thresholds.score, thresholds.lowest_number_score)
    final = refilter_many({r.image_id: candidates[r.image_id] for r in readable}, floor, thresholds.nms_iou,
                          thresholds.class_agnostic)
    readings = {image_id: thresholds.number(d) for image_id, d in final.items()}
    accuracy = reading_accuracy(readable, readings)
    refiltered = time.perf_counter()
    boxes = final if floor == map_floor else {i: above_score(d, map_floor) for i, d in final.items()}
    metrics = evaluate_coco(records_to_coco(readable), boxes, backend=backend)
    seconds = {"refilter": refiltered - start, "coco": time.perf_counter() - refiltered}
    return SplitScore(metrics=metrics, number_accuracy=accuracy, thresholds=thresholds, map_floor=map_floor,
                      records=readable, final=final, readings=readings, backend=backend, seconds=seconds)


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


def score_split(predictor: Predictor, split: Split, thresholds: Thresholds | None = None, *,
                backend: str = "pycocotools", batch_size: int = 8, progress: bool = True) -> SplitScore:
    """Run the model over a split and score it; thresholds default to the checkpoint's calibrated ones."""
    candidates = predict_split(predictor, split, batch_size, progress)
    return score_candidates(split.records, candidates, thresholds or predictor.meta.thresholds, backend=backend)
