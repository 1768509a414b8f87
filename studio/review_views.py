"""The Annotation review views' logic: suggestions per split and minimum score (cached), the split's decision
store, the picture with the box to edit, and the texts the tab shows. studio/ui_review.py only wires these to Gradio.

The reviewer edits the box on a display-scaled copy of the image (HW2 images are ~100x50 px): `editor_value`
gives the picture and the box in display pixels, `drawn_box` maps what came back to the image's own pixels.
A box and digit left as proposed record an accept; anything else an edit with the reviewer's box and digit.
Every action re-reads the review file, so two browser tabs see (and never overwrite) each other's decisions.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageColor

from detector.categories import category_to_digit, digit_to_category
from detector.hw2 import ImageRecord
from detector.images import ImageLoadError, load_rgb
from detector.matching import MISSED
from studio.drawing import KIND_COLOURS, display_scale, draw_boxes
from studio.lru import BoundedLRU
from studio.paths import VALID_SPLIT
from studio.review import (
    DEFAULT_MIN_SCORE,
    KIND_TEXT,
    Decision,
    ReviewError,
    Suggestion,
    count_by_kind,
    find_suggestions,
)
from studio.review_split import ReviewSplit, available_splits
from studio.session import Progress, Studio, StudioError

SUGGESTION_LISTS_KEPT = 8  # one list per (split, minimum score) asked for
# as the validation views colour the same disagreement: a label the model misses is a missed digit, a digit it
# finds unlabelled a background detection
SUGGESTION_COLOUR = {"swapped_class": KIND_COLOURS["wrong_class"], "badly_located": KIND_COLOURS["poor_localisation"],
                     "spurious_box": KIND_COLOURS[MISSED], "missing_box": KIND_COLOURS["background"],
                     "missing_annotation": KIND_COLOURS["background"], "wrong_label": KIND_COLOURS["wrong_class"],
                     "loose_box": KIND_COLOURS["poor_localisation"], "tight_box": KIND_COLOURS["poor_localisation"]}
EDIT_TOLERANCE_PX = 1.5  # display pixels: the editor returns whole display pixels, so a box left alone moves < 1


class ReviewViews:
    """Suggestions (computed once per split and minimum score from cached candidates) and each split's store."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.split_names = available_splits(studio.data_dir) or [VALID_SPLIT]
        self.default_split = VALID_SPLIT if VALID_SPLIT in self.split_names else self.split_names[0]
        self._splits: dict[str, ReviewSplit] = {}
        self._splits_lock = threading.Lock()
        self.lists: BoundedLRU[tuple[str, float], list[Suggestion]] = BoundedLRU(
            SUGGESTION_LISTS_KEPT, 64 << 20, lambda found: 512 * len(found) + 1024)

    def split(self, name: str | None = None) -> ReviewSplit:
        name = name or self.default_split
        if name not in self.split_names:
            raise StudioError(f"no split {name!r} in `{self.studio.data_dir}`; choose one of {self.split_names}")
        with self._splits_lock:
            if name not in self._splits:
                self._splits[name] = ReviewSplit(self.studio, name)
            return self._splits[name]

    def suggestions(self, min_score: float, progress: Progress | None = None, *,
                    split: str | None = None) -> list[Suggestion]:
        sp = self.split(split)
        key = (sp.name, round(float(min_score), 3))
        if (cached := self.lists.get(key)) is not None:
            return cached
        found = find_suggestions(sp.records, sp.candidates(progress), key[1])
        return self.lists.put(key, found)

    def find(self, suggestion_id: str, min_score: float, split: str | None = None) -> Suggestion:
        """The suggestion of this id, listed at `min_score` or (a caller's other minimum score) at any score."""
        for score in (min_score, 0.0):
            for s in self.suggestions(score, split=split):
                if s.id == suggestion_id:
                    return s
        raise StudioError(f"unknown suggestion {suggestion_id!r}; press 'Find likely annotation errors' again")

    def next_undecided(self, after: str, min_score: float, split: str | None = None, *,
                       skip: bool = False) -> str | None:
        """The first undecided suggestion after `after` (wrapping round). None while `after` is undecided (a
        decision failed: stay on it), unless `skip` (the reviewer moves on without deciding: then the next one
        in the list when every other one is decided)."""
        found = self.suggestions(min_score, split=split)
        decided = self.split(split).require_store().decisions()
        if after not in decided and not skip:
            return None
        ids = [s.id for s in found]
        start = ids.index(after) + 1 if after in ids else 0
        following = ids[start:] + ids[:start]
        for sid in following:
            if sid not in decided and sid != after:
                return sid
        return following[0] if skip and following and following[0] != after else None

    def table(self, min_score: float, split: str | None = None) -> list[list]:
        decisions = self.split(split).require_store().decisions()
        rows = []
        for i, s in enumerate(self.suggestions(min_score, split=split), start=1):
            d = decisions.get(s.id)
            rows.append([i, s.id, s.image_id, KIND_TEXT[s.kind], s.describe(), round(s.confidence, 3),
                         d.decision if d else "", d.time[:19].replace("T", " ") if d else ""])
        return rows

    # ------------------------------------------------------------------ the editor
    def editor_value(self, s: Suggestion, split: str | None = None, digit: str | None = None) -> dict[str, Any]:
        """The image_annotator value: the labels drawn on a display-scaled copy, and the proposed box to edit
        (labelled with `digit`, else the proposed digit)."""
        record = self.split(split).record(s.image_id)
        try:
            image = load_rgb(record.path)
        except ImageLoadError as err:
            raise StudioError(str(err)) from err
        n = len(record.boxes)
        picture = draw_boxes(image, record.boxes, colours=[KIND_COLOURS["ground_truth"]] * n,
                             texts=[str(category_to_digit(int(c))) for c in record.category_ids],
                             widths=[2 if g == s.gt_index else 1 for g in range(n)],
                             scale=display_scale(*image.size))
        box, category = s.proposal()
        sx, sy = _display_factors(record, picture)
        label = digit if digit not in (None, "") else str(category_to_digit(category))
        return {"image": picture, "boxes": [{
            "xmin": box[0] * sx, "ymin": box[1] * sy, "xmax": box[2] * sx, "ymax": box[3] * sy,
            "label": label, "color": ImageColor.getrgb(SUGGESTION_COLOUR[s.kind])}]}

    def drawn_box(self, record: ImageRecord, value: Mapping[str, Any] | None) -> tuple[list[float], float]:
        """The reviewer's box in the image's own pixels (clipped to it) from the editor's value, and how far a box
        left alone can have moved (the editor returns whole display pixels); ReviewError when there is no box."""
        boxes = (value or {}).get("boxes") or []
        if not boxes:
            raise ReviewError("no box on the image: draw one (press C, then drag on the image), or reject")
        size = _editor_size(record, value)
        sx, sy = size[0] / record.width, size[1] / record.height
        b = boxes[0]
        try:
            x1, x2 = sorted(float(b[k]) / sx for k in ("xmin", "xmax"))
            y1, y2 = sorted(float(b[k]) / sy for k in ("ymin", "ymax"))
        except (KeyError, TypeError, ValueError):
            raise ReviewError(f"the editor sent a box without xmin/ymin/xmax/ymax numbers: {b!r}") from None
        box = np.clip([x1, y1, x2, y2], 0, [record.width, record.height] * 2)
        return [round(float(v), 2) for v in box], EDIT_TOLERANCE_PX / min(sx, sy)

    def with_digit(self, value: Mapping[str, Any] | None, digit: str | None) -> dict[str, Any] | None:
        """The editor's value with its box relabelled to `digit` (the reviewer's edits kept)."""
        if not value or digit in (None, ""):
            return None
        return {**value, "boxes": [{**b, "label": str(digit)} for b in value.get("boxes") or []]}

    # ------------------------------------------------------------------ decisions
    def detail(self, s: Suggestion, split: str | None = None) -> str:
        """What the suggestion proposes, and its latest decision if any."""
        box, _ = s.proposal()
        text = (f"**{KIND_TEXT[s.kind]}** image {s.image_id}: {s.describe()}  \n"
                f"proposed box {', '.join(f'{v:.1f}' for v in box)}")
        if decided := self.split(split).require_store().decisions().get(s.id):
            text += f"  \nDecided: **{decided.decision}** at {decided.time[:19]}"
        return text

    def decide(self, suggestion_id: str, decision: str, box: str | Sequence[float] | None, digit: str | None,
               min_score: float, author: str = "", split: str | None = None) -> Decision:
        """Record one decision (accept | reject | edit | delete); ReviewError / StudioError / ValueError say why not."""
        sp = self.split(split)
        s = self.find((suggestion_id or "").strip(), min_score, sp.name)
        record = sp.record(s.image_id)
        category = digit_to_category(int(digit)) if digit not in (None, "") else None
        return sp.require_store().record(s, decision, box=box, category_id=category,
                                         image_size=(record.width, record.height), author=author)

    def decide_drawn(self, suggestion_id: str, value: Mapping[str, Any] | None, digit: str | None, min_score: float,
                     author: str = "", split: str | None = None) -> Decision:
        """Accept the box and digit as the reviewer left them: an accept when they are the proposal, else an edit."""
        sp = self.split(split)
        s = self.find((suggestion_id or "").strip(), min_score, sp.name)
        box, tolerance = self.drawn_box(sp.record(s.image_id), value)
        category = digit_to_category(int(digit)) if digit not in (None, "") else s.proposal()[1]
        if s.is_proposal(box, category, tolerance):
            return self.decide(s.id, "accept", None, None, min_score, author, sp.name)
        return self.decide(s.id, "edit", box, str(category_to_digit(category)), min_score, author, sp.name)

    def summary(self, rows: list[list], min_score: float | None = None, split: str | None = None) -> str:
        """The line above the table: counts per kind, where decisions go, why the list is empty, skipped records."""
        sp = self.split(split)
        store = sp.require_store()
        decided = sum(1 for r in rows if r[6])
        found = self.suggestions(min_score, split=sp.name) if min_score is not None else []
        kinds = f" ({count_by_kind(found)})" if found else ""
        lines = [f"{len(rows)} suggestion(s) in the {sp.name} split{kinds}, {decided} decided. {store.note}"]
        if not rows and min_score is not None:
            lower = (f"lower the minimum score (e.g. to {DEFAULT_MIN_SCORE}) to see more of them"
                     if float(min_score) > DEFAULT_MIN_SCORE else
                     f"a score ranks a suspicion within the split (at most 1 - 1/{len(sp.records)} images here), "
                     "so lower it further to see more")
            lines.append(f"No suggestion: no label of this split is suspicious at score ≥ {float(min_score):.2f}; "
                         f"{lower}.")
        if sp.unreadable:
            lines.append(f"⚠️ {len(sp.unreadable)} image(s) could not be read and were skipped "
                         f"(e.g. {next(iter(sp.unreadable.values()))}).")
        if skipped := store.skipped(sp.records):
            lines.append(skipped)
        return "  \n".join(lines)


def _editor_size(record: ImageRecord, value: Mapping[str, Any] | None) -> tuple[int, int]:
    """The size of the picture the box was drawn on: the file the editor sent back, else draw_boxes' scaled copy
    of the record (studio.drawing.scaled_copy)."""
    image = (value or {}).get("image")
    if isinstance(image, str):
        try:
            with Image.open(image) as picture:
                return picture.size
        except OSError:
            pass
    scale = display_scale(record.width, record.height)
    return max(1, round(record.width * scale)), max(1, round(record.height * scale))


def _display_factors(record: ImageRecord, picture: Image.Image) -> tuple[float, float]:
    return picture.width / record.width, picture.height / record.height
