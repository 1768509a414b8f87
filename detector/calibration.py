"""Choose the thresholds a checkpoint carries, for number accuracy (Task 2) on a labelled split.

One calibration for training (training.evaluate.calibrate_thresholds, on valid, after the last epoch),
`python -m detector calibrate` (any split, into a copy of the checkpoint) and the app's sweep button:

1. the global number threshold: a score sweep for the run's own NMS setting and each of CALIBRATION_NMS; the best
   number accuracy wins (the run's own setting among equals);
2. per-digit number thresholds (`per_digit_number_scores`): coordinate ascent from the global best. For each digit
   in turn, every grid value is tried as that digit's own cut with the others fixed; the best replaces the current
   one only when it reads at least `min_gain` more numbers right (MIN_GAIN, and at least MIN_GAIN_SHARE of the
   split), and only digits with at least `min_count` ground-truth boxes in the split are tried, so a small split
   keeps the global threshold rather than fitting its noise. Rounds repeat until one changes nothing.
   Why the guards are strict: with ~190 (digit, value) trials, gains of 2-4 numbers in 400 images are noise. For
   the shipped default, per-digit cuts calibrated on one 400-image synthetic split gained 2-4 numbers there and
   changed three other such splits by -7 to +1 numbers (measured for issue 14); with these guards none is chosen.
Every trial reads numbers with Thresholds.number, the one path prediction uses, so the accuracy found is the
accuracy a saved checkpoint gives on that split.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from detector.categories import NUM_DIGITS, category_to_digit
from detector.coco_eval import SWEEP_THRESHOLDS, ThresholdSweep, sweep_score_threshold
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.number import number_value
from detector.refilter import refilter_many
from detector.thresholds import Thresholds

# NMS settings tried besides the run's own: digits never overlap, so class-agnostic NMS at a low IoU removes the
# second-class box a confused model puts on one digit (+10 points of number accuracy seen on synthetic validation
# after one epoch of effnet_lite0).
CALIBRATION_NMS = ((True, 0.3), (True, 0.5), (False, 0.3))
MIN_DIGIT_COUNT = 50  # ground-truth boxes of a digit before it may get its own threshold (~10 per digit in 48 images)
MIN_GAIN = 2  # more numbers read right that a digit's own threshold must bring over the current one
MIN_GAIN_SHARE = 0.01  # ... and at least this share of the split's images
MAX_ROUNDS = 3


@dataclass
class Calibration:
    thresholds: Thresholds
    sweep: ThresholdSweep  # the global sweep at the chosen NMS setting
    accuracy_global: float  # number accuracy at the global threshold alone
    accuracy: float  # with the per-digit thresholds (the same when there are none)
    digit_counts: dict[int, int]  # ground-truth boxes per digit in the split
    images: int
    min_count: int  # the guards the per-digit search ran with
    min_gain: int

    def points(self) -> list[dict[str, float]]:
        return [{"threshold": p.threshold, "number_accuracy": p.number_accuracy} for p in self.sweep.points]

    def summary(self) -> dict[str, Any]:
        """For a checkpoint's metrics: what was chosen on how much data, and the accuracies with and without."""
        return {"images": self.images, "thresholds": self.thresholds.to_dict(),
                "number_accuracy_global": self.accuracy_global, "number_accuracy": self.accuracy,
                "digit_counts": {str(d): n for d, n in sorted(self.digit_counts.items())},
                "min_digit_count": self.min_count, "min_gain": self.min_gain}


def default_min_gain(images: int) -> int:
    return max(MIN_GAIN, math.ceil(MIN_GAIN_SHARE * images))


def digit_counts(records: Sequence[ImageRecord]) -> dict[int, int]:
    found = Counter(category_to_digit(int(c)) for r in records for c in r.category_ids.tolist())
    return {d: found.get(d, 0) for d in range(NUM_DIGITS)}


def _correct(thresholds: Thresholds, final: Mapping[int, Detections], truth: Mapping[int, int],
             image_ids: Sequence[int]) -> int:
    return sum(thresholds.number(final[i]).value == truth[i] for i in image_ids)


