"""The four knobs that turn a model's raw candidates into final detections and a house number.

One value for the checkpoint (calibrated on validation, stored in its metadata), the CLI (its flags override
the checkpoint's), training (the thresholds it validates at) and the app (its sliders). `score` cuts the boxes
shown and counted as right or wrong (mAP uses every box down to detector.scoring's floor instead);
`number_score` is the (usually higher) cut for reading the house number, so a doubtful extra box can be shown
without spoiling the number. `number_score_by_digit` optionally gives some digits their own number cut (a model
may be over-confident about 1s and timid about 8s; calibrated by detector.calibration); a digit without one uses
`number_score`, and without any the thresholds read, store and score exactly as before they existed.
Every Thresholds holds valid values: a bad one is a ValueError naming it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from detector.categories import NUM_DIGITS, category_to_digit
from detector.detections import Detections
from detector.jsonsafe import is_number
from detector.number import NumberReading, read_number
from detector.refilter import refilter

NMS_HINT_IOU = 0.9  # from here on NMS keeps nearly every overlapping box
UNIT_FIELDS = ("score", "nms_iou", "number_score")


@dataclass(frozen=True)
class Thresholds:
    score: float = 0.5
    nms_iou: float = 0.5
    number_score: float = 0.7
    class_agnostic: bool = False
    # (digit, number score) pairs sorted by digit; given as a mapping {digit: score} (JSON: {"7": 0.6}) or pairs
    number_score_by_digit: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        for name in UNIT_FIELDS:
            value = getattr(self, name)
            if not (is_number(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"thresholds.{name} should be a number in [0, 1], got {str(value)[:40]}")
            object.__setattr__(self, name, float(value))  # an int from JSON (1) is the float 1.0
        if not isinstance(self.class_agnostic, bool):
            raise ValueError(f"thresholds.class_agnostic should be true or false, got {str(self.class_agnostic)[:40]}")
        object.__setattr__(self, "number_score_by_digit", _digit_scores(self.number_score_by_digit))

    @classmethod
    def from_dict(cls, values: Any) -> Thresholds:
        """From JSON (a checkpoint's metadata): a missing key takes its default, so every older checkpoint reads."""
        if not isinstance(values, Mapping):
            raise ValueError(f"thresholds should be an object, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ValueError(f"thresholds has unknown key(s) {', '.join(unknown)[:80]}; the keys are {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON for a checkpoint; `number_score_by_digit` only when there is one, so older files stay as they were."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "number_score_by_digit"}
        if self.number_score_by_digit:
            out["number_score_by_digit"] = {str(d): v for d, v in self.number_score_by_digit}
        return out

    @classmethod
    def of(cls, score: Any, nms_iou: Any, number_score: Any, class_agnostic: Any,
           number_score_by_digit: Any = ()) -> Thresholds:
        """From UI values (which may arrive as None or strings from an API client): clamped to [0, 1], a value that
        is no number at all takes its default. `number_score_by_digit` is not a UI value (it comes from the
        checkpoint) and is checked as usual."""
        def unit(value: Any, default: float) -> float:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return default
            return min(max(number, 0.0), 1.0) if number == number else default  # NaN is no number either

        d = cls()
        return cls(unit(score, d.score), unit(nms_iou, d.nms_iou), unit(number_score, d.number_score),
                   bool(class_agnostic), number_score_by_digit)

    def override(self, *, score: float | None = None, nms_iou: float | None = None, number_score: float | None = None,
                 class_agnostic: bool | None = None, per_digit: bool | None = None) -> Thresholds:
        """These thresholds with the given ones changed (None keeps one): the CLI's flags over a checkpoint's.
        `per_digit=False` drops the per-digit number thresholds (every digit then reads at number_score)."""
        given: dict[str, Any] = {"score": score, "nms_iou": nms_iou, "number_score": number_score,
                                 "class_agnostic": class_agnostic,
                                 "number_score_by_digit": () if per_digit is False else None}
        return replace(self, **{name: value for name, value in given.items() if value is not None})

    def with_number_scores(self, by_digit: Mapping[int, float]) -> Thresholds:
        """These thresholds with these per-digit number thresholds ({} for none)."""
        return replace(self, number_score_by_digit=tuple(sorted(by_digit.items())))

    def number_score_of(self, category_id: int) -> float:
        """The number cut for a digit's category id: its own when it has one, else number_score."""
        return dict(self.number_score_by_digit).get(category_to_digit(category_id), self.number_score)

    @property
    def lowest_number_score(self) -> float:
        """The lowest number cut of any digit: NMS must keep boxes down to it (see detector.refilter)."""
        return min([self.number_score, *(v for _, v in self.number_score_by_digit)])

    def final(self, candidates: Detections) -> Detections:
        """The boxes a user sees: score cut, then NMS."""
        return refilter(candidates, self.score, self.nms_iou, self.class_agnostic)

    def final_down_to(self, candidates: Detections, floor: float) -> Detections:
        """One NMS keeping boxes down to `floor` and to every number cut, so that each later cut (pred.json's floor,
        the number) is exact (see detector.refilter): what `python -m detector predict` writes."""
        return refilter(candidates, min(floor, self.lowest_number_score), self.nms_iou, self.class_agnostic)

    def number_cut(self, final: Detections) -> Detections:
        """The boxes the number is read from: each at or above its digit's number cut, order unchanged."""
        own = dict(self.number_score_by_digit)
        cuts = torch.tensor([own.get(category_to_digit(int(c)), self.number_score) for c in final.labels.tolist()],
                            dtype=final.scores.dtype)
        return final.select(torch.nonzero(final.scores >= cuts).flatten())

    def number(self, final: Detections) -> NumberReading:
        if not self.number_score_by_digit:
            return read_number(final, self.number_score)
        return read_number(self.number_cut(final), self.lowest_number_score)

    def nms_hint(self) -> str | None:
        """Why a number reads '66666555555': say it when NMS is (nearly) off."""
        if self.nms_iou < NMS_HINT_IOU:
            return None
        return (f"NMS IoU {self.nms_iou:.2f} keeps overlapping duplicate boxes, so one digit can be read several "
                "times (e.g. 66666555555); lower the NMS IoU threshold to about 0.3-0.5 for one box per digit.")


def _digit_scores(value: Any) -> tuple[tuple[int, float], ...]:
    """Per-digit number scores from a mapping or pairs, as sorted (digit, score) pairs; ValueError names a bad one."""
    def bad(detail: str) -> ValueError:
        return ValueError(f"thresholds.number_score_by_digit should map digits 0-9 to numbers in [0, 1] "
                          f"(e.g. {{\"7\": 0.6}}); {detail}")

    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise bad(f"got {str(value)[:40]}")
    out: dict[int, float] = {}
    for key, score in pairs:
        digit = int(key) if isinstance(key, str) and key.isdigit() else key
        if not (isinstance(digit, int) and not isinstance(digit, bool) and 0 <= digit < NUM_DIGITS):
            raise bad(f"{str(key)[:10]!r} is no digit")
        if digit in out:
            raise bad(f"digit {digit} is given twice")
        if not (is_number(score) and 0.0 <= score <= 1.0):
            raise bad(f"digit {digit} has {str(score)[:20]}")
        out[digit] = float(score)
    return tuple(sorted(out.items()))
