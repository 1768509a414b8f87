"""Annotation review: likely label errors, a reviewer's decisions, and a corrected COCO export.

Decisions go to an append-only JSON-lines file next to the data (DATA/valid.review.jsonl), one record per
decision with a timestamp, written as each decision is made. Why append-only: the original annotation file
is never touched, a restart loses nothing, and the file is its own audit trail. Several browser tabs (or
processes) can review at once: every append holds an exclusive `fcntl` lock, every read a shared one, and
every action re-reads the file, so nobody's decisions are lost; for one suggestion the last decision wins.
When the data folder is read-only the file goes to the user data dir and `ReviewStore.note` says where.

The log is read as untrusted input: anyone can append to it, so every record is checked when it is read (a
known decision, a box of four finite numbers with x2 > x1 and y2 > y1, a category id in 1..10, the fields a
decision needs) and again against the data on export (the image exists, the box index exists, the box lies in
the image). A bad record is skipped and counted, never fatal: `ReviewStore.skipped()` says how many and why.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detector.boxes import xyxy_to_xywh
from detector.categories import category_to_digit, is_category_id
from detector.coco_format import coco_dict, write_coco
from detector.detections import Detections
from detector.hw2 import ImageRecord, image_entry
from detector.label_quality import find_label_suspects
from detector.matching import AnnotationSuspect
from studio.paths import user_data_dir

REVIEW_SUFFIX = ".review.jsonl"
DECISIONS = ("accept", "reject", "edit", "delete")
# detector.label_quality's score ranks a suspicion within the split, not a probability: a minimum score m shows
# about 4 x (1 - m) suggestions per image, whatever the error rate. On planted errors (benchmarks/README.md,
# label-error section) 0.95 gives 0.2 suggestions per image, 75-98% of them real errors (2% / 4% of the boxes
# wrong per kind) and 55-83% of the errors found; 0.9 finds more (85-94%) but only 42-78% of it is real.
DEFAULT_MIN_SCORE = 0.95
KIND_TEXT = {
    "swapped_class": "wrong digit?",
    "badly_located": "box off?",
    "spurious_box": "no digit here?",
    "missing_box": "unlabelled digit?",
    # kinds of the review before detector.label_quality: logs that hold them are still read and exported
    "missing_annotation": "unlabelled digit?",
    "wrong_label": "wrong label?",
    "loose_box": "box too loose?",
    "tight_box": "box too tight?",
}
FIX = {"swapped_class": "relabel", "wrong_label": "relabel", "badly_located": "refit", "loose_box": "refit",
       "tight_box": "refit", "spurious_box": "delete", "missing_box": "add", "missing_annotation": "add"}


class ReviewError(ValueError):
    """A decision that cannot be recorded as asked (bad box, bad class, unknown decision)."""


@dataclass(frozen=True)
class Suggestion:
    """One likely annotation error with the model's proposed fix; `id` is stable across restarts."""

    id: str
    image_id: int
    kind: str
    gt_index: int  # index into the record's boxes; -1 for a missing annotation
    box: tuple[float, float, float, float]  # suggested xyxy
    category_id: int
    confidence: float
    original_box: tuple[float, float, float, float] | None
    original_category_id: int | None

    def describe(self) -> str:
        digit = category_to_digit(self.category_id)
        fix, score = FIX[self.kind], f"(suspicion {self.confidence:.2f})"
        if fix == "add":
            return f"add digit {digit} {score}"
        if fix == "relabel":
            return f"digit {category_to_digit(self.original_category_id)} → {digit} {score}"
        if fix == "delete":
            return f"delete digit {digit}'s label: the model sees no digit there {score}"
        return f"{KIND_TEXT[self.kind]} refit digit {digit}'s box {score}"

    def proposal(self) -> tuple[tuple[float, float, float, float], int]:
        """The box and category the digit has after accepting: what the reviewer is shown to edit (for a
        delete, the label as it is)."""
        fix = FIX[self.kind]
        if fix in ("relabel", "delete") and self.original_box is not None:
            return self.original_box, self.category_id
        if fix == "refit" and self.original_category_id is not None:
            return self.box, self.original_category_id
        return self.box, self.category_id

    def is_proposal(self, box: Sequence[float], category_id: int, tolerance: float) -> bool:
        """Whether a reviewer's box and digit are the proposal itself (within `tolerance` pixels), not an edit."""
        proposed_box, proposed_category = self.proposal()
        return category_id == proposed_category and all(
            abs(float(a) - b) <= tolerance for a, b in zip(box, proposed_box, strict=True))

    def accept_decision(self) -> str:
        """What accepting records: 'delete' for a label the model says is no digit, else 'accept'."""
        return "delete" if FIX[self.kind] == "delete" else "accept"

    def changes(self) -> dict[str, Any]:
        """What accepting it changes: a new box, a new class, a new box and class (added digit), or the label gone."""
        fix = FIX[self.kind]
        if fix == "add":
            return {"box": list(self.box), "category_id": self.category_id}
        if fix == "relabel":
            return {"category_id": self.category_id}
        if fix == "delete":
            return {"delete": True}
        return {"box": list(self.box)}


