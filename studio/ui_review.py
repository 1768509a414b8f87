"""The Annotation review tab: likely label errors in any split; fix the box by drawing on the image, set the digit
from the keyboard, accept / reject / next with single keys; export corrected COCO.

Gradio wiring only: what it shows and records comes from studio.review_views.ReviewViews. Gradio has no key
bindings, so REVIEW_KEYS_HEAD (a script for the page's <head>, passed by app.py) maps keys to the tab's buttons.
"""
from __future__ import annotations

import gradio as gr
from gradio_image_annotation import image_annotator

from detector.categories import CLASS_NAMES, category_to_digit
from studio.review import DEFAULT_MIN_SCORE, ReviewError
from studio.review_views import ReviewViews
from studio.session import Studio, StudioError
from studio.tempfiles import TEMP
from studio.ui_controls import problem

LIST_HEADERS = ["#", "suggestion", "image", "kind", "proposal", "suspicion", "decision", "decided at"]
LIST_WIDTHS = ["4%", "20%", "6%", "12%", "22%", "9%", "9%", "18%"]  # every column visible, long text wraps
MIN_SCORE_RANGE = (0.3, 1.0)
KEYS_HELP = ("**Keys** (when not typing in a field): **A** accept the box and digit as shown (an edit when you "
             "changed them; for *no digit here?* a delete of that label) · **R** reject · **N** next, undecided · "
             "**0-9** set the digit. On the image: **C** then drag to draw a new box, **D** then drag to move it or "
             "its corners, **Space** reset the zoom (wheel zooms).")
# keydown anywhere but in a text field -> the review tab's buttons and digit choice; only while that tab is shown
REVIEW_KEYS_HEAD = """<script>
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  const typing = target && (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName) ||
    (target.tagName === "INPUT" && !["radio", "checkbox", "button", "range"].includes(target.type)));
  const accept = document.getElementById("review-accept");
  if (typing || !accept || accept.offsetParent === null) return;
  const key = event.key.toLowerCase();
  const buttons = {a: "review-accept", r: "review-reject", n: "review-next"};
  let control = null;
  if (key in buttons) control = document.getElementById(buttons[key]);
  else if (/^[0-9]$/.test(key)) control = document.querySelector(`#review-digit input[value="${key}"]`);
  if (control) { event.preventDefault(); control.click(); }
});
</script>"""


