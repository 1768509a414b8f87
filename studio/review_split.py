"""One annotated split under review (DATA/<name>.json and DATA/<name>/): its records, its decision log, the
model's candidates for it, and whether the model trained on it.

The studio serves one validation split; review reads any split of the data folder, train included. The studio's
own split reuses its candidates; another split's are computed once (with progress) and cached on disk with
studio.cache, like the validation set's. Suggestions are only a fair audit of images the model did not learn
from, so each split also says what the checkpoint's training metadata tells about it (detector.provenance).
"""
from __future__ import annotations

import threading
from pathlib import Path

from detector.detections import Detections
from detector.hw2 import AnnotationError, ImageRecord, Split, load_annotation_file
from detector.provenance import Overlap, TrainingData
from studio.paths import VALID_SPLIT, annotation_paths
from studio.review import ReviewError, ReviewStore
from studio.session import Progress, Studio, StudioError


def available_splits(data_dir: Path) -> list[str]:
    """Every split of an HW2 folder (DATA/<name>.json beside a folder DATA/<name>/), the validation split first."""
    if not data_dir.is_dir():
        return []
    names = sorted(p.stem for p in data_dir.glob("*.json") if (data_dir / p.stem).is_dir())
    return sorted(names, key=lambda n: n != VALID_SPLIT)


def load_review_split(data_dir: Path, name: str) -> Split:
    """The split's records, or StudioError saying what is missing and how to fix it."""
    annotation_file, image_dir = annotation_paths(data_dir, name)
    if not annotation_file.is_file():
        raise StudioError(f"No annotations: `{annotation_file}` not found. Start the app with `--data DATA` for an "
                          f"HW2 folder holding DATA/{name}.json and DATA/{name}/.")
    if not image_dir.is_dir():
        raise StudioError(f"No images: folder `{image_dir}` not found (HW2 layout: DATA/{name}/).")
    try:
        split = load_annotation_file(annotation_file, image_dir)
    except AnnotationError as err:
        raise StudioError(f"`{annotation_file}` could not be read: {err}") from err
    if not split.records:
        raise StudioError(f"The {name} split is empty: {split.report.summary()}")
    return split


class ReviewSplit:
    """A split's records, decision store and candidates; errors are kept and raised when the split is used."""

    def __init__(self, studio: Studio, name: str) -> None:
        self.studio, self.name = studio, name
        self.annotation_file, self.image_dir = annotation_paths(studio.data_dir, name)
        self.is_studio_split = self.annotation_file == studio.annotation_file
        self.split: Split | None = None
        self.error: str | None = None
        self.store: ReviewStore | None = None
        self.unreadable: dict[int, str] = {}
        self._candidates: dict[int, Detections] | None = None
        self._overlaps: list[Overlap] | None = None
        self._lock = threading.Lock()
        try:
            self.split = studio.require_data() if self.is_studio_split else load_review_split(studio.data_dir, name)
            self.store = ReviewStore.beside(self.annotation_file)
        except (StudioError, ReviewError) as err:
            self.error = str(err)

    @property
    def records(self) -> list[ImageRecord]:
        return self.split.records if self.split else []

    def require_store(self) -> ReviewStore:
        if self.store is None:
            raise StudioError(self.error or f"no {self.name} split loaded")
        return self.store

    def record(self, image_id: int) -> ImageRecord:
        for r in self.records:
            if r.image_id == image_id:
                return r
        raise StudioError(self.error or f"image id {image_id} is not in the {self.name} split")

    # ------------------------------------------------------------------ candidates
    def candidates(self, progress: Progress | None = None) -> dict[int, Detections]:
        """Raw candidates for every image of the split: computed once (a second caller waits), then memory and disk."""
        self.require_store()
        if self.is_studio_split:
            state = self.studio.validation(progress)
            self.unreadable = state.unreadable
            return state.candidates
        with self._lock:
            if self._candidates is None:
                self._candidates = self._compute(progress)
        return self._candidates

    def _compute(self, progress: Progress | None) -> dict[int, Detections]:
        if self.split is None:
            raise StudioError(self.error or f"no {self.name} split loaded")
        state = self.studio.split_candidates(self.annotation_file, self.split, progress)
        self.unreadable = dict(state.unreadable)
        return state.candidates

    # ------------------------------------------------------------------ fairness
    def overlaps(self) -> list[Overlap]:
        """The checkpoint's splits that share images with this one (computed once: it hashes every image)."""
        if self._overlaps is None:
            meta = self.studio.meta
            training = TrainingData.from_meta(meta.training) if meta else TrainingData(None, {}, {})
            self._overlaps = training.overlaps(self.studio.data_dir, self.name, [r.path for r in self.records])
        return self._overlaps

    def fairness_note(self) -> str:
        """Whether the model trained on these images, from its checkpoint: a warning when it did."""
        meta = self.studio.meta
        if meta is None or self.split is None:
            return ""
        training = TrainingData.from_meta(meta.training)
        lines = []
        for o in self.overlaps():
            if o.used_as == "train" and o.basis == "images":
                lines.append(f"⚠️ **The model trained on {o.shared} of these {o.total} images** (same image files as "
                             "its training split): it learned their labels, errors included, so it rarely flags them. "
                             "Review a split it did not train on for a fair audit.")
            elif o.used_as == "train":
                lines.append(f"⚠️ **The model was trained on this split**: its checkpoint names `{training.folder}` "
                             "as its training data. It learned these labels, errors included, so it rarely flags "
                             "them; review a split it did not train on for a fair audit.")
            else:
                lines.append(f"ℹ️ The checkpoint and its thresholds were chosen on {o.shared} of these {o.total} "
                             f"images (its `{o.used_as}` split); it did not train on them.")
        if any(o.used_as == "train" for o in self.overlaps()):
            return "  \n".join(lines)
        if training.fingerprints.get("train") is not None:
            lines.insert(0, f"✅ The model did not train on these images: none is among the "
                            f"{len(training.fingerprints['train'])} training images its checkpoint records.")
        elif training.folder is not None:
            trained = training.counts.get("train")
            lines.insert(0, f"ℹ️ The model was trained on `{training.folder}`"
                            + (f" ({trained} images)" if trained else "")
                            + ", not on this folder (its checkpoint records no image digests, so only the folder "
                              "was compared).")
        else:
            lines.insert(0, "ℹ️ The checkpoint does not record its training data: make sure the model did not "
                            "train on these images, or its suggestions miss the label errors it learned.")
        return "  \n".join(lines)
