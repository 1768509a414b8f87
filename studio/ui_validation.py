"""The Validation tab: failure browser (metrics, clickable confusion matrix, plots, gallery by severity), TIDE's
error decomposition and per-digit P/R/F1 curves, side by side, threshold sweep (with per-digit thresholds)."""
from __future__ import annotations

import gradio as gr

from detector.calibration import MIN_DIGIT_COUNT, default_min_gain
from detector.scoring import MAP_SCORE_FLOOR
from detector.thresholds import Thresholds
from detector.tide import BG_IOU, ERROR_KINDS, ERROR_NAMES, POS_IOU
from studio.drawing import legend_html
from studio.failures import ANY, ANY_ERROR, DIGIT_CHOICES, FAILURE_TYPES, FailureReport, cell_label, parse_cell
from studio.plots import confusion_table, f1_figure, pr_figure, sweep_figure, tide_figure
from studio.session import Studio, StudioError
from studio.ui_controls import ThresholdControls, per_digit_checkbox_update, problem, thresholds_of, values_of
from studio.validation import PREDICTION_HEADERS, ValidationViews

PER_CLASS_HEADERS = ["digit", "AP", "AP50", "ground truth", "found", "missed"]
PER_CLASS_WIDTHS = ["12%", "16%", "16%", "22%", "16%", "18%"]  # every column visible
PREDICTION_WIDTHS = ["7%", "9%", "19%", "9%", "8%", "12%", "12%", "12%", "12%"]
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
    own = ", ".join(f"{d} ≥ {v:.2f}" for d, v in t.number_score_by_digit)
    lines = [
        f"| mAP @[.5:.95] | AP50 | AP75 | number accuracy | images with wrong number |\n|---|---|---|---|---|\n"
        f"| **{h['mAP']:.3f}** | **{h['AP50']:.3f}** | {h['AP75']:.3f} | **{h['number_accuracy']:.3f}** | "
        f"{c['number wrong']} / {n} |",
        f"Boxes at score ≥ {t.score:.2f}: {c['correct']} correct, {c['wrong_class']} wrong class, "
        f"{c['poor_localisation']} poor localisation, {c['duplicate']} duplicate, {c['background']} background FP; "
        f"{c['missed']} digits missed.",
        f"<small>NMS IoU {t.nms_iou:.2f}{' (class-agnostic)' if t.class_agnostic else ''}, number score ≥ "
        f"{t.number_score:.2f}{f' (per digit: {own})' if own else ''}. mAP and AP count every box down to score "
        f"{MAP_SCORE_FLOOR}, as "
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


def tide_markdown(report: FailureReport) -> str:
    """What the TIDE chart shows and where its errors are in the gallery."""
    result, t = report.tide, report.thresholds
    counts = result.counts()
    worst = max(ERROR_KINDS, key=lambda k: result.delta_ap[k])
    cells = " | ".join(f"{100 * result.delta_ap[k]:.2f} ({counts[k]})" for k in ERROR_KINDS)
    lead = (f"Fixing **{ERROR_NAMES[worst]}** errors alone would gain the most: "
            f"+{100 * result.delta_ap[worst]:.2f} AP50 points." if result.delta_ap[worst] > 0 else
            "No error kind costs AP50 at these thresholds.")
    return (f"**TIDE** on the {sum(len(m.pred) for m in report.matches)} boxes at score ≥ {t.score:.2f}: AP50 "
            f"{100 * result.ap:.2f}. {lead}\n\n| " + " | ".join(ERROR_KINDS) + " |\n|" + "---|" * len(ERROR_KINDS) +
            f"\n| {cells} |\n\n<small>dAP in AP50 points (errors). TIDE's rules (tidecv): IoU ≥ {POS_IOU} matches, "
            f"≤ {BG_IOU} is background; a poorly placed box is Loc before a wrong class is Cls; Miss counts only what "
            "no Cls/Loc fix recovers. Pick *TIDE Cls* ... *TIDE Miss* under Failure type to see those images.</small>")


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
        pr_curve = gr.Plot(label="Precision-recall", show_label=False, elem_id="pr-curve")
    confusion = gr.Dataframe(label="Confusion matrix: rows true, columns predicted (FP: a box on no digit; missed: "
                                   "no box), shaded by the row's share. Click a cell to see its images in the gallery.",
                             interactive=False, max_height=560, column_widths=["16%"] + ["7%"] * 12,
                             elem_id="confusion")
    gr.Markdown("### Error analysis: TIDE, and precision / recall / F1 per digit")
    tide_note = gr.Markdown("", elem_id="tide-note")
    with gr.Row():
        tide_plot = gr.Plot(label="TIDE: AP50 gained by fixing each error kind", show_label=False,
                            elem_id="tide-plot", scale=1)
        f1_plot = gr.Plot(label="Precision / recall / F1 per digit", show_label=False, elem_id="f1-curves", scale=2)
    gr.Markdown("### Failure gallery (most wrong first; click an image to inspect it)")
    gr.HTML(legend_html())
    with gr.Row():
        failure_type = gr.Dropdown(list(FAILURE_TYPES), value=ANY_ERROR, label="Failure type", elem_id="failure-type")
        digit = gr.Dropdown(list(DIGIT_CHOICES), value=ANY, label="Digit", elem_id="failure-digit")
        cell = gr.Textbox(label="Confusion cell (true,predicted)", placeholder="click the matrix, or e.g. 3,8 / 7,bg",
                          max_lines=1, elem_id="confusion-cell", scale=0, min_width=200)
        clear_cell = gr.Button("Clear cell", scale=0, elem_id="clear-cell")
        gallery_note = gr.Markdown("", elem_id="gallery-note")
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

    def _thresholds(*values) -> Thresholds:
        return thresholds_of(studio.default_thresholds(), *values)

    def _report_view(report: FailureReport, failure_type_value: str, digit_value: str, cell_value: str | None):
        try:
            chosen = parse_cell(cell_value)
        except ValueError as err:
            return (*(gr.skip(),) * (len(report_outputs) - 1), problem(str(err)))
        items, ids, total = views.gallery(report, failure_type_value, digit_value, cell=chosen)
        note = f"{total} image(s) match; showing the {len(items)} most wrong." if total else "No image matches."
        if chosen is not None:
            row, column = (cell_label(i) for i in chosen)
            note = (f"Confusion cell true {row} → predicted {column}: {total} image(s); showing the {len(items)} "
                    "most wrong. *Clear cell* to use the filters again.")
        rows = max(1, min(GALLERY_ROWS_SHOWN, -(-len(items) // GALLERY_COLUMNS)))
        shown = gr.Gallery(value=items, height=rows * THUMB_ROW_PX + 40)  # no blank rows under a short gallery
        return (metrics_markdown(report, studio), report.per_class_rows(), confusion_table(report.confusion),
                pr_figure(report.metrics), shown, ids, note, "")

    def evaluate(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic, per_digit=False,
                 cell_value=None, progress=gr.Progress()):
        try:
            report = views.report(_thresholds(score, nms_iou, number_score, class_agnostic, per_digit),
                                  _progress_callback(progress))
        except StudioError as err:
            return (gr.skip(),) * (len(report_outputs) - 1) + (problem(str(err)),)
        return _report_view(report, failure_type_value, digit_value, cell_value)

    def refresh(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic, per_digit=False,
                cell_value=None):
        """Threshold moved: recompute only if the validation set was already predicted (never start the model)."""
        if not studio.validation_ready:
            return (gr.skip(),) * len(report_outputs)
        return evaluate(failure_type_value, digit_value, score, nms_iou, number_score, class_agnostic, per_digit,
                        cell_value, None)

    analysis_outputs = [tide_plot, f1_plot, tide_note]

    def analysis(score, nms_iou, number_score, class_agnostic, per_digit=False):
        """TIDE's chart and the P/R/F1 curves at these thresholds, from the (cached) report; never runs the model."""
        if not studio.validation_ready:
            return (gr.skip(),) * len(analysis_outputs)
        t = _thresholds(score, nms_iou, number_score, class_agnostic, per_digit)
        try:
            report = views.report(t)
        except StudioError as err:
            return gr.skip(), gr.skip(), problem(str(err))
        return tide_figure(report.tide, t), f1_figure(report.curves, t), tide_markdown(report)

    inputs = [failure_type, digit, *controls.inputs, cell]
    gr.on([evaluate_btn.click, tab.select], evaluate, inputs=inputs, outputs=report_outputs,
          api_name="evaluate", trigger_mode="always_last").then(
        analysis, controls.inputs, analysis_outputs, api_name="error_analysis")
    gr.on(controls.triggers, refresh, inputs=inputs, outputs=report_outputs, api_name="refresh_validation",
          trigger_mode="always_last").then(analysis, controls.inputs, analysis_outputs, api_visibility="private")
    gr.on([failure_type.change, digit.change, cell.change], refresh, inputs=inputs, outputs=report_outputs,
          api_visibility="private", trigger_mode="always_last")

    def pick_cell(evt: gr.SelectData):
        """A confusion-table click: row = true digit, column 1.. = predicted (column 0 names the row)."""
        index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if index is None or int(index[1]) < 1:
            return gr.skip()
        return f"{cell_label(int(index[0]))},{cell_label(int(index[1]) - 1)}"

    confusion.select(pick_cell, None, cell, api_visibility="private")
    clear_cell.click(lambda: "", None, cell, api_visibility="private")

    def inspect(image_id_value, score, nms_iou, number_score, class_agnostic, per_digit=False,
                progress=gr.Progress()):
        text = str(image_id_value if image_id_value is not None else "").strip()
        if not text:
            return None, None, "Pick an image in the gallery or type its id.", []
        try:
            chosen = int(float(text))
        except ValueError:
            return None, None, problem(f"image id {text!r} is not a number; click a gallery image or type an id"), []
        try:
            view = views.side_by_side(chosen, _thresholds(score, nms_iou, number_score, class_agnostic, per_digit),
                                      _progress_callback(progress))
        except StudioError as err:
            return None, None, problem(str(err)), []
        return view.prediction, view.ground_truth, view.summary, view.rows

    inspect_outputs = [pred_image, gt_image, inspect_summary, pred_table]
    gr.on([inspect_btn.click, image_id.submit], inspect, inputs=[image_id, *controls.inputs], outputs=inspect_outputs,
          api_name="inspect")

    def reinspect(image_id_value, score, nms_iou, number_score, class_agnostic, per_digit=False):
        if not str(image_id_value or "").strip() or not studio.validation_ready:
            return (gr.skip(),) * len(inspect_outputs)
        return inspect(image_id_value, score, nms_iou, number_score, class_agnostic, per_digit, None)

    gr.on(controls.triggers, reinspect, inputs=[image_id, *controls.inputs], outputs=inspect_outputs,
          api_visibility="private", trigger_mode="always_last")

    def pick(ids, evt: gr.SelectData):
        return str(ids[evt.index]) if ids and evt.index is not None and evt.index < len(ids) else gr.skip()

    gallery.select(pick, gallery_ids, image_id, api_visibility="private").then(
        inspect, [image_id, *controls.inputs], inspect_outputs, api_visibility="private")

    def sweep(score, nms_iou, number_score, class_agnostic, per_digit=False, progress=gr.Progress()):
        current = _thresholds(score, nms_iou, number_score, class_agnostic, per_digit)
        try:
            result = views.sweep(current, _progress_callback(progress))
        except StudioError as err:
            return None, problem(str(err)), None
        best = result.best(current)
        own = ", ".join(f"{d} ≥ {v:.2f}" for d, v in best.number_score_by_digit)
        per_digit_note = (f"Per-digit number thresholds **{own}** read **{result.accuracy_per_digit:.3f}**. "
                          if own else
                          f"No digit gets its own number threshold (each needs {MIN_DIGIT_COUNT}+ boxes here and "
                          f"{default_min_gain(len(studio.records))}+ more numbers read right). ")
        note = (f"Best number accuracy **{result.accuracy.best_accuracy:.3f}** at number score ≥ "
                f"**{best.number_score:.2f}**; best mAP at score ≥ **{best.score:.2f}** (NMS IoU {best.nms_iou:.2f}). "
                f"{per_digit_note}*Save* writes these into the checkpoint's metadata, as the app's and the CLI's "
                "defaults.")
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
        lambda: per_digit_checkbox_update(studio.default_thresholds()), None, controls.per_digit,
        api_visibility="private").then(refresh, inputs, report_outputs, api_visibility="private")

