"""The Annotation review tab: likely label errors, accept / reject / edit each, export corrected COCO.

Every action re-reads the review file, so two browser tabs see (and never overwrite) each other's decisions.
"""
from __future__ import annotations

import gradio as gr

from detector.categories import CLASS_NAMES, category_to_digit, digit_to_category
from detector.images import ImageLoadError, load_rgb
from studio.drawing import KIND_COLOURS, draw_ground_truth
from studio.lru import BoundedLRU
from studio.review import DEFAULT_MIN_SCORE, KIND_TEXT, ReviewError, ReviewStore, Suggestion, find_suggestions
from studio.session import Studio, StudioError
from studio.tempfiles import TEMP
from studio.ui_controls import problem

LIST_HEADERS = ["#", "suggestion", "image", "kind", "proposal", "model score", "decision", "decided at"]
LIST_WIDTHS = ["4%", "20%", "6%", "12%", "22%", "9%", "9%", "18%"]  # every column visible, long text wraps
MIN_SCORE_RANGE = (0.3, 1.0)
SUGGESTION_LISTS_KEPT = 8  # one list per minimum score asked for
SUGGESTION_COLOUR = {"missing_annotation": KIND_COLOURS["background"], "wrong_label": KIND_COLOURS["wrong_class"],
                     "loose_box": KIND_COLOURS["poor_localisation"], "tight_box": KIND_COLOURS["poor_localisation"]}


class ReviewViews:
    """Suggestions (computed once per minimum score from cached candidates) and the shared review store."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.store: ReviewStore | None = None
        self.store_error: str | None = None
        if studio.split is not None:
            try:
                self.store = ReviewStore.beside(studio.annotation_file)
            except ReviewError as err:
                self.store_error = str(err)
        self.lists: BoundedLRU[float, list[Suggestion]] = BoundedLRU(SUGGESTION_LISTS_KEPT, 64 << 20,
                                                                      lambda found: 512 * len(found) + 1024)

    def require_store(self) -> ReviewStore:
        if self.store is None:
            raise StudioError(self.store_error or self.studio.data_error or "no validation set loaded")
        return self.store

    def suggestions(self, min_score: float, progress=None) -> list[Suggestion]:
        key = round(float(min_score), 3)
        if (cached := self.lists.get(key)) is not None:
            return cached
        self.require_store()
        state = self.studio.validation(progress)
        t = self.studio.default_thresholds()
        found = find_suggestions(self.studio.records, state.candidates, t.score, t.nms_iou, t.class_agnostic, key)
        return self.lists.put(key, found)

    def find(self, suggestion_id: str, min_score: float) -> Suggestion:
        for s in self.suggestions(min_score):
            if s.id == suggestion_id:
                return s
        raise StudioError(f"unknown suggestion {suggestion_id!r}; press 'Find likely annotation errors' again")

    def next_undecided(self, after: str, min_score: float) -> str | None:
        """The first undecided suggestion after `after` (wrapping round); None while `after` is undecided."""
        found = self.suggestions(min_score)
        decided = self.require_store().decisions()
        if after not in decided:  # the decision failed (e.g. a bad box): stay on it
            return None
        ids = [s.id for s in found]
        start = ids.index(after) + 1 if after in ids else 0
        for sid in ids[start:] + ids[:start]:
            if sid not in decided:
                return sid
        return None

    def table(self, min_score: float) -> list[list]:
        decisions = self.require_store().decisions()
        rows = []
        for i, s in enumerate(self.suggestions(min_score), start=1):
            d = decisions.get(s.id)
            rows.append([i, s.id, s.image_id, KIND_TEXT[s.kind], s.describe(), round(s.confidence, 3),
                         d.decision if d else "", d.time[:19].replace("T", " ") if d else ""])
        return rows

    def picture(self, s: Suggestion):
        record = self.studio.record(s.image_id)
        try:
            image = load_rgb(record.path)
        except ImageLoadError as err:
            raise StudioError(str(err)) from err
        return draw_ground_truth(image, record.boxes, record.category_ids.tolist(),
                                 extra=[(s.box, s.category_id, SUGGESTION_COLOUR[s.kind])])


def _session(request: gr.Request | None) -> str:
    """Which browser tab decided: enough to tell concurrent reviewers apart in the log."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"browser:{session[:8]}" if session else "browser"


def _summary(rows: list[list], views: ReviewViews, min_score: float | None = None) -> str:
    decided = sum(1 for r in rows if r[6])
    lines = [f"{len(rows)} suggestion(s), {decided} decided. {views.store.note}"]
    if not rows and min_score is not None:
        lower = (f"lower the minimum score (e.g. to {DEFAULT_MIN_SCORE}) to see less confident disagreements"
                 if float(min_score) > DEFAULT_MIN_SCORE else
                 f"even down to {float(min_score):.2f} it agrees with the labels, or is too unsure to disagree "
                 "(see its mAP in the Validation tab)")
        lines.append(f"No suggestion: no prediction at score ≥ {float(min_score):.2f} disagrees with the labels; "
                     f"{lower}.")
    if skipped := views.store.skipped(views.studio.records):
        lines.append(skipped)
    return "  \n".join(lines)


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
        return rows, _summary(rows, views, min_score_value)

    find_btn.click(listing_view, min_score, [listing, summary], api_name="review_list")

    def show(suggestion_id, min_score_value):
        try:
            s = views.find((suggestion_id or "").strip(), min_score_value)
            image = views.picture(s)
        except StudioError as err:
            return None, problem(str(err)), gr.skip(), gr.skip()
        decided = views.store.decisions().get(s.id)
        text = f"**{KIND_TEXT[s.kind]}** image {s.image_id}: {s.describe()}"
        if decided:
            text += f"  \nDecided: **{decided.decision}** at {decided.time[:19]}"
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
            s = views.find((suggestion_id or "").strip(), min_score_value)
            record = studio.record(s.image_id)
            category = digit_to_category(int(digit)) if digit not in (None, "") else None
            views.require_store().record(s, decision, box=box, category_id=category,
                                         image_size=(record.width, record.height), author=author)
            rows = views.table(min_score_value)  # re-read: includes other tabs' decisions
        except (StudioError, ReviewError, ValueError) as err:
            return gr.skip(), problem(str(err)), gr.skip()
        return (rows, f"✅ {decision} recorded for {s.id} in `{views.store.path}`.",
                _summary(rows, views, min_score_value))

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
