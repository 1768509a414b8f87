"""The Detect tab: upload images (or pick a sample), see boxes, the number read, a table and COCO JSON.

The file list holds what is being looked at: a new upload replaces it (rather than piling onto it), repeated
and unreadable files are dropped after one message, and *Clear* empties it.
"""
from __future__ import annotations

import json

import gradio as gr

from studio.detect import TABLE_HEADERS, DetectOutcome, run_detect
from studio.session import Studio, StudioError
from studio.tempfiles import TEMP
from studio.ui_controls import ThresholdControls, problem, thresholds_of
from studio.uploads import LIMITS_NOTE

TABLE_WIDTHS = ["22%", "9%", "7%", "9%", "9%", "9%", "9%", "9%", "17%"]  # every column visible, long names wrap


def _file_paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def _write_results(outcome: DetectOutcome) -> str | None:
    if not outcome.results:
        return None
    return str(TEMP.write_text("detections.coco.json", json.dumps(outcome.coco_results(), indent=1)))


def newest_upload(files, previous: list[str] | None) -> list[str]:
    """The files of this upload only: gradio appends an upload to the files already listed."""
    paths, previous = _file_paths(files), previous or []
    if previous and len(paths) > len(previous) and paths[:len(previous)] == previous:
        return paths[len(previous):]
    return paths


def build_detect_tab(studio: Studio, controls: ThresholdControls) -> None:
    samples = studio.samples()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(label="Images (PNG, JPEG, ...; one or many)", file_count="multiple", type="filepath",
                            elem_id="detect-files")
            gr.Markdown(f"<small>{LIMITS_NOTE} A new upload replaces the list.</small>", elem_id="detect-limits")
            with gr.Row():
                run = gr.Button("Detect", variant="primary", elem_id="detect-button", scale=2)
                clear = gr.Button("Clear", elem_id="detect-clear", scale=1)
            listed = gr.State([])  # the files shown after the last Detect, to tell a new upload from them
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
                                 interactive=False, max_height=260, column_widths=TABLE_WIDTHS, wrap=True,
                                 elem_id="detect-table")
            download = gr.File(label="Download as COCO results JSON", interactive=False, height=90,
                               elem_id="detect-download")

    empty = ([], DetectOutcome().number_html(), [], None)

    def detect(files, score, nms_iou, number_score, class_agnostic, per_digit=False):
        """Outputs: gallery, number, table, COCO JSON, message, and the files kept in the list."""
        paths = _file_paths(files)
        if not paths:
            return *empty, "Upload an image or pick a sample.", [], []
        try:
            thresholds = thresholds_of(studio.default_thresholds(), score, nms_iou, number_score, class_agnostic,
                                       per_digit)
            outcome = run_detect(studio, paths, thresholds)
        except StudioError as err:
            return *empty, problem(str(err)), gr.skip(), gr.skip()
        lines = [problem(p) for p in outcome.problems] + [f"ℹ️ {n}" for n in outcome.notes]
        kept = outcome.readable  # a bad or repeated file is reported once, then leaves the list
        return (outcome.gallery(), outcome.number_html(), outcome.table(), _write_results(outcome),
                "  \n".join(lines), kept, kept)

    inputs = [files, *controls.inputs]
    outputs = [gallery, number, table, download, message, files, listed]
    gr.on([run.click, *controls.triggers], detect, inputs=inputs, outputs=outputs, api_name="detect",
          trigger_mode="always_last")
    files.upload(newest_upload, [files, listed], files, api_visibility="private").then(
        detect, inputs, outputs, api_visibility="private")
    clear.click(lambda: (*empty, "", [], []), None, outputs, api_visibility="private")

    def pick_sample(evt: gr.SelectData):
        return [str(samples[evt.index])] if samples and evt.index is not None else None

    sample_gallery.select(pick_sample, None, files, api_visibility="private").then(
        detect, inputs, outputs, api_visibility="private")
