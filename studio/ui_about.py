"""The Model & data tab: what the checkpoint says about itself and what loading the data repaired."""
from __future__ import annotations

import gradio as gr

from studio.session import Studio


def build_about_tab(studio: Studio) -> None:
    meta = studio.meta
    if meta is None:
        gr.Markdown(f"⚠️ {studio.checkpoint_error}")
    else:
        gr.Markdown(f"**Checkpoint** `{studio.checkpoint}` (code {meta.code_version or 'unknown'}, "
                    f"created {meta.created or 'unknown'}); candidates are kept down to score "
                    f"{studio.predictor.score_floor} with NMS off, so every threshold above is applied afterwards.")
        gr.JSON({"thresholds": meta.thresholds.to_dict(), "metrics": meta.metrics, "training": meta.training,
                 "config": meta.config.to_dict()}, label="Checkpoint metadata")
    if studio.split is None:
        gr.Markdown(f"⚠️ {studio.data_error}")
    else:
        report = studio.split.report
        warnings = "\n".join(f"- {w}" for w in report.warnings) or "- none"
        gr.Markdown(f"**Validation data** `{studio.annotation_file}` with images in `{studio.image_dir}`: "
                    f"{report.images} images, {report.boxes} boxes.\n\nRepairs made while loading:\n{warnings}")
