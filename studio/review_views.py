"""The Annotation review views' logic: suggestions per minimum score (cached), the shared decision store,
the picture and the texts the tab shows. studio/ui_review.py only wires these to Gradio.

Every action re-reads the review file, so two browser tabs see (and never overwrite) each other's decisions.
"""
from __future__ import annotations

from PIL import Image

from detector.categories import digit_to_category
from detector.images import ImageLoadError, load_rgb
from studio.drawing import KIND_COLOURS, draw_ground_truth
from studio.lru import BoundedLRU
from studio.review import DEFAULT_MIN_SCORE, KIND_TEXT, Decision, ReviewError, ReviewStore, Suggestion, find_suggestions
from studio.session import Progress, Studio, StudioError

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

    def suggestions(self, min_score: float, progress: Progress | None = None) -> list[Suggestion]:
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

    def picture(self, s: Suggestion) -> Image.Image:
        record = self.studio.record(s.image_id)
        try:
            image = load_rgb(record.path)
        except ImageLoadError as err:
            raise StudioError(str(err)) from err
        return draw_ground_truth(image, record.boxes, record.category_ids.tolist(),
                                 extra=[(s.box, s.category_id, SUGGESTION_COLOUR[s.kind])])

    def detail(self, s: Suggestion) -> str:
        """What the suggestion proposes, and its latest decision if any."""
        text = f"**{KIND_TEXT[s.kind]}** image {s.image_id}: {s.describe()}"
        if decided := self.require_store().decisions().get(s.id):
            text += f"  \nDecided: **{decided.decision}** at {decided.time[:19]}"
        return text

    def decide(self, suggestion_id: str, decision: str, box: str | None, digit: str | None, min_score: float,
               author: str = "") -> Decision:
        """Record one decision (accept | reject | edit | delete); ReviewError / StudioError / ValueError say why not."""
        s = self.find((suggestion_id or "").strip(), min_score)
        record = self.studio.record(s.image_id)
        category = digit_to_category(int(digit)) if digit not in (None, "") else None
        return self.require_store().record(s, decision, box=box, category_id=category,
                                           image_size=(record.width, record.height), author=author)

    def summary(self, rows: list[list], min_score: float | None = None) -> str:
        """The line above the table: counts, where decisions go, why the list is empty, skipped log records."""
        store = self.require_store()
        decided = sum(1 for r in rows if r[6])
        lines = [f"{len(rows)} suggestion(s), {decided} decided. {store.note}"]
        if not rows and min_score is not None:
            lower = (f"lower the minimum score (e.g. to {DEFAULT_MIN_SCORE}) to see less confident disagreements"
                     if float(min_score) > DEFAULT_MIN_SCORE else
                     f"even down to {float(min_score):.2f} it agrees with the labels, or is too unsure to disagree "
                     "(see its mAP in the Validation tab)")
            lines.append(f"No suggestion: no prediction at score ≥ {float(min_score):.2f} disagrees with the labels; "
                         f"{lower}.")
        if skipped := store.skipped(self.studio.records):
            lines.append(skipped)
        return "  \n".join(lines)
