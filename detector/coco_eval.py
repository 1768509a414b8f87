"""Scores: COCO mAP (Task 1), whole-number accuracy (Task 2), and the score-threshold sweep.

mAP comes from pycocotools (the reference) or faster-coco-eval (same rules, C++ matching, several times
faster; the benchmark checks they agree). Both are fed the exact records pred.json would hold, so the
number here is the number the grader computes. Undefined figures (e.g. AP_large with no large GT box,
the AP of a class with no GT) are -1, as pycocotools reports them.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from detector.categories import coco_categories
from detector.detections import Detections
from detector.hw2 import ImageRecord, records_to_coco
from detector.matching import detections_for
from detector.number import NumberReading, number_value, read_number
from detector.refilter import above_score, refilter_many
from detector.results_io import detections_to_coco_results, validate_pred_json

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
BACKENDS = ("pycocotools", "faster_coco_eval")
SWEEP_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95: training's and the app's grid


@dataclass(eq=False)  # holds arrays
class CocoMetrics:
    """The 12 standard COCO numbers by name, per-class AP, and PR curves (area 'all', 100 detections)."""

    stats: dict[str, float]
    per_class_ap: dict[int, float]  # category id -> AP@[.5:.95]
    per_class_ap50: dict[int, float]
    recall: np.ndarray  # (101,) the recall levels COCO interpolates precision at
    precision_50: np.ndarray  # (101,) precision at IoU 0.5, mean over classes with GT
    precision_mean: np.ndarray  # (101,) precision averaged over IoU 0.5:0.95 and classes with GT
    backend: str

    def __getitem__(self, name: str) -> float:
        return self.stats[name]


def _complete_gt(gt_coco: dict) -> dict:
    """A shallow copy with what the evaluators need but hand-made GT may lack: categories, area, iscrowd."""
    annotations = [{"iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a} for a in gt_coco["annotations"]]
    return {"images": gt_coco["images"], "annotations": annotations,
            "categories": gt_coco.get("categories") or coco_categories()}


def _run_pycocotools(gt: dict, results: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    return COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")


def _run_faster(gt: dict, results: list[dict], verbose: bool):
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(gt)
    silent = print if verbose else (lambda *args, **kwargs: None)
    return COCOeval_faster(coco_gt, coco_gt.loadRes(results), "bbox", print_function=silent)


def evaluate_coco(
    gt_coco: dict,
    detections: Mapping[int, Detections] | Sequence[dict],
    backend: str = "pycocotools",
    verbose: bool = False,
) -> CocoMetrics:
    """COCO bbox metrics for detections by image id (or COCO result records) against a GT COCO dict.

    pycocotools cannot load an empty result list; faster-coco-eval can and applies the same rules, so it
    scores that case whatever the backend (every defined figure is then 0).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(detections, Mapping):
        results = detections_to_coco_results(detections)
    else:
        results = [dict(r) for r in detections]  # the evaluators write into the records they load
    gt = _complete_gt(gt_coco)
    validate_pred_json(results, image_ids=[img["id"] for img in gt["images"]])
    used = backend if results else "faster_coco_eval"
    with contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext():
        evaluator = _run_pycocotools(gt, results) if used == "pycocotools" else _run_faster(gt, results, verbose)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return _metrics(evaluator, backend=used)


def _mean_defined(values: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Mean over entries that are not -1 (pycocotools' 'undefined'); -1 where nothing is defined."""
    defined = values > -1
    total = np.where(defined, values, 0.0).sum(axis=axis)
    count = defined.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def _metrics(evaluator, backend: str) -> CocoMetrics:
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]  # (T, R, K): area 'all', most detections
    cat_ids = [int(c) for c in params.catIds]
    at_50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    per_class = _mean_defined(precision, axis=(0, 1))
    per_class_50 = _mean_defined(precision[at_50], axis=0)
    # A class with no GT has precision -1 at every recall: leave it out of the curves.
    has_gt = (precision > -1).any(axis=(0, 1))
    return CocoMetrics(
        stats={name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)], strict=False)},
        per_class_ap={c: float(v) for c, v in zip(cat_ids, per_class, strict=False)},
        per_class_ap50={c: float(v) for c, v in zip(cat_ids, per_class_50, strict=False)},
        recall=np.asarray(params.recThrs, dtype=np.float64),
        precision_50=np.asarray(_mean_defined(precision[at_50][:, has_gt], axis=1)),
        precision_mean=np.asarray(_mean_defined(precision[:, :, has_gt], axis=(0, 2))),
        backend=backend,
    )


def number_accuracy(records: Sequence[ImageRecord], detections_by_id: Mapping[int, Detections],
                    score_threshold: float) -> float:
    """Task 2: the share of images whose whole number, read at `score_threshold`, is right."""
    dets = detections_for(records, detections_by_id)
    return reading_accuracy(records, {r.image_id: read_number(d, score_threshold) for r, d in zip(records, dets, strict=True)})


def reading_accuracy(records: Sequence[ImageRecord], readings: Mapping[int, NumberReading]) -> float:
    """The share of records whose number was read right, compared as pred.csv's integers."""
    if not records:
        raise ValueError("number_accuracy needs at least one record")
    return sum(readings[r.image_id].value == number_value(r.number) for r in records) / len(records)


class SweepPoint(NamedTuple):
    threshold: float
    number_accuracy: float
    mAP: float | None  # only when asked for: one COCO evaluation per threshold


@dataclass
class ThresholdSweep:
    points: list[SweepPoint]
    best_threshold: float  # highest number accuracy; among ties the middle one (furthest from both edges)
    best_accuracy: float


def sweep_score_threshold(
    records: Sequence[ImageRecord],
    candidates_by_id: Mapping[int, Detections],
    thresholds: Sequence[float],
    nms_iou: float,
    class_agnostic: bool = False,
    with_map: bool = False,
    backend: str = "faster_coco_eval",
    max_detections: int | None = None,
) -> ThresholdSweep:
    """Number accuracy (and optionally mAP) of raw candidates at each score threshold.

    NMS runs once per image at the lowest threshold; each threshold is then a score cut (see refilter.py).
    """
    if not thresholds:
        raise ValueError("sweep_score_threshold needs at least one threshold")
    thresholds = sorted(float(t) for t in thresholds)
    candidates = dict(zip((r.image_id for r in records), detections_for(records, candidates_by_id), strict=False))
    kept = refilter_many(candidates, thresholds[0], nms_iou, class_agnostic, max_detections)
    gt = records_to_coco(list(records)) if with_map else None
    points = []
    for t in thresholds:
        mAP = None
        if gt is not None:
            mAP = evaluate_coco(gt, {i: above_score(d, t) for i, d in kept.items()}, backend=backend)["AP"]
        points.append(SweepPoint(t, number_accuracy(records, kept, t), mAP))
    best_accuracy = max(p.number_accuracy for p in points)
    tied = [p.threshold for p in points if p.number_accuracy == best_accuracy]
    return ThresholdSweep(points=points, best_threshold=tied[len(tied) // 2], best_accuracy=best_accuracy)
