"""The Validation tab: failure browser (metrics, plots, gallery by severity), side by side, threshold sweep."""
from __future__ import annotations

import gradio as gr

from detector.scoring import MAP_SCORE_FLOOR
from detector.thresholds import Thresholds
from studio.drawing import legend_html
from studio.failures import ANY, ANY_ERROR, DIGIT_CHOICES, FAILURE_TYPES, FailureReport
from studio.plots import confusion_figure, pr_figure, sweep_figure
from studio.session import Studio, StudioError
from studio.ui_controls import ThresholdControls, problem, values_of
from studio.validation import PREDICTION_HEADERS, ValidationViews

PER_CLASS_HEADERS = ["digit", "AP", "AP50", "ground truth", "found", "missed"]
PER_CLASS_WIDTHS = ["12%", "16%", "16%", "22%", "16%", "18%"]  # every column visible
PREDICTION_WIDTHS = ["8%", "10%", "22%", "8%", "13%", "13%", "13%", "13%"]
GALLERY_COLUMNS = 6
GALLERY_ROWS_SHOWN = 3
THUMB_ROW_PX = 190


def _progress_callback(progress: gr.Progress | None, desc: str = "Predicting the validation set (once)"):
    if progress is None:
        return None
    return lambda done, total: progress((done, total), desc=desc, unit="images")


def metrics_markdown(report: FailureReport, studio: Studio) -> str:
    h, c = report.headline(), report.counts()
    n = len(report.matches)
    t = report.thresholds
    lines = [
        f"| mAP @[.5:.95] | AP50 | AP75 | number accuracy | images with wrong number |\n|---|---|---|---|---|\n"
        f"| **{h['mAP']:.3f}** | **{h['AP50']:.3f}** | {h['AP75']:.3f} | **{h['number_accuracy']:.3f}** | "
        f"{c['number wrong']} / {n} |",
        f"Boxes at score ≥ {t.score:.2f}: {c['correct']} correct, {c['wrong_class']} wrong class, "
        f"{c['poor_localisation']} poor localisation, {c['duplicate']} duplicate, {c['background']} background FP; "
        f"{c['missed']} digits missed.",
        f"<small>NMS IoU {t.nms_iou:.2f}{' (class-agnostic)' if t.class_agnostic else ''}, number score ≥ "
        f"{t.number_score:.2f}. mAP and AP count every box down to score {MAP_SCORE_FLOOR}, as "
        f"`python -m detector evaluate` does (the same function computes both); recomputed from cached "
        f"predictions in {report.seconds.get('total', 0):.2f} s ({report.metrics.backend}).</small>",
    ]
    if hint := t.nms_hint():
        lines.append(f"ℹ️ {hint}")
    state = studio.validation()
    if state.unreadable:
        lines.append(f"⚠️ {len(state.unreadable)} validation image(s) could not be read and are left out of the "
                     f"scores (as in `python -m detector evaluate`), e.g. {next(iter(state.unreadable.values()))}")
    return "\n\n".join(lines)