def count_by_kind(suggestions: Iterable[Suggestion]) -> str:
    """'3 wrong digit?, 1 box off?': what each kind of suggestion found, in KIND_TEXT's order."""
    counts = Counter(s.kind for s in suggestions)
    return ", ".join(f"{counts[kind]} {text}" for kind, text in KIND_TEXT.items() if counts[kind])


def suggestion_id(s: AnnotationSuspect) -> str:
    if s.gt_index >= 0:  # matching makes at most one suggestion per ground-truth box and kind
        return f"{s.image_id}:{s.kind}:{s.gt_index}"
    return f"{s.image_id}:{s.kind}:" + ",".join(f"{v:.0f}" for v in s.box)


def make_suggestions(suspects: Iterable[AnnotationSuspect], records: Sequence[ImageRecord]) -> list[Suggestion]:
    by_id = {r.image_id: r for r in records}
    out, seen = [], set()
    for s in suspects:
        sid = suggestion_id(s)
        if sid in seen:
            continue
        seen.add(sid)
        r = by_id[s.image_id]
        has_gt = 0 <= s.gt_index < len(r.category_ids)
        out.append(Suggestion(
            id=sid, image_id=s.image_id, kind=s.kind, gt_index=s.gt_index, box=tuple(float(v) for v in s.box),
            category_id=int(s.category_id), confidence=float(s.confidence),
            original_box=tuple(float(v) for v in r.boxes[s.gt_index]) if has_gt else None,
            original_category_id=int(r.category_ids[s.gt_index]) if has_gt else None,
        ))
    return out


def find_suggestions(records: Sequence[ImageRecord], candidates: Mapping[int, Detections],
                     min_score: float = DEFAULT_MIN_SCORE) -> list[Suggestion]:
    """Likely label errors of a whole split (its scores are ranks within it), most suspicious first."""
    return make_suggestions(find_label_suspects(records, {r.image_id: candidates[r.image_id] for r in records},
                                                min_score), records)


@dataclass(frozen=True)
class Decision:
    suggestion_id: str
    image_id: int
    gt_index: int
    kind: str
    decision: str
    changes: dict[str, Any] = field(default_factory=dict)  # applied on export: 'box' (xyxy) / 'category_id'
    time: str = ""
    author: str = ""
    suggested: dict[str, Any] = field(default_factory=dict)  # what the model proposed (audit trail)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Decision:
        """A checked decision, or ReviewError saying what is wrong with the record."""
        if not isinstance(data, dict):
            raise ReviewError(f"expected a JSON object, got {type(data).__name__}")
        decision, kind = data.get("decision"), data.get("kind")
        if decision not in DECISIONS:
            raise ReviewError(f"decision {decision!r} is not one of {DECISIONS}")
        if kind not in KIND_TEXT:
            raise ReviewError(f"kind {kind!r} is not one of {tuple(KIND_TEXT)}")
        image_id, gt_index = data.get("image_id"), data.get("gt_index")
        if not _is_int(image_id) or not _is_int(gt_index) or gt_index < -1:
            raise ReviewError(f"image_id {image_id!r} / gt_index {gt_index!r}: expected integers, gt_index >= -1")
        suggestion_id = data.get("suggestion_id")
        if not isinstance(suggestion_id, str) or not suggestion_id:
            raise ReviewError(f"suggestion_id {suggestion_id!r}: expected a non-empty string")
        return cls(suggestion_id=suggestion_id, image_id=image_id, gt_index=gt_index, kind=kind, decision=decision,
                   changes=_checked_changes(decision, gt_index, data.get("changes") or {}),
                   time=str(data.get("time", "")), author=str(data.get("author", "")),
                   suggested=data["suggested"] if isinstance(data.get("suggested"), dict) else {})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_changes(decision: str, gt_index: int, changes: Any) -> dict[str, Any]:
    """The changes a decision applies on export, each one valid; ReviewError otherwise."""
    if not isinstance(changes, dict):
        raise ReviewError(f"changes {changes!r}: expected an object")
    if decision == "reject":
        if changes:
            raise ReviewError(f"a reject changes nothing, got {changes!r}")
        return {}
    if decision == "delete":
        if changes != {"delete": True} or gt_index < 0:
            raise ReviewError(f"a delete needs changes {{'delete': true}} and an existing box, got {changes!r} "
                              f"for gt_index {gt_index}")
        return {"delete": True}
    unknown = set(changes) - {"box", "category_id"}
    needed = {"box", "category_id"} if gt_index < 0 else set()  # an added digit needs both
    if unknown or not changes or needed - set(changes):
        raise ReviewError(f"an {decision} needs 'box' and/or 'category_id'"
                          f"{' (both, for an added digit)' if needed else ''}, got {changes!r}")
    out: dict[str, Any] = {}
    if "box" in changes:
        try:
            out["box"] = parse_box(changes["box"])
        except (ValueError, TypeError) as err:
            raise ReviewError(f"box {changes['box']!r}: expected four numbers x1, y1, x2, y2 ({err})") from None
    if "category_id" in changes:
        if not is_category_id(changes["category_id"]):
            raise ReviewError(f"category id {changes['category_id']!r} is not in 1..10 (1 is digit 0)")
        out["category_id"] = changes["category_id"]
    return out