def _session(request: gr.Request | None) -> str:
    """Which browser tab decided: enough to tell concurrent reviewers apart in the log."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"browser:{session[:8]}" if session else "browser"


def build_review_tab(studio: Studio, views: ReviewViews) -> None:
    gr.Markdown("Suggestions are the labels (and unlabelled digits) the model disagrees with most in this split: "
                "a wrong digit, a box off its digit, a box with no digit under it, a digit with no box. A score ranks "
                "a suspicion within the split (0.9: for each kind, about one image in ten has one as strong), so the "
                "minimum score sets how many you review: about 4 x (1 - score) per image. Decisions are saved as "
                "you make them, one line each in the split's `.review.jsonl`; the annotation file is never changed.",
                elem_id="review-note")
    with gr.Row():
        split = gr.Dropdown(views.split_names, value=views.default_split, label="Split to review", scale=1,
                            elem_id="review-split")
        min_score = gr.Slider(*MIN_SCORE_RANGE, DEFAULT_MIN_SCORE, step=0.01, scale=2,
                              label="Minimum suspicion score for a suggestion", elem_id="review-min-score")
        find_btn = gr.Button("Find likely annotation errors", variant="primary", elem_id="review-find")
        export_btn = gr.Button("Export corrected COCO json", elem_id="review-export")

    def split_note(name):
        try:
            sp = views.split(name)
            return sp.fairness_note() if sp.store else problem(sp.error or f"no {name} split")
        except StudioError as err:
            return problem(str(err))

    fairness = gr.Markdown(split_note(views.default_split), elem_id="review-fairness")
    summary = gr.Markdown("", elem_id="review-summary")
    listing = gr.Dataframe(headers=LIST_HEADERS, label="Suggestions (click a row)", interactive=False,
                           max_height=300, column_widths=LIST_WIDTHS, wrap=True, elem_id="review-list")
    with gr.Row():
        with gr.Column(scale=2):
            editor = image_annotator(label="Labels (teal) and the proposed box: drag it or its corners, or press C "
                                           "and draw a new one", image_type="filepath", single_box=True,
                                     disable_edit_boxes=True, show_remove_button=False, sources=[],
                                     show_clear_button=False, show_download_button=False, show_share_button=False,
                                     boxes_alpha=0.12, box_min_size=4, handle_size=7, box_thickness=3,
                                     box_selected_thickness=4, elem_id="review-editor")
            exported = gr.File(label="Corrected annotations", interactive=False, height=90, elem_id="review-file")
        with gr.Column(scale=1):
            current = gr.Textbox(label="Suggestion", interactive=True, elem_id="review-current",
                                 info="its id; filled when you click a row")
            described = gr.Markdown("", elem_id="review-detail")
            digit = gr.Radio(list(CLASS_NAMES), label="Digit (keys 0-9)", elem_id="review-digit")
            with gr.Row():
                accept = gr.Button("Accept (A)", variant="primary", elem_id="review-accept")
                reject = gr.Button("Reject (R)", variant="stop", elem_id="review-reject")
                next_btn = gr.Button("Next (N)", elem_id="review-next")
            delete = gr.Button("Delete this ground-truth box", size="sm", elem_id="review-delete")
            status = gr.Markdown("", elem_id="review-status")
            gr.Markdown(KEYS_HELP, elem_id="review-keys")

    split.change(split_note, split, fairness, api_visibility="private").then(
        lambda: ([], "", "", None, "", None), None, [listing, summary, current, editor, described, digit],
        api_visibility="private")

    def listing_view(min_score_value, split_name, progress=gr.Progress()):
        try:
            def cb(done, total):
                progress((done, total), desc=f"Predicting the {split_name} split (once)", unit="images")

            views.suggestions(min_score_value, cb, split=split_name)  # computes (once) what the table shows
            rows = views.table(min_score_value, split_name)
        except StudioError as err:
            return [], problem(str(err))
        return rows, views.summary(rows, min_score_value, split_name)

    find_btn.click(listing_view, [min_score, split], [listing, summary], api_name="review_list")

    def show(suggestion_id, min_score_value, split_name):
        try:
            s = views.find((suggestion_id or "").strip(), min_score_value, split_name)
            value = views.editor_value(s, split_name)
            text = views.detail(s, split_name)
        except StudioError as err:
            return None, problem(str(err)), gr.skip()
        return value, text, CLASS_NAMES[category_to_digit(s.proposal()[1])]

    show_outputs = [editor, described, digit]
    current.submit(show, [current, min_score, split], show_outputs, api_name="review_show")

    def pick(rows, evt: gr.SelectData):
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return rows.iloc[row, 1] if hasattr(rows, "iloc") else rows[row][1]
        except (IndexError, KeyError, TypeError):
            return gr.skip()

    listing.select(pick, listing, current, api_visibility="private").then(
        show, [current, min_score, split], show_outputs, api_visibility="private")

    # a digit key (or click) relabels the box on the image; the reviewer's box edits are kept
    digit.input(lambda value, d: views.with_digit(value, d) or gr.skip(), [editor, digit], editor,
                api_visibility="private", queue=False)

    def decided(record, min_score_value, split_name, author=""):
        """Run one decision and answer (table, status, summary); a refused one answers with the reason."""
        try:
            recorded = record(author)
            rows = views.table(min_score_value, split_name)  # re-read: includes other tabs' decisions
        except (StudioError, ReviewError, ValueError) as err:
            return gr.skip(), problem(str(err)), gr.skip()
        path = views.split(split_name).require_store().path
        return (rows, f"✅ {recorded.decision} recorded for {recorded.suggestion_id} in `{path}`.",
                views.summary(rows, min_score_value, split_name))

    def accept_shown(sid, value, d, ms, split_name, request: gr.Request):
        return decided(lambda author: views.decide_drawn(sid, value, d, ms, author, split_name), ms, split_name,
                       _session(request))

    def button_handler(decision: str):
        def handler(sid, value, d, ms, split_name, request: gr.Request):
            return decided(lambda author: views.decide(sid, decision, None, None, ms, author, split_name), ms,
                           split_name, _session(request))
        return handler

    def following(skip: bool):
        def handler(suggestion_id, min_score_value, split_name):
            """The next suggestion nobody has decided yet (reviewers' flow); stays when a decision failed."""
            try:
                return views.next_undecided((suggestion_id or "").strip(), min_score_value, split_name,
                                            skip=skip) or gr.skip()
            except StudioError:
                return gr.skip()
        return handler

    inputs = [current, editor, digit, min_score, split]
    for button, handler in ((accept, accept_shown), (reject, button_handler("reject")),
                            (delete, button_handler("delete"))):
        button.click(handler, inputs, [listing, status, summary], api_visibility="private").then(
            following(skip=False), [current, min_score, split], current, api_visibility="private").then(
            show, [current, min_score, split], show_outputs, api_visibility="private")
    next_btn.click(following(skip=True), [current, min_score, split], current, api_visibility="private").then(
        show, [current, min_score, split], show_outputs, api_visibility="private")

    def review_decide(suggestion_id: str, decision: str, box: str = "", digit: str = "",
                      min_score: float = DEFAULT_MIN_SCORE, author: str = "api", split: str = "") -> str:
        """Record one decision (accept | reject | edit | delete) for a suggestion of a split (default: the
        validation split); an edit takes box 'x1, y1, x2, y2' in the image's pixels and a digit. Returns the
        status line."""
        return decided(lambda who: views.decide(suggestion_id, decision, box, digit, min_score, who, split or None),
                       min_score, split or None, author)[1]

    gr.api(review_decide, api_name="review_decide")

    def export(split_name):
        try:
            sp = views.split(split_name)
            store = sp.require_store()
            path = store.export(sp.records)
            download = TEMP.copy(path)  # gradio serves temp files only
        except (StudioError, OSError) as err:
            return None, problem(str(err))
        text = f"✅ Corrected annotations written to `{path}` (the original file is unchanged)."
        if skipped := store.skipped(sp.records):
            text += f"  \n{skipped}"
        return str(download), text

    export_btn.click(export, split, [exported, status], api_name="review_export")