def build_validation_tab(studio: Studio, controls: ThresholdControls, views: ValidationViews, tab: gr.Tab) -> None:
    """Fill the (already opened) tab; opening it predicts the validation set once, lazily."""
    gallery_ids = gr.State([])
    best_state = gr.State(None)
    if studio.split is None or studio.predictor is None:
        gr.Markdown(f"⚠️ {studio.data_error or studio.checkpoint_error}")
    with gr.Row():
        evaluate_btn = gr.Button("Evaluate validation set", variant="primary", elem_id="evaluate-button")
    metrics = gr.Markdown("Press *Evaluate* (or open this tab) to predict the validation set once; "
                          "afterwards every threshold change recomputes from cached predictions.",
                          elem_id="validation-metrics")
    message = gr.Markdown("", elem_id="validation-message")
    with gr.Row():
        per_class = gr.Dataframe(headers=PER_CLASS_HEADERS, label="Per-digit AP", interactive=False,
                                 max_height=420, column_widths=PER_CLASS_WIDTHS, wrap=True, elem_id="per-class")
        confusion = gr.Plot(label="Confusion matrix", show_label=False, elem_id="confusion")
        pr_curve = gr.Plot(label="Precision-recall", show_label=False, elem_id="pr-curve")
    gr.Markdown("### Failure gallery (most wrong first; click an image to inspect it)")
    gr.HTML(legend_html())
    with gr.Row():
        failure_type = gr.Dropdown(list(FAILURE_TYPES), value=ANY_ERROR, label="Failure type", elem_id="failure-type")
        digit = gr.Dropdown(list(DIGIT_CHOICES), value=ANY, label="Digit", elem_id="failure-digit")
        gallery_note = gr.Markdown("")
    gallery = gr.Gallery(label="Failures", columns=GALLERY_COLUMNS, height=THUMB_ROW_PX + 40, allow_preview=False,
                         object_fit="contain",
                         elem_id="failure-gallery")
    gr.Markdown("### Prediction vs ground truth")
    with gr.Row():
        # a Textbox, not a Number: gradio's Number shows 0 (an id that may not exist) until something is picked
        image_id = gr.Textbox(label="Image id", placeholder="click a gallery image or type an id", max_lines=1,
                              elem_id="inspect-id", scale=0, min_width=200)
        inspect_btn = gr.Button("Show", scale=0, elem_id="inspect-button")
    inspect_summary = gr.Markdown("", elem_id="inspect-summary")
    with gr.Row():
        pred_image = gr.Image(label="Prediction (colour = kind)", type="pil", interactive=False, elem_id="inspect-pred")
        gt_image = gr.Image(label="Ground truth (dashed blue = missed)", type="pil", interactive=False,
                            elem_id="inspect-gt")
    pred_table = gr.Dataframe(headers=PREDICTION_HEADERS, label="Predictions and missed digits",
                              interactive=False, max_height=260, column_widths=PREDICTION_WIDTHS, wrap=True,
                              elem_id="inspect-table")
    gr.Markdown("### Threshold sweep")
    with gr.Row():
        sweep_btn = gr.Button("Run threshold sweep", elem_id="sweep-button")
        save_btn = gr.Button("Save best thresholds to checkpoint", elem_id="save-thresholds")
    sweep_plot = gr.Plot(label="mAP and number accuracy vs score threshold", show_label=False, elem_id="sweep-plot")
    sweep_note = gr.Markdown("", elem_id="sweep-note")

    report_outputs = [metrics, per_class, confusion, pr_curve, gallery, gallery_ids, gallery_note, message]

    def _report_view(report: FailureReport, failure_type_value: str, digit_value: str):
        items, ids, total = views.gallery(report, failure_type_value, digit_value)
        note = f"{total} image(s) match; showing the {len(items)} most wrong." if total else "No image matches."
        rows = max(1, min(GALLERY_ROWS_SHOWN, -(-len(items) // GALLERY_COLUMNS)))
        shown = gr.Gallery(value=items, height=rows * THUMB_ROW_PX + 40)  # no blank rows under a short gallery
        return (metrics_markdown(report, studio), report.per_class_rows(), confusion_figure(report.confusion),
                pr_figure(report.metrics), shown, ids, note, "")

    def evaluate(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic,
                 progress=gr.Progress()):
        try:
            report = views.report(Thresholds.of(score, nms_iou, number_score, class_agnostic),
                                  _progress_callback(progress))
        except StudioError as err:
            return (gr.skip(),) * (len(report_outputs) - 1) + (problem(str(err)),)
        return _report_view(report, failure_type_value, digit_value)

    def refresh(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic):
        """Threshold moved: recompute only if the validation set was already predicted (never start the model)."""
        if not studio.validation_ready:
            return (gr.skip(),) * len(report_outputs)
        return evaluate(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic, None)

    filters = [failure_type, digit]
    gr.on([evaluate_btn.click, tab.select], evaluate, inputs=[*filters, *controls.inputs], outputs=report_outputs,
          api_name="evaluate", trigger_mode="always_last")
    gr.on([*controls.triggers, failure_type.change, digit.change], refresh, inputs=[*filters, *controls.inputs],
          outputs=report_outputs, api_name="refresh_validation", trigger_mode="always_last")

    def inspect(image_id_value, score, nms_iou, number_score, class_agnostic, progress=gr.Progress()):
        text = str(image_id_value if image_id_value is not None else "").strip()
        if not text:
            return None, None, "Pick an image in the gallery or type its id.", []
        try:
            chosen = int(float(text))
        except ValueError:
            return None, None, problem(f"image id {text!r} is not a number; click a gallery image or type an id"), []
        try:
            view = views.side_by_side(chosen, Thresholds.of(score, nms_iou, number_score, class_agnostic),
                                      _progress_callback(progress))
        except StudioError as err:
            return None, None, problem(str(err)), []
        return view.prediction, view.ground_truth, view.summary, view.rows

    inspect_outputs = [pred_image, gt_image, inspect_summary, pred_table]
    gr.on([inspect_btn.click, image_id.submit], inspect, inputs=[image_id, *controls.inputs], outputs=inspect_outputs,
          api_name="inspect")

    def reinspect(image_id_value, score, nms_iou, number_score, class_agnostic):
        if not str(image_id_value or "").strip() or not studio.validation_ready:
            return (gr.skip(),) * len(inspect_outputs)
        return inspect(image_id_value, score, nms_iou, number_score, class_agnostic, None)

    gr.on(controls.triggers, reinspect, inputs=[image_id, *controls.inputs], outputs=inspect_outputs,
          api_visibility="private", trigger_mode="always_last")

    def pick(ids, evt: gr.SelectData):
        return str(ids[evt.index]) if ids and evt.index is not None and evt.index < len(ids) else gr.skip()

    gallery.select(pick, gallery_ids, image_id, api_visibility="private").then(
        inspect, [image_id, *controls.inputs], inspect_outputs, api_visibility="private")

    def sweep(score, nms_iou, number_score, class_agnostic, progress=gr.Progress()):
        current = Thresholds.of(score, nms_iou, number_score, class_agnostic)
        try:
            result = views.sweep(current, _progress_callback(progress))
        except StudioError as err:
            return None, problem(str(err)), None
        best = result.best(current)
        note = (f"Best number accuracy **{result.accuracy.best_accuracy:.3f}** at number score ≥ "
                f"**{best.number_score:.2f}**; best mAP at score ≥ **{best.score:.2f}** (NMS IoU {best.nms_iou:.2f}). "
                "*Save* writes these into the checkpoint's metadata, as the app's and the CLI's defaults.")
        saved = {"best": best,
                 "metrics": result.metrics(best, len(studio.records), str(studio.annotation_file))}
        return sweep_figure(result.accuracy, result.maps, current.number_score), note, saved

    sweep_btn.click(sweep, controls.inputs, [sweep_plot, sweep_note, best_state], api_name="sweep")

    def save(best):
        if not best:
            return (*(gr.skip(),) * 4, problem("Run the threshold sweep first; its best values are what gets saved."))
        thresholds: Thresholds = best["best"]
        try:
            studio.save_thresholds(thresholds, best["metrics"])
        except (StudioError, ValueError, OSError) as err:
            return (*(gr.skip(),) * 4, problem(f"Could not save: {err}"))
        gr.Info(f"Saved to {studio.checkpoint}")
        return (*values_of(thresholds), f"✅ Saved thresholds {thresholds.to_dict()} into `{studio.checkpoint}`.")

    save_btn.click(save, best_state, [*controls.outputs, sweep_note], api_name="save_thresholds").then(
        refresh, [*filters, *controls.inputs], report_outputs, api_visibility="private")

