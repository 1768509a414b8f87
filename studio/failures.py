"""The failure browser's numbers, recomputed from cached candidates whenever a threshold moves.

One `FailureReport` holds everything the view shows at one set of thresholds: COCO metrics (mAP, AP50,
per-class AP, PR curve), number accuracy, the confusion matrix and every image's match, sorted by how
wrong it is and filterable by failure type and digit. Nothing here runs the model.

The metrics, the numbers read and their accuracy come from `detector.scoring.score_candidates`, the function
`python -m detector evaluate` prints, fed the cached candidates: mAP counts every box down to its floor (0.05),
not only those above the score slider (scoring at the slider's 0.5 once showed mAP 0.741 where the CLI and the
model card said 0.746). This module adds only the per-image matching, the confusion matrix and the gallery.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.categories import CLASS_NAMES, category_to_digit
from detector.coco_eval import CocoMetrics
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import MISSED, ImageMatch, confusion_matrix, detections_for, match_image
from detector.refilter import above_score
from detector.scoring import score_candidates
from detector.thresholds import Thresholds

ANY = "any"
NUMBER_WRONG = "number wrong"
ANY_ERROR = "any error"
ALL_IMAGES = "all images"
ERROR_KINDS = ("wrong_class", "poor_localisation", "duplicate", "background", MISSED)
FAILURE_TYPES = (ANY_ERROR, NUMBER_WRONG) + ERROR_KINDS + (ALL_IMAGES,)
DIGIT_CHOICES = (ANY,) + CLASS_NAMES
DEFAULT_BACKEND = "faster_coco_eval"


def error_tags(match: ImageMatch) -> set[tuple[str, int]]:
    """(failure type, digit) pairs for one image: what went wrong and with which digits."""
    tags: set[tuple[str, int]] = set()
    labels = match.pred.labels.tolist()
    for p, kind in enumerate(match.kinds):
        if kind == "correct":
            continue
        tags.add((kind, category_to_digit(labels[p])))
        if kind == "wrong_class":  # a 3 read as 8 is a failure of both digits
            tags.add((kind, category_to_digit(int(match.gt_labels[match.gt_index[p]]))))
    for g in match.missed.tolist():
        tags.add((MISSED, category_to_digit(int(match.gt_labels[g]))))
    if not match.number_correct:
        for d in set(match.number_true) | set(match.number_read.lstrip("-")):
            tags.add((NUMBER_WRONG, int(d)))
        if not match.number_true and not match.number_read.lstrip("-"):
            tags.add((NUMBER_WRONG, -1))
    return tags


def keep(match: ImageMatch, failure_type: str, digit: str) -> bool:
    """Whether an image belongs in the gallery under these filters."""
    want = None if digit in (None, "", ANY) else int(digit)
    if failure_type == ALL_IMAGES:
        return want is None or want in {category_to_digit(int(c)) for c in match.gt_labels.tolist()}
    tags = error_tags(match)
    return any((failure_type == ANY_ERROR or kind == failure_type) and (want is None or d == want)
               for kind, d in tags)


@dataclass
class FailureReport:
    thresholds: Thresholds
    metrics: CocoMetrics
    number_accuracy: float
    matches: list[ImageMatch]
    confusion: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[int, ImageMatch]:
        return {m.image_id: m for m in self.matches}

    def select(self, failure_type: str = ANY_ERROR, digit: str = ANY, limit: int | None = None) -> list[ImageMatch]:
        """Matching images, most wrong first (severity, then image id for a stable order)."""
        chosen = [m for m in self.matches if keep(m, failure_type, digit)]
        chosen.sort(key=lambda m: (-m.severity, m.image_id))
        return chosen[:limit] if limit is not None else chosen

    def counts(self) -> dict[str, int]:
        totals = {kind: 0 for kind in ("correct",) + ERROR_KINDS}
        for m in self.matches:
            for kind, n in m.counts.items():
                totals[kind] = totals.get(kind, 0) + n
        totals[NUMBER_WRONG] = sum(not m.number_correct for m in self.matches)
        return totals

    def per_class_rows(self) -> list[list]:
        """One row per digit: AP, AP50 and its ground-truth / correct / missed counts."""
        gt = np.zeros(len(CLASS_NAMES), dtype=int)
        found = np.zeros(len(CLASS_NAMES), dtype=int)
        for m in self.matches:
            for g, label in enumerate(m.gt_labels.tolist()):
                gt[category_to_digit(label)] += 1
                found[category_to_digit(label)] += m.gt_matched_by[g] >= 0
        rows = []
        for digit, name in enumerate(CLASS_NAMES):
            cid = digit + 1
            ap, ap50 = self.metrics.per_class_ap.get(cid, -1.0), self.metrics.per_class_ap50.get(cid, -1.0)
            rows.append([name, _fmt(ap), _fmt(ap50), int(gt[digit]), int(found[digit]), int(gt[digit] - found[digit])])
        return rows

    def headline(self) -> dict[str, float]:
        return {"mAP": self.metrics["AP"], "AP50": self.metrics["AP50"], "AP75": self.metrics["AP75"],
                "AR100": self.metrics["AR100"], "number_accuracy": self.number_accuracy}


def _fmt(value: float) -> float | None:
    return None if value < 0 else round(float(value), 4)


def build_report(
    records: Sequence[ImageRecord],
    candidates_by_id: Mapping[int, Detections],
    thresholds: Thresholds,
    backend: str = DEFAULT_BACKEND,
    unreadable: Mapping[int, str] | None = None,
) -> FailureReport:
    """Re-filter, match, score: everything the failure browser shows at these thresholds."""
    if not records:
        raise ValueError("the failure browser needs at least one validation image")
    unreadable = unreadable or {}
    if all(r.image_id in unreadable for r in records):
        raise ValueError(f"none of the {len(records)} validation images could be read, e.g. "
                         f"{next(iter(unreadable.values()))}")
    t0 = time.perf_counter()
    readable = {r.image_id: d for r, d in zip(records, detections_for(records, candidates_by_id), strict=True)
                if r.image_id not in unreadable}  # left out of every figure, as `python -m detector evaluate` does
    score = score_candidates(records, readable, thresholds, backend=backend)
    t1 = time.perf_counter()
    nothing = Detections.empty()
    matches = [match_image(above_score(score.final.get(r.image_id, nothing), thresholds.score), r.boxes,
                           r.category_ids, image_id=r.image_id, number=score.readings.get(r.image_id))
               for r in records]  # an unreadable image shows as all missed, its number as not read
    cm = confusion_matrix(matches)
    seconds = {**score.seconds, "match": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return FailureReport(thresholds, score.metrics, score.number_accuracy, matches, cm, seconds)
