"""Validation-set candidates on disk, so a restart (or a second app process) never re-runs the model.

A cache file is keyed by what decides its content: the checkpoint's weights and architecture (not its
metadata, so saving new thresholds from the app keeps the cache valid), the predictor's candidate settings,
and the data (annotation file bytes plus each image's name, size and mtime). It lives next to the
checkpoint in `.studio-cache/`, or in the user cache dir when that folder is read-only. Only the newest
CACHE_FILES_KEPT files stay there: every retrained checkpoint or edited data set would otherwise add one forever.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from detector.detections import Detections
from detector.fileio import atomic_write
from detector.hw2 import ImageRecord
from studio.paths import can_write_in, user_cache_dir

CACHE_FORMAT = "studio-candidates/1"
CACHE_FILES_KEPT = 8
_CHUNK = 1 << 22


def checkpoint_fingerprint(path: Path) -> str:
    """sha256 over the model config and the raw tensor bytes of a safetensors checkpoint."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        digest.update(header.get("__metadata__", {}).get("config", "").encode())
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(annotation_file: Path, records: Sequence[ImageRecord]) -> str:
    digest = hashlib.sha256(annotation_file.read_bytes())
    for r in records:
        try:
            stat = r.path.stat()
            digest.update(f"{r.image_id}:{r.file_name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{r.image_id}:{r.file_name}:missing\n".encode())
    return digest.hexdigest()


def cache_dir_for(checkpoint: Path) -> Path:
    preferred = checkpoint.resolve().parent / ".studio-cache"
    return preferred if can_write_in(preferred) else user_cache_dir() / "candidates"


def cache_path(checkpoint: Path, checkpoint_fp: str, data_fp: str, settings: str) -> Path:
    key = hashlib.sha256(f"{checkpoint_fp}|{data_fp}|{settings}".encode()).hexdigest()[:24]
    return cache_dir_for(checkpoint) / f"{checkpoint.stem}.{key}.safetensors"


def save_candidates(path: Path, candidates: Mapping[int, Detections]) -> Path:
    """All images in one file: concatenated boxes/scores/labels plus each image's id and count."""
    ids = sorted(candidates)
    parts = [candidates[i] for i in ids]
    tensors = {
        "image_ids": torch.tensor(ids, dtype=torch.int64),
        "counts": torch.tensor([len(d) for d in parts], dtype=torch.int64),
        "boxes": torch.cat([d.boxes.float() for d in parts]) if parts else torch.zeros((0, 4)),
        "scores": torch.cat([d.scores.float() for d in parts]) if parts else torch.zeros(0),
        "labels": torch.cat([d.labels.long() for d in parts]) if parts else torch.zeros(0, dtype=torch.int64),
    }
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                                              metadata={"format": CACHE_FORMAT}))
    prune(path.parent)
    return path


def prune(folder: Path, keep: int = CACHE_FILES_KEPT) -> None:
    """Delete all but the `keep` most recently used cache files in `folder` (another process may prune too)."""
    def used(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:
            return 0

    for old in sorted(folder.glob("*.safetensors"), key=used, reverse=True)[keep:]:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass


def load_candidates(path: Path) -> dict[int, Detections] | None:
    """The cached candidates, or None when absent or unreadable (a bad cache is recomputed, never fatal)."""
    if not path.is_file():
        return None
    try:
        t = load_file(str(path))
        _touch(path)
        counts = t["counts"].tolist()
        boxes, scores, labels = (torch.split(t[k], counts) for k in ("boxes", "scores", "labels"))
        ids = t["image_ids"].tolist()
        return {int(i): Detections(b, s, lab) for i, b, s, lab in zip(ids, boxes, scores, labels, strict=False)}
    except (SafetensorError, OSError, KeyError, RuntimeError, ValueError):
        return None


def _touch(path: Path) -> None:
    """Mark a cache file as used, so pruning keeps it (a read-only cache folder just stays as it is)."""
    try:
        path.touch()
    except OSError:
        pass