def parse_box(text: str | Sequence[float], width: int | None = None, height: int | None = None) -> list[float]:
    """'x1, y1, x2, y2' (pixels) -> a valid xyxy box, or ReviewError saying what is wrong."""
    if isinstance(text, str):
        parts = [p for p in text.replace("[", " ").replace("]", " ").replace(",", " ").split() if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ReviewError(f"box {text!r}: expected four numbers x1, y1, x2, y2") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ReviewError(f"box {text!r}: expected four numbers x1, y1, x2, y2")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ReviewError(f"box {values}: x2 must be > x1 and y2 > y1")
    if width is not None and height is not None and (x1 < 0 or y1 < 0 or x2 > width or y2 > height):
        raise ReviewError(f"box {values} is outside the {width}x{height} image")
    return values


class ReviewStore:
    """The append-only decision log of one annotation file."""

    def __init__(self, path: Path, note: str = "") -> None:
        self.path = Path(path)
        self.note = note or f"Review decisions are saved to `{self.path}`."
        self.skipped_lines = 0  # lines of the last read that were torn or invalid
        self.skip_reasons: list[str] = []  # why, one line each ("line 7: box 'abc': ...")

    def skipped(self, records: Sequence[ImageRecord] | None = None) -> str:
        """'' when every record is usable, else one line for the UI: how many were skipped, and an example.
        With `records`, decisions that do not fit the data (unknown image or box, box outside) count too."""
        misfits = self.misfits(records) if records is not None else []  # re-reads the log: skip_reasons is fresh
        reasons = self.skip_reasons + misfits
        if not reasons:
            return ""
        return (f"⚠️ {len(reasons)} invalid review record(s) skipped in `{self.path.name}` "
                f"(e.g. {reasons[0]}); fix or delete those lines to use them.")

    @classmethod
    def beside(cls, annotation_file: Path) -> ReviewStore:
        """DATA/valid.json -> DATA/valid.review.jsonl, or the user data dir when DATA cannot be written."""
        annotation_file = Path(annotation_file)
        preferred = annotation_file.with_name(annotation_file.stem + REVIEW_SUFFIX)
        if _can_append(preferred):
            return cls(preferred)
        tag = hashlib.sha1(str(annotation_file.resolve()).encode()).hexdigest()[:10]
        fallback = user_data_dir() / "reviews" / f"{annotation_file.stem}-{tag}{REVIEW_SUFFIX}"
        if not _can_append(fallback):
            raise ReviewError(f"cannot write review decisions to {preferred} nor to {fallback}")
        return cls(fallback, note=f"`{annotation_file.parent}` is read-only, so review decisions are saved to "
                                   f"`{fallback}`.")

    # ------------------------------------------------------------------ writing
    def record(self, suggestion: Suggestion, decision: str, *, box: str | Sequence[float] | None = None,
               category_id: int | None = None, image_size: tuple[int, int] | None = None,
               author: str = "") -> Decision:
        """Validate and append one decision; it is on disk (fsync'd) when this returns."""
        if decision not in DECISIONS:
            raise ReviewError(f"decision must be one of {DECISIONS}, got {decision!r}")
        if decision == "accept":
            decision, changes = suggestion.accept_decision(), suggestion.changes()
        elif decision == "reject":
            changes = {}
        elif decision == "delete":
            if suggestion.gt_index < 0:
                raise ReviewError("'delete' removes an existing ground-truth box; this suggestion has none (reject it)")
            changes = {"delete": True}
        else:
            if box in (None, "") or category_id is None:
                raise ReviewError("an edit needs a box 'x1, y1, x2, y2' and a digit")
            category_id = int(category_id)
            if not is_category_id(category_id):
                raise ReviewError(f"category id {category_id} is not in 1..10 (1 is digit 0)")
            changes = {"box": parse_box(box, *(image_size or (None, None))), "category_id": category_id}
        entry = Decision(suggestion.id, suggestion.image_id, suggestion.gt_index, suggestion.kind, decision, changes,
                         time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), author=author,
                         suggested={"box": [round(v, 2) for v in suggestion.box], "category_id": suggestion.category_id,
                                    "confidence": round(suggestion.confidence, 4)})
        self._append(entry.to_json())
        return entry

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0, os.SEEK_END)
                if f.tell() > 0:  # after a crash mid-line, start a fresh line rather than glue onto it
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(line.encode("utf-8") + b"\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ reading
    def history(self) -> list[Decision]:
        """Every decision in file order; unreadable lines (a torn write) are skipped and counted."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            try:
                data = f.read()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        out, reasons = [], []
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                out.append(Decision.from_dict(json.loads(raw)))
            except ReviewError as err:
                reasons.append(f"line {number}: {err}")
            except ValueError:  # not JSON (a torn write) or not UTF-8
                reasons.append(f"line {number}: not a JSON record")
        self.skipped_lines, self.skip_reasons = len(reasons), reasons
        return out

    def misfits(self, records: Sequence[ImageRecord]) -> list[str]:
        """Why each latest decision that cannot apply to these records is left out of the export."""
        sizes = {r.image_id: (r.width, r.height) for r in records}
        counts = {r.image_id: len(r.boxes) for r in records}
        return [f"{d.suggestion_id}: {why}" for d in self.decisions().values()
                if d.changes and (why := _misfit(d, counts.get(d.image_id, 0), sizes.get(d.image_id))) is not None]

    def decisions(self) -> dict[str, Decision]:
        """The latest decision per suggestion (re-read from disk: other tabs' decisions included)."""
        latest: dict[str, Decision] = {}
        for d in self.history():
            latest.pop(d.suggestion_id, None)  # keep file order of the latest decisions for export
            latest[d.suggestion_id] = d
        return latest

    # ------------------------------------------------------------------ export
    def corrected_coco(self, records: Sequence[ImageRecord]) -> dict[str, Any]:
        """The ground truth with every latest accepted / edited / delete decision applied."""
        boxes = {r.image_id: [list(map(float, b)) for b in r.boxes] for r in records}
        labels = {r.image_id: [int(c) for c in r.category_ids] for r in records}
        deleted: dict[int, set[int]] = {r.image_id: set() for r in records}
        sizes = {r.image_id: (r.width, r.height) for r in records}
        originals = {r.image_id: len(r.boxes) for r in records}  # gt_index refers to the annotation file's boxes
        for d in self.decisions().values():
            if not d.changes or _misfit(d, originals.get(d.image_id, 0), sizes.get(d.image_id)) is not None:
                continue  # see misfits()
            if d.changes.get("delete"):
                deleted[d.image_id].add(d.gt_index)
            elif d.gt_index < 0:
                boxes[d.image_id].append(list(d.changes["box"]))
                labels[d.image_id].append(int(d.changes["category_id"]))
            else:
                if "box" in d.changes:
                    boxes[d.image_id][d.gt_index] = list(d.changes["box"])
                if "category_id" in d.changes:
                    labels[d.image_id][d.gt_index] = int(d.changes["category_id"])
        annotations = [(r.image_id, xyxy_to_xywh(np.asarray([box], dtype=np.float32))[0].tolist(), cid)
                       for r in records
                       for g, (box, cid) in enumerate(zip(boxes[r.image_id], labels[r.image_id], strict=False))
                       if g not in deleted[r.image_id]]
        return coco_dict([image_entry(r) for r in records], annotations)

    def export(self, records: Sequence[ImageRecord], out_path: Path | None = None) -> Path:
        """Write the corrected COCO json (default: beside the review file, never over the original)."""
        out_path = Path(out_path) if out_path else self.path.with_name(
            self.path.name.removesuffix(REVIEW_SUFFIX) + ".corrected.json")
        return write_coco(out_path, self.corrected_coco(records))


def _misfit(d: Decision, n_boxes: int, size: tuple[int, int] | None) -> str | None:
    """Why a (valid) decision cannot apply to this data, or None when it can."""
    if size is None:
        return f"image {d.image_id} is not in the annotation file"
    if d.gt_index >= n_boxes:
        return f"image {d.image_id} has no box {d.gt_index} ({n_boxes} boxes)"
    if "box" in d.changes:
        try:
            parse_box(d.changes["box"], *size)
        except ReviewError as err:
            return str(err)
    return None


def _can_append(path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
        return True
    except OSError:
        return False
