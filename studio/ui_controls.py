"""The threshold controls every tab shares, and the one way handlers report a problem to the user.

Four sliders and a checkbox give a Thresholds (`thresholds_of`); the per-digit number thresholds themselves come
from the checkpoint (calibrated there), the checkbox only says whether to use them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from detector.thresholds import Thresholds


@dataclass
class ThresholdControls:
    score: gr.Slider
    nms_iou: gr.Slider
    number_score: gr.Slider
    class_agnostic: gr.Checkbox
    per_digit: gr.Checkbox

    @property
    def inputs(self) -> list[gr.components.Component]:
        """What every handler reads, in `thresholds_of`'s order (per_digit last: API callers may leave it out)."""
        return [self.score, self.nms_iou, self.number_score, self.class_agnostic, self.per_digit]

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What saving thresholds sets (values_of): the sliders and the NMS checkbox."""
        return [self.score, self.nms_iou, self.number_score, self.class_agnostic]

    @property
    def triggers(self) -> list:
        """Slider *release* (not every drag step) and the checkboxes: each re-filters cached candidates."""
        return [self.score.release, self.nms_iou.release, self.number_score.release, self.class_agnostic.change,
                self.per_digit.change]


def per_digit_info(thresholds: Thresholds) -> str:
    own = ", ".join(f"{d} ≥ {v:.2f}" for d, v in thresholds.number_score_by_digit)
    if not own:
        return "this checkpoint has none (python -m detector calibrate, or the sweep below)"
    return f"from the checkpoint: {own}; other digits use the number slider"


def per_digit_checkbox_update(thresholds: Thresholds) -> Any:
    """The checkbox after the checkpoint's thresholds changed: on and usable when it now has per-digit ones."""
    has = bool(thresholds.number_score_by_digit)
    return gr.Checkbox(value=has, interactive=has, info=per_digit_info(thresholds))


def thresholds_of(checkpoint: Thresholds, score: Any, nms_iou: Any, number_score: Any, class_agnostic: Any,
                  per_digit: Any = False) -> Thresholds:
    """The controls' values as Thresholds, with the checkpoint's per-digit number thresholds when ticked."""
    return Thresholds.of(score, nms_iou, number_score, class_agnostic,
                         checkpoint.number_score_by_digit if per_digit is True else ())


def threshold_controls(defaults: Thresholds) -> ThresholdControls:
    with gr.Row(equal_height=True):
        score = gr.Slider(0.0, 1.0, defaults.score, step=0.01, label="Score threshold",
                          info="boxes shown and counted (mAP uses all)", elem_id="score-threshold")
        nms = gr.Slider(0.05, 1.0, defaults.nms_iou, step=0.01, label="NMS IoU threshold",
                        info="overlap above which the weaker box goes (1 = off)", elem_id="nms-threshold")
        number = gr.Slider(0.0, 1.0, defaults.number_score, step=0.01, label="Number score threshold",
                           info="digits used to read the number", elem_id="number-threshold")
        agnostic = gr.Checkbox(defaults.class_agnostic, label="Class-agnostic NMS",
                               info="one box per place, whatever the digit", elem_id="class-agnostic")
        has = bool(defaults.number_score_by_digit)
        per_digit = gr.Checkbox(has, label="Per-digit number thresholds", info=per_digit_info(defaults),
                                interactive=has, elem_id="per-digit")
    return ThresholdControls(score, nms, number, agnostic, per_digit)


def values_of(thresholds: Thresholds) -> tuple[float, float, float, bool]:
    return thresholds.score, thresholds.nms_iou, thresholds.number_score, thresholds.class_agnostic


def problem(message: str) -> str:
    """Show a warning toast and return the same text for the view's message box (the app keeps running)."""
    gr.Warning(message)
    return f"⚠️ {message}"
