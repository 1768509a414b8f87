"""The studio's server-side state: the model (loaded once), the validation set, and candidate caches.

Every view works from raw candidates (score floor 0.01, no NMS): an image goes through the model once,
and every threshold change afterwards is `detector.refilter` on the cached candidates. Uploaded images
are cached in memory by content hash (LRU, bounded by entries and bytes); validation-set candidates are
computed once, lazily, and kept in memory and on disk (studio.cache). One Studio serves all browser
sessions, so its caches are shared and guarded by locks.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from detector.checkpoint import CheckpointMeta, read_meta, update_meta
from detector.detections import Detections
from detector.hw2 import AnnotationError, ImageRecord, Split, load_annotation_file
from detector.predictor import Predictor
from detector.thresholds import Thresholds
from studio import cache
from studio.lru import BoundedLRU, detections_nbytes
from studio.paths import DEFAULT_CHECKPOINT, DEFAULT_DATA, SAMPLES_DIR, annotation_paths

Progress = Callable[[int, int], None]
UPLOAD_CACHE_SIZE = 64
UPLOAD_CACHE_BYTES = 16 << 20  # candidates are ~10 KB an image: the entry count binds first
TRAIN_HINT = ("Train one with `python -m training train --data DATA --preset fast` (it writes "
              "runs/train/<run>/weights/best.safetensors)")


class StudioError(RuntimeError):
    """Something the user must fix (no model, no data); the message says what and how."""


@dataclass
class ValidationState:
    candidates: dict[int, Detections]
    unreadable: dict[int, str] = field(default_factory=dict)  # image id -> error message
    source: str = "model"  # 'model' or the cache file it came from
    seconds: float = 0.0


class Studio:
    """Model + data + caches for one app process."""

    def __init__(self, checkpoint: Path | str | None = None, data: Path | str | None = None,
                 device: str = "auto", samples_dir: Path | None = None, disk_cache: bool = True,
                 batch_size: int = 8) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        self.data_dir = Path(data) if data else DEFAULT_DATA
        self.annotation_file, self.image_dir = annotation_paths(self.data_dir)
        self.samples_dir = samples_dir if samples_dir is not None else SAMPLES_DIR
        self.device = device
        self.disk_cache = disk_cache
        self.batch_size = batch_size
        self.predictor: Predictor | None = None
        self.checkpoint_error: str | None = None
        self.split: Split | None = None
        self.data_error: str | None = None
        self.model_runs = 0  # images sent through the model: lets tests prove that sliders never run it
        self._model_lock = threading.Lock()
        self._valid_lock = threading.Lock()
        self.uploads: BoundedLRU[str, Detections] = BoundedLRU(UPLOAD_CACHE_SIZE, UPLOAD_CACHE_BYTES,
                                                                 detections_nbytes)
        self._valid: ValidationState | None = None
        self._load_model()
        self._load_data()

    # ------------------------------------------------------------------ loading
    def _load_model(self) -> None:
        path = self.checkpoint
        if not path.exists():
            default = path == DEFAULT_CHECKPOINT
            self.checkpoint_error = (
                f"No model: checkpoint `{path}` not found"
                + (" (the shipped default model is not installed)" if default else "")
                + f". {TRAIN_HINT} and copy it there, or start the app with `python app.py --checkpoint PATH`."
            )
            return
        try:
            self.predictor = Predictor.from_checkpoint(path, self.device)
        except Exception as err:  # any failure to load must leave a running app with a clear message
            self.checkpoint_error = (f"Could not load the model from `{path}`: {err}. "
                                     "Pick another with `python app.py --checkpoint PATH`.")

    def _load_data(self) -> None:
        ann, images = self.annotation_file, self.image_dir
        if not ann.exists():
            self.data_error = (f"No validation set: `{ann}` not found. Start the app with `--data DATA` for an "
                               f"HW2 folder holding DATA/valid.json and DATA/valid/.")
            return
        if not images.is_dir():
            self.data_error = f"No validation images: folder `{images}` not found (HW2 layout: DATA/valid/)."
            return
        try:
            split = load_annotation_file(ann, images)
        except AnnotationError as err:
            self.data_error = f"The validation annotations could not be read: {err}"
            return
        if not split.records:
            self.data_error = f"The validation set is empty: {split.report.summary()}"
            return
        self.split = split

    # ------------------------------------------------------------------ status
    @property
    def meta(self) -> CheckpointMeta | None:
        return self.predictor.meta if self.predictor else None

    def default_thresholds(self) -> Thresholds:
        return self.meta.thresholds if self.meta else Thresholds()

    @property
    def records(self) -> list[ImageRecord]:
        return self.split.records if self.split else []

    def record(self, image_id: int) -> ImageRecord:
        if not self.split:
            raise StudioError(self.data_error or "no validation set loaded")
        for r in self.split.records:
            if r.image_id == image_id:
                return r
        raise StudioError(f"image id {image_id} is not in the validation set "
                          f"({len(self.split.records)} images, ids {self.split.records[0].image_id}...)")

    def samples(self) -> list[Path]:
        from detector.hw2 import IMAGE_SUFFIXES

        if not self.samples_dir.is_dir():
            return []
        return sorted(p for p in self.samples_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def status_markdown(self) -> str:
        lines = []
        if self.predictor:
            m = self.predictor.meta
            lines.append(f"**Model** `{self.checkpoint.name}`: preset `{m.config.preset}`, "
                         f"{m.config.backbone}, on {self.predictor.device}"
                         + (f", trained {m.created[:10]}" if m.created else ""))
        else:
            lines.append(f"⚠️ **{self.checkpoint_error}**")
        if self.split:
            lines.append(f"**Validation set** {self.split.report.summary()}")
        else:
            lines.append(f"⚠️ {self.data_error}")
        return "  \n".join(lines)

    def require_model(self) -> Predictor:
        if self.predictor is None:
            raise StudioError(self.checkpoint_error or "no model loaded")
        return self.predictor

    def require_data(self) -> Split:
        if self.split is None:
            raise StudioError(self.data_error or "no validation set loaded")
        return self.split

    # ------------------------------------------------------------------ candidates
    def candidates_for(self, image: Image.Image, name: str = "image") -> Detections:
        """Raw candidates for one image: from the memory cache when these pixels were seen before. An image the
        model cannot take (too thin for its resize) raises detector.images.ImageLoadError naming `name`."""
        key = hashlib.sha1(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
        if (cached := self.uploads.get(key)) is not None:
            return cached
        predictor = self.require_model()
        predictor.check_fits(image, name)
        with self._model_lock:
            det = predictor.candidates([image], batch_size=1)[0]
            self.model_runs += 1
        return self.uploads.put(key, det)

    @property
    def validation_ready(self) -> bool:
        return self._valid is not None

    def validation(self, progress: Progress | None = None) -> ValidationState:
        """Candidates for every validation image: computed once (with progress), then memory and disk."""
        if self._valid is not None:
            return self._valid
        with self._valid_lock:  # a second user waits for the first one's run instead of starting another
            if self._valid is None:
                self._valid = self._compute_validation(progress)
        return self._valid

    def _cache_file(self, annotation_file: Path, split: Split) -> Path | None:
        if not self.disk_cache or self.predictor is None:
            return None
        try:
            p = self.predictor
            return cache.cache_path(self.checkpoint, cache.checkpoint_fingerprint(self.checkpoint),
                                    cache.data_fingerprint(annotation_file, split.records),
                                    f"floor={p.score_floor},max={p.max_candidates},{p.zoom.describe() if p.zoom else 'zoom=off'}")
        except (OSError, ValueError):
            return None

    def _compute_validation(self, progress: Progress | None) -> ValidationState:
        return self.split_candidates(self.annotation_file, self.require_data(), progress)

    def split_candidates(self, annotation_file: Path, split: Split, progress: Progress | None = None) -> ValidationState:
        """Candidates for every image of a split (any split: the review's too), from the disk cache when it holds
        them all, else from the model, sharing it with other users batch by batch."""
        predictor = self.require_model()
        start = time.perf_counter()
        cache_file = self._cache_file(annotation_file, split)
        cached = cache.load_candidates(cache_file) if cache_file else None
        if cached is not None and all(r.image_id in cached for r in split.records):
            return ValidationState(cached, source=str(cache_file), seconds=time.perf_counter() - start)
        items = [(r.image_id, r.path) for r in split.records]
        candidates: dict[int, Detections] = {}
        unreadable: dict[int, str] = {}
        results = predictor.candidates_for_paths(items, batch_size=self.batch_size, progress=False)
        for done in range(1, len(items) + 1):
            with self._model_lock:  # per batch, not per run: uploads from other users get in between
                image_id, result = next(results)
                if not isinstance(result, Exception):
                    self.model_runs += 1
            if isinstance(result, Exception):
                unreadable[image_id] = str(result)
                candidates[image_id] = Detections.empty()
            else:
                candidates[image_id] = result
            if progress:
                progress(done, len(items))
        if cache_file and not unreadable:
            try:
                cache.save_candidates(cache_file, candidates)
            except OSError:
                pass  # the disk cache is an optimisation; memory still holds the result
        return ValidationState(candidates, unreadable, seconds=time.perf_counter() - start)

    # ------------------------------------------------------------------ checkpoint metadata
    def save_thresholds(self, thresholds: Thresholds, metrics: dict | None = None) -> CheckpointMeta:
        """Write thresholds (and the sweep's figures) into the checkpoint; the loaded model picks them up."""
        predictor = self.require_model()
        changes: dict = {"thresholds": thresholds}
        if metrics:
            changes["metrics"] = metrics
        try:
            update_meta(self.checkpoint, **changes)
        except OSError as err:
            raise StudioError(f"could not write `{self.checkpoint}`: {err}") from err
        predictor.meta = read_meta(self.checkpoint)
        return predictor.meta
