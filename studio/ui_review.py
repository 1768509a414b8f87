"""The Annotation review tab: likely label errors, accept / reject / edit each, export corrected COCO.

Gradio wiring only: what it shows and records comes from studio.review_views.ReviewViews.
"""
from __future__ import annotations

import gradio as gr

from detector.categories import CLASS_NAMES, category_to_digit
from studio.review import DEFAULT_MIN_SCORE, ReviewError
from studio.review_views import ReviewViews
from studio.session import Studio, StudioError
from studio.tempfiles import TEMP
from studio.ui_controls import problem

LIST_HEADERS = ["#", "suggestion", "image", "kind", "proposal", "model score", "decision", "decided at"]
LIST_WIDTHS = ["4%", "20%", "6%", "12%", "22%", "9%", "9%", "18%"]  # every column visible, long text wraps
MIN_SCORE_RANGE = (0.3, 1.0)


def _session(request: gr.Request | None) -> str:
    """Which browser tab decided: enough to tell concurrent reviewers apart in the log."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"browser:{session[:8]}" if session else "browser"


def _box_text(box) -> str:
    return ", ".join(f"{v:.1f}" for v in box)


def build_review_tab(studio: Studio, views: ReviewViews) -> None:
    note = views.store.note if views.store else f"⚠️ {views.store_error or studio.data_error}"
    gr.Markdown(f"Suggestions come from confident model predictions that disagree with the labels. {note} "
                "Decisions are saved as you make them; the original annotation file is never changed.",
                elem_id="review-note")
    with gr.Row():
        min_score = gr.Slider(*MIN_SCORE_RANGE, DEFAULT_MIN_SCORE, step=0.01,
                              label="Minimum model score for a suggestion", elem_id="review-min-score")
        find_btn = gr.Button("Find likely annotation errors", variant="primary", elem_id="review-find")
        export_btn = gr.Button("Export corrected COCO json", elem_id="review-export")
    summary = gr.Markdown("", elem_id="review-summary")
    listing = gr.Dataframe(headers=LIST_HEADERS, label="Suggestions (click a row)", interactive=False,
                           max_height=300, column_widths=LIST_WIDTHS, wrap=True, elem_id="review-list")
    with gr.Row():
        with gr.Column(scale=2):
            picture = gr.Image(label="Ground truth (teal) and the suggestion (dashed)", type="pil",
                               interactive=False, elem_id="review-image")
        with gr.Column(scale=1):
            current = gr.Textbox(label="Suggestion", interactive=True, elem_id="review-current",
                                 info="its id; filled when you click a row")
            described = gr.Markdown("")
            with gr.Row():
                accept = gr.Button("Accept", variant="primary", elem_id="review-accept")
                reject = gr.Button("Reject", variant="stop", elem_id="review-reject")
            edit_box = gr.Textbox(label="Box x1, y1, x2, y2 (pixels)", elem_id="review-box")
            edit_digit = gr.Dropdown(list(CLASS_NAMES), label="Digit", elem_id="review-digit")
            with gr.Row():
                save_edit = gr.Button("Save edit", elem_id="review-edit")
                delete = gr.Button("Delete this ground-truth box", elem_id="review-delete")
            status = gr.Markdown("", elem_id="review-status")
            exported = gr.File(label="Corrected annotations", interactive=False, height=90, elem_id="review-file")

    def listing_view(min_score_value, progress=gr.Progress()):
        try:
            cb = (lambda d, n: progress((d, n), desc="Predicting the validation set (once)", unit="images")) \
                if progress is not None else None
            views.suggestions(min_score_value, cb)  # computes (once) what the table shows
            rows = views.table(min_score_value)
        except StudioError as err:
            return [], problem(str(err))
        return rows, views.summary(rows, min_score_value)

    find_btn.click(listing_view, min_score, [listing, summary], api_name="review_list")

    def show(suggestion_id, min_score_value):
        try:
            s = views.find((suggestion_id or "").strip(), min_score_value)
            image = views.picture(s)
            text = views.detail(s)
        except StudioError as err:
            return None, problem(str(err)), gr.skip(), gr.skip()
        return image, text, _box_text(s.box), CLASS_NAMES[category_to_digit(s.category_id)]

    show_outputs = [picture, described, edit_box, edit_digit]
    current.submit(show, [current, min_score], show_outputs, api_name="review_show")

    def pick(rows, evt: gr.SelectData):
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return rows.iloc[row, 1] if hasattr(rows, "iloc") else rows[row][1]
        except (IndexError, KeyError, TypeError):
            return gr.skip()

    listing.select(pick, listing, current, api_visibility="private").then(
        show, [current, min_score], show_outputs, api_visibility="private")

    def decide(suggestion_id, decision, box, digit, min_score_value, author=""):
        try:
            recorded = views.decide(suggestion_id, decision, box, digit, min_score_value, author=author)
            rows = views.table(min_score_value)  # re-read: includes other tabs' decisions
        except (StudioError, ReviewError, ValueError) as err:
            return gr.skip(), problem(str(err)), gr.skip()
        return (rows, f"✅ {decision} recorded for {recorded.suggestion_id} in `{views.store.path}`.",
                views.summary(rows, min_score_value))

    def button_handler(decision: str):
        def handler(sid, box, digit, ms, request: gr.Request):
            return decide(sid, decision, box, digit, ms, author=_session(request))
        return handler

    def next_undecided(suggestion_id, min_score_value):
        """After a decision, move on to the next suggestion nobody has decided yet (reviewers' flow)."""
        try:
            return views.next_undecided((suggestion_id or "").strip(), min_score_value) or gr.skip()
        except StudioError:
            return gr.skip()

    for button, decision in ((accept, "accept"), (reject, "reject"), (save_edit, "edit"), (delete, "delete")):
        button.click(button_handler(decision), [current, edit_box, edit_digit, min_score], [listing, status, summary],
                     api_visibility="private").then(
            next_undecided, [current, min_score], current, api_visibility="private").then(
            show, [current, min_score], show_outputs, api_visibility="private")

    def review_decide(suggestion_id: str, decision: str, box: str = "", digit: str = "",
                      min_score: float = DEFAULT_MIN_SCORE, author: str = "api") -> str:
        """Record one decision (accept | reject | edit | delete) for a suggestion; returns the status line."""
        return decide(suggestion_id, decision, box, digit, min_score, author=author)[1]

    gr.api(review_decide, api_name="review_decide")

    def export():
        try:
            store = views.require_store()
            path = store.export(studio.records)
            download = TEMP.copy(path)  # gradio serves temp files only
        except (StudioError, OSError) as err:
            return None, problem(str(err))
        text = f"✅ Corrected annotations written to `{path}` (the original file is unchanged)."
        if skipped := store.skipped(studio.records):
            text += f"  \n{skipped}"
        return str(download), text

    export_btn.click(export, None, [exported, status], api_name="review_export")
