"""The failure browser's numbers, recomputed from cached candidates whenever a threshold moves.

One `FailureReport` holds everything the view shows at one set of thresholds: COCO metrics (mAP, AP50,
per-class AP, PR curve), number accuracy, the confusion matrix and every image's match, sorted by how
wrong it is and filterable by failure type (detector.matching's kinds or TIDE's), digit or confusion-matrix
cell; on demand, TIDE's error decomposition of the same boxes and each digit's precision / recall / F1
against the score threshold. Nothing here runs the model.

The metrics, the numbers read and their accuracy come from `detector.scoring.score_candidates`, the function
`python -m detector evaluate` prints, fed the cached candidates: mAP counts every box down to its floor (0.05),
not only those above the score slider (scoring at the slider's 0.5 once showed mAP 0.741 where the CLI and the
model card said 0.746). This module adds only the per-image matching, the confusion matrix and the gallery.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from detector.categories import CLASS_NAMES, NUM_DIGITS, category_to_digit
from detector.coco_eval import SWEEP_THRESHOLDS, CocoMetrics
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import (
    BACKGROUND_INDEX,
    MISSED,
    ImageMatch,
    confusion_cells,
    confusion_matrix,
    detections_for,
    match_image,
)
from detector.refilter import above_score
from detector.score_curves import ScoreCurves, score_curves
from detector.scoring import SplitScore, score_candidates
from detector.thresholds import Thresholds
from detector.tide import ERROR_KINDS as TIDE_KINDS
from detector.tide import TideResult, tide

ANY = "any"
NUMBER_WRONG = "number wrong"
ANY_ERROR = "any error"
ALL_IMAGES = "all images"
ERROR_KINDS = ("wrong_class", "poor_localisation", "duplicate", "background", MISSED)
TIDE_PREFIX = "TIDE "
TIDE_FILTERS = tuple(TIDE_PREFIX + kind for kind in TIDE_KINDS)  # "TIDE Cls", ...: TIDE's kinds of the same boxes
FAILURE_TYPES = (ANY_ERROR, NUMBER_WRONG) + ERROR_KINDS + TIDE_FILTERS + (ALL_IMAGES,)
DIGIT_CHOICES = (ANY,) + CLASS_NAMES
DEFAULT_BACKEND = "faster_coco_eval"
CELL_BACKGROUND = ("bg", "background", "fp", "missed", "miss")  # how a confusion-cell filter names row/column 10


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
    """Whether an image belongs in the gallery under these filters (TIDE's kinds: FailureReport.select)."""
    want = None if digit in (None, "", ANY) else int(digit)
    if failure_type == ALL_IMAGES:
        return want is None or want in {category_to_digit(int(c)) for c in match.gt_labels.tolist()}
    tags = error_tags(match)
    return any((failure_type == ANY_ERROR or kind == failure_type) and (want is None or d == want)
               for kind, d in tags)


def cell_label(index: int) -> str:
    return "bg" if index == BACKGROUND_INDEX else str(index)


def parse_cell(text: str | None) -> tuple[int, int] | None:
    """A confusion-matrix cell as 'true,predicted' ("3,8"; "bg" for the background row or column), or None for
    no cell filter; anything else is a ValueError that shows the form."""
    text = str(text or "").strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[\s,;:>→/-]+", text.lower()) if p]
    indices = [BACKGROUND_INDEX if p in CELL_BACKGROUND else int(p) if p.isdigit() and int(p) < NUM_DIGITS else None
               for p in parts]
    if len(indices) != 2 or None in indices:
        raise ValueError(f"confusion cell {text[:40]!r} should be 'true,predicted' with digits 0-9 or bg for "
                         "background, e.g. 3,8 (a 3 read as 8) or 7,bg (a 7 missed)")
    return indices[0], indices[1]  # type: ignore[return-value]  # no None left


@dataclass(eq=False)
class FailureReport:
    thresholds: Thresholds
    metrics: CocoMetrics
    number_accuracy: float
    matches: list[ImageMatch]
    confusion: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    score: SplitScore | None = field(default=None, repr=False)  # what the figures came from (TIDE, curves)

    @property
    def by_id(self) -> dict[int, ImageMatch]:
        return {m.image_id: m for m in self.matches}

    @cached_property
    def tide(self) -> TideResult:
        """TIDE's decomposition of the boxes the gallery judges (score >= thresholds.score) on the scored images."""
        if self.score is None:
            raise ValueError("this report was built without its scores; build it with build_report")
        by_id = self.by_id
        return tide(self.score.records, {r.image_id: by_id[r.image_id].pred for r in self.score.records})

    @cached_property
    def curves(self) -> ScoreCurves:
        """Each digit's precision / recall / F1 against the score threshold, at the report's NMS setting."""
        if self.score is None:
            raise ValueError("this report was built without its scores; build it with build_report")
        lowest = SWEEP_THRESHOLDS[0]
        assert lowest >= min(self.score.map_floor, self.thresholds.score), "final must hold every box >= the grid"
        matches = [match_image(above_score(self.score.final[r.image_id], lowest), r.boxes, r.category_ids)
                   for r in self.score.records]
        return score_curves(matches, SWEEP_THRESHOLDS)

    @cached_property
    def cells(self) -> dict[int, set[tuple[int, int]]]:
        """Each image's confusion-matrix cells (the cells `confusion` counts)."""
        return {m.image_id: set(confusion_cells(m)) for m in self.matches}

    def select(self, failure_type: str = ANY_ERROR, digit: str = ANY, limit: int | None = None,
               cell: tuple[int, int] | None = None) -> list[ImageMatch]:
        """Matching images, most wrong first (severity, then image id for a stable order). A confusion-matrix
        `cell` (true row, predicted column) replaces the other filters."""
        if cell is not None:
            chosen = [m for m in self.matches if cell in self.cells[m.image_id]]
        elif failure_type in TIDE_FILTERS:
            chosen = [m for m in self.matches if self._tide_keep(m.image_id, failure_type[len(TIDE_PREFIX):], digit)]
        else:
            chosen = [m for m in self.matches if keep(m, failure_type, digit)]
        chosen.sort(key=lambda m: (-m.severity, m.image_id))
        return chosen[:limit] if limit is not None else chosen

    def _tide_keep(self, image_id: int, kind: str, digit: str) -> bool:
        want = None if digit in (None, "", ANY) else int(digit)
        return any(e.kind == kind and (want is None or want in {category_to_digit(c) for c in
                                                                (e.category, e.gt_category) if c > 0})
                   for e in self.tide.by_image.get(image_id, []))

    def tide_kinds(self, image_id: int) -> tuple[dict[int, str], dict[int, str]]:
        """TIDE's verdict on each of an image's boxes ('TP' or an error kind) and on its missed ground truths."""
        match = self.by_id[image_id]
        errors = self.tide.by_image.get(image_id, [])
        boxes = {p: "TP" for p in range(len(match.pred)) if match.kinds[p] == "correct"}
        boxes.update({e.pred: e.kind for e in errors if e.pred >= 0})
        return boxes, {e.gt: e.kind for e in errors if e.kind == "Miss"}

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
    return FailureReport(thresholds, score.metrics, score.number_accuracy, matches, cm, seconds, score)
