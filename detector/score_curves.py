"""Precision, recall and F1 of each digit's boxes against the score threshold, from one matching.

detector.matching judges predictions greedily in score order, so a prediction's kind depends only on the
predictions scored above it: matching once at the lowest threshold and counting the 'correct' ones at or above
each threshold gives exactly what matching at that threshold would (as detector.refilter does for NMS). A box is
a true positive when it is 'correct' (same digit, IoU >= 0.5, the digit not already taken); recall is over every
ground-truth box of the digit.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from detector.categories import NUM_DIGITS, category_to_digit
from detector.matching import ImageMatch


@dataclass(eq=False)  # holds arrays
class ScoreCurves:
    thresholds: np.ndarray  # (T,)
    precision: np.ndarray  # (10, T) digit x threshold; NaN where the digit has no box at that threshold
    recall: np.ndarray  # (10, T); NaN for a digit without ground truth
    f1: np.ndarray  # (10, T); 0 where nothing is found, NaN for a digit with neither boxes nor ground truth
    ground_truths: np.ndarray  # (10,) ground-truth boxes per digit

    def best_f1(self, digit: int) -> tuple[float, float] | None:
        """(threshold, F1) at the digit's best F1 (the lowest such threshold), or None when it has none."""
        row = self.f1[digit]
        if np.isnan(row).all():
            return None
        i = int(np.nanargmax(row))
        return float(self.thresholds[i]), float(row[i])


def score_curves(matches: Iterable[ImageMatch], thresholds: Sequence[float]) -> ScoreCurves:
    """Per-digit P/R/F1 at each threshold; `matches` must hold every box down to the lowest threshold."""
    grid = np.asarray(sorted(float(t) for t in thresholds), dtype=np.float64)
    true_scores: list[list[float]] = [[] for _ in range(NUM_DIGITS)]
    false_scores: list[list[float]] = [[] for _ in range(NUM_DIGITS)]
    ground_truths = np.zeros(NUM_DIGITS, dtype=np.int64)
    for m in matches:
        for label in m.gt_labels.tolist():
            ground_truths[category_to_digit(int(label))] += 1
        for kind, label, score in zip(m.kinds, m.pred.labels.tolist(), m.pred.scores.tolist(), strict=True):
            (true_scores if kind == "correct" else false_scores)[category_to_digit(int(label))].append(score)
    shape = (NUM_DIGITS, len(grid))
    tp, fp = np.zeros(shape), np.zeros(shape)
    for d in range(NUM_DIGITS):
        # a box counts at threshold t when score >= t (detector.refilter's rule), in float32 as the scores are
        t32 = grid.astype(np.float32)
        tp[d] = (np.asarray(true_scores[d], dtype=np.float32)[:, None] >= t32[None, :]).sum(axis=0)
        fp[d] = (np.asarray(false_scores[d], dtype=np.float32)[:, None] >= t32[None, :]).sum(axis=0)
    gt = ground_truths[:, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(gt > 0, tp / gt, np.nan)
        f1 = np.where(tp + fp + gt > 0, 2 * tp / (tp + fp + gt), np.nan)  # 2TP / (2TP + FP + FN): 0 with no box
    return ScoreCurves(grid, precision, recall, f1, ground_truths)