def per_digit_number_scores(records: Sequence[ImageRecord], final: Mapping[int, Detections], base: Thresholds, *,
                            grid: Sequence[float] = SWEEP_THRESHOLDS, min_count: int = MIN_DIGIT_COUNT,
                            min_gain: int | None = None, max_rounds: int = MAX_ROUNDS) -> Thresholds:
    """`base` with per-digit number thresholds where they read more numbers right (see the module docstring).

    `final` holds each record's NMS survivors at base's NMS setting down to at most the lowest grid value;
    `min_gain` defaults to max(MIN_GAIN, MIN_GAIN_SHARE of the records).
    """
    if min_gain is None:
        min_gain = default_min_gain(len(records))
    truth = {r.image_id: number_value(r.number) for r in records}
    counts = digit_counts(records)
    with_digit: dict[int, list[int]] = {d: [] for d in range(NUM_DIGITS)}  # only these images' numbers can change
    for r in records:
        for d in {category_to_digit(int(c)) for c in final[r.image_id].labels.tolist()}:
            with_digit[d].append(r.image_id)
    own: dict[int, float] = dict(base.number_score_by_digit)
    current = base
    for _ in range(max_rounds):
        changed = False
        for digit in (d for d in range(NUM_DIGITS) if counts[d] >= min_count and with_digit[d]):
            ids = with_digit[digit]
            now = _correct(current, final, truth, ids)
            tried = {v: _correct(current.with_number_scores({**own, digit: v}), final, truth, ids)
                     for v in grid}
            best = max(tried.values())
            if best - now < min_gain:
                continue
            tied = [v for v in sorted(tried) if tried[v] == best]
            own[digit] = float(tied[len(tied) // 2])  # the middle of a plateau, as the global sweep picks
            current, changed = current.with_number_scores(own), True
        if not changed:
            break
    return current.with_number_scores({d: v for d, v in own.items() if v != current.number_score})


def calibrate(records: Sequence[ImageRecord], candidates: Mapping[int, Detections], own: Thresholds, *,
              per_digit: bool = True, grid: Sequence[float] = SWEEP_THRESHOLDS, min_count: int = MIN_DIGIT_COUNT,
              min_gain: int | None = None) -> Calibration:
    """The thresholds with the best number accuracy on these records, from raw candidates (score floor, no NMS).

    The global threshold becomes both `number_score` and `score` (what the app draws by default): the boxes a user
    sees are then the digits the number is read from. pred.json ignores it (it keeps every box above a low floor,
    as mAP needs). `own` gives the run's NMS setting, tried first.
    """
    readable = [r for r in records if r.image_id in candidates]
    if not readable:
        raise ValueError(f"none of the {len(records)} images has predictions; nothing to calibrate on")
    best: tuple[ThresholdSweep, bool, float] | None = None
    for agnostic, nms_iou in ((own.class_agnostic, own.nms_iou), *CALIBRATION_NMS):
        sweep = sweep_score_threshold(readable, candidates, grid, nms_iou, agnostic)
        if best is None or sweep.best_accuracy > best[0].best_accuracy:
            best = (sweep, agnostic, nms_iou)
    assert best is not None
    sweep, agnostic, nms_iou = best
    thresholds = Thresholds(score=sweep.best_threshold, nms_iou=nms_iou, number_score=sweep.best_threshold,
                            class_agnostic=agnostic)
    accuracy = sweep.best_accuracy
    min_gain = default_min_gain(len(readable)) if min_gain is None else min_gain
    if per_digit:
        final = refilter_many({r.image_id: candidates[r.image_id] for r in readable}, min(grid), nms_iou, agnostic)
        thresholds = per_digit_number_scores(readable, final, thresholds, grid=grid, min_count=min_count,
                                             min_gain=min_gain)
        truth = {r.image_id: number_value(r.number) for r in readable}
        accuracy = _correct(thresholds, final, truth, list(truth)) / len(readable)
    return Calibration(thresholds, sweep, sweep.best_accuracy, accuracy, digit_counts(readable), len(readable),
                       min_count, min_gain)
