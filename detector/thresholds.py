"""The four knobs that turn a model's raw candidates into final detections and a house number.

One value for the checkpoint (calibrated on validation, stored in its metadata), the CLI (its flags override
the checkpoint's), training (the thresholds it validates at) and the app (its sliders). `score` cuts the boxes
shown and counted as right or wrong (mAP uses every box down to detector.scoring's floor instead);
`number_score` is the (usually higher) cut for reading the house number, so a doubtful extra box can be shown
without spoiling the number. Every Thresholds holds valid values: a bad one is a ValueError naming it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

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

    def __post_init__(self) -> None:
        for name in UNIT_FIELDS:
            value = getattr(self, name)
            if not (is_number(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"thresholds.{name} should be a number in [0, 1], got {str(value)[:40]}")
            object.__setattr__(self, name, float(value))  # an int from JSON (1) is the float 1.0
        if not isinstance(self.class_agnostic, bool):
            raise ValueError(f"thresholds.class_agnostic should be true or false, got {str(self.class_agnostic)[:40]}")

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
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls, score: Any, nms_iou: Any, number_score: Any, class_agnostic: Any) -> Thresholds:
        """From UI values (which may arrive as None or strings from an API client): clamped to [0, 1], a value that
        is no number at all takes its default."""
        def unit(value: Any, default: float) -> float:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return default
            return min(max(number, 0.0), 1.0) if number == number else default  # NaN is no number either

        d = cls()
        return cls(unit(score, d.score), unit(nms_iou, d.nms_iou), unit(number_score, d.number_score),
                   bool(class_agnostic))

    def override(self, *, score: float | None = None, nms_iou: float | None = None, number_score: float | None = None,
                 class_agnostic: bool | None = None) -> Thresholds:
        """These thresholds with the given ones changed (None keeps one): the CLI's flags over a checkpoint's."""
        given: dict[str, Any] = {"score": score, "nms_iou": nms_iou, "number_score": number_score,
                                 "class_agnostic": class_agnostic}
        return replace(self, **{name: value for name, value in given.items() if value is not None})

    def final(self, candidates: Detections) -> Detections:
        """The boxes a user sees: score cut, then NMS."""
        return refilter(candidates, self.score, self.nms_iou, self.class_agnostic)

    def number(self, final: Detections) -> NumberReading:
        return read_number(final, self.number_score)

    def nms_hint(self) -> str | None:
        """Why a number reads '66666555555': say it when NMS is (nearly) off."""
        if self.nms_iou < NMS_HINT_IOU:
            return None
        return (f"NMS IoU {self.nms_iou:.2f} keeps overlapping duplicate boxes, so one digit can be read several "
                "times (e.g. 66666555555); lower the NMS IoU threshold to about 0.3-0.5 for one box per digit.")
