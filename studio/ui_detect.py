"""The Detect tab: upload images (or pick a sample), see boxes, the number read, a table and COCO JSON."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from studio.detect import TABLE_HEADERS, DetectOutcome, run_detect
from studio.session import Studio, StudioError
from studio.thresholds import Thresholds
from studio.ui_controls import ThresholdControls, problem


def _file_paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def _write_results(outcome: DetectOutcome) -> str | None:
    if not outcome.results:
        return None
    folder = Path(tempfile.mkdtemp(prefix="studio-detect-"))
    path = folder / "detections.coco.json"
    path.write_text(json.dumps(outcome.coco_results(), indent=1))
    return str(path)


def build_detect_tab(studio: Studio, controls: ThresholdControls) -> None:
    samples = studio.samples()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(label="Images (PNG, JPEG, ...; one or many)", file_count="multiple", type="filepath",
                            elem_id="detect-files")
            run = gr.Button("Detect", variant="primary", elem_id="detect-button")
            sample_gallery = gr.Gallery(
                value=[(str(p), p.name) for p in samples], label="Samples (click one)", columns=4, height=220,
                allow_preview=False, object_fit="contain", visible=bool(samples), elem_id="samples",
            )
            if not samples:
                gr.Markdown(f"No sample images in `{studio.samples_dir}`; upload your own.")
        with gr.Column(scale=2):
            number = gr.HTML(DetectOutcome().number_html(), elem_id="number-read")
            message = gr.Markdown("", elem_id="detect-message")
            gallery = gr.Gallery(label="Detections", columns=4, height=460, object_fit="contain", preview=True,
                                 selected_index=0, elem_id="detect-gallery")
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Detections (original-image pixels)",
                                 interactive=False, max_height=260, elem_id="detect-table")
            download = gr.File(label="Download as COCO results JSON", interactive=False, height=90,
                               elem_id="detect-download")

    def detect(files, score, nms_iou, number_score, class_agnostic):
        paths = _file_paths(files)
        if not paths:
            return [], DetectOutcome().number_html(), [], None, "Upload an image or pick a sample."
        try:
            outcome = run_detect(studio, paths, Thresholds.of(score, nms_iou, number_score, class_agnostic))
        except StudioError as err:
            return [], DetectOutcome().number_html(), [], None, problem(str(err))
        notes = [problem(p) for p in outcome.problems]
        return (outcome.gallery(), outcome.number_html(), outcome.table(), _write_results(outcome),
                "  \n".join(notes))

    outputs = [gallery, number, table, download, message]
    gr.on([run.click, files.upload, *controls.triggers], detect, inputs=[files, *controls.inputs], outputs=outputs,
          api_name="detect", trigger_mode="always_last")

    def pick_sample(evt: gr.SelectData):
        return [str(samples[evt.index])] if samples and evt.index is not None else None

    sample_gallery.select(pick_sample, None, files, api_visibility="private").then(
        detect, [files, *controls.inputs], outputs, api_visibility="private")
