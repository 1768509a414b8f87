"""The threshold controls every tab shares, and the one way handlers report a problem to the user."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from detector.thresholds import Thresholds


@dataclass
class ThresholdControls:
    score: gr.Slider
    nms_iou: gr.Slider
    number_score: gr.Slider
    class_agnostic: gr.Checkbox

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.score, self.nms_iou, self.number_score, self.class_agnostic]

    @property
    def outputs(self) -> list[gr.components.Component]:
        return self.inputs

    @property
    def triggers(self) -> list:
        """Slider *release* (not every drag step) and the checkbox: each re-filters cached candidates."""
        return [self.score.release, self.nms_iou.release, self.number_score.release, self.class_agnostic.change]


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
    return ThresholdControls(score, nms, number, agnostic)


def values_of(thresholds: Thresholds) -> tuple[float, float, float, bool]:
    return thresholds.score, thresholds.nms_iou, thresholds.number_score, thresholds.class_agnostic


def problem(message: str) -> str:
    """Show a warning toast and return the same text for the view's message box (the app keeps running)."""
    gr.Warning(message)
    return f"⚠️ {message}"
