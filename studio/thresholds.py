"""The four knobs every view shares; their defaults come from the checkpoint's metadata.

`score` cuts the boxes shown and counted as right or wrong (mAP, as in `python -m detector evaluate`, uses every
box down to detector.scoring's floor); `number_score` is the (usually higher) cut for reading the house number,
so a doubtful extra box can be shown without spoiling the number.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detector.checkpoint import DEFAULT_THRESHOLDS
from detector.detections import Detections
from detector.number import NumberReading, read_number
from detector.refilter import refilter

NMS_HINT_IOU = 0.9  # from here on NMS keeps nearly every overlapping box


@dataclass(frozen=True)
class Thresholds:
    score: float = float(DEFAULT_THRESHOLDS["score"])
    nms_iou: float = float(DEFAULT_THRESHOLDS["nms_iou"])
    number_score: float = float(DEFAULT_THRESHOLDS["number_score"])
    class_agnostic: bool = bool(DEFAULT_THRESHOLDS["class_agnostic"])

    @classmethod
    def from_meta(cls, thresholds: Mapping[str, Any]) -> Thresholds:
        merged = {**DEFAULT_THRESHOLDS, **thresholds}
        return cls.of(merged["score"], merged["nms_iou"], merged["number_score"], merged["class_agnostic"])

    @classmethod
    def of(cls, score: Any, nms_iou: Any, number_score: Any, class_agnostic: Any) -> Thresholds:
        """From UI values (which may arrive as None or strings from an API client), clamped to [0, 1]."""
        def unit(value: Any, default: float) -> float:
            try:
                return min(max(float(value), 0.0), 1.0)
            except (TypeError, ValueError):
                return default

        d = cls()
        return cls(unit(score, d.score), unit(nms_iou, d.nms_iou), unit(number_score, d.number_score),
                   bool(class_agnostic))

    def as_meta(self) -> dict[str, Any]:
        return {"score": self.score, "nms_iou": self.nms_iou, "number_score": self.number_score,
                "class_agnostic": self.class_agnostic}

    def final(self, candidates: Detections) -> Detections:
        return refilter(candidates, self.score, self.nms_iou, self.class_agnostic)

    def number(self, final: Detections) -> NumberReading:
        return read_number(final, self.number_score)

    def nms_hint(self) -> str | None:
        """Why a number reads '66666555555': say it when NMS is (nearly) off."""
        if self.nms_iou < NMS_HINT_IOU:
            return None
        return (f"NMS IoU {self.nms_iou:.2f} keeps overlapping duplicate boxes, so one digit can be read several "
                "times (e.g. 66666555555); lower the NMS IoU threshold to about 0.3-0.5 for one box per digit.")
