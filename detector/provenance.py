"""What a checkpoint was trained on, as image content digests, so a review can tell whether the model has seen
the images it judges.

A model that trained on an image learned its labels, errors included: where it agrees with a wrong label, the
review finds nothing, so suggestions there are not a fair audit. Training records, per split, the sorted 32-bit
prefixes of each image file's SHA-1 (4 bytes an image: 6,000 images take 32 KB of header, base64), enough to
count shared images (a false match is about n / 2**32 per image) without listing file names, which every split
shares (1.png, 2.png, ...). The same bytes give the same digest wherever the folder was copied; a re-encoded
image is a new image.

Checkpoints written before the digests existed are judged by their data folder: the reviewed split is the
training split when the folder the checkpoint names is this folder.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DIGEST_BYTES = 4
FINGERPRINT_KEY = "fingerprints"  # in CheckpointMeta.training: {split name: fingerprint(...)}
FINGERPRINT_FIELD = "sha1_32"


class HasPath(Protocol):
    @property
    def path(self) -> Path: ...


def file_digest(path: Path) -> bytes:
    return hashlib.sha1(Path(path).read_bytes()).digest()[:DIGEST_BYTES]  # images are small: one read


def _encode(digests: Iterable[bytes]) -> dict[str, Any]:
    """{'images': count, 'sha1_32': base64 of the sorted distinct digests}."""
    distinct = sorted(set(digests))
    return {"images": len(distinct), FINGERPRINT_FIELD: base64.b64encode(b"".join(distinct)).decode("ascii")}


def fingerprint(paths: Iterable[Path]) -> dict[str, Any]:
    """The fingerprint of these image files (see _encode)."""
    return _encode(file_digest(p) for p in paths)


def split_fingerprints(splits: Mapping[str, Iterable[HasPath]]) -> dict[str, dict[str, Any]]:
    """For training's metadata: {'train': fingerprint, 'valid': fingerprint} from each split's records."""
    return {name: fingerprint(r.path for r in records) for name, records in splits.items()}


def merge_fingerprints(recorded: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """One {split: fingerprint} for a model made of several (a weight average): each split name's images are the
    union of every part's; malformed or absent entries are skipped."""
    merged: dict[str, set[bytes]] = {}
    for entry in recorded:
        if isinstance(entry, dict):
            for name, value in entry.items():
                if (digests := read_fingerprint(value)) is not None:
                    merged.setdefault(str(name), set()).update(digests)
    return {name: _encode(d) for name, d in merged.items()}


def read_fingerprint(value: Any) -> frozenset[bytes] | None:
    """The digests of one recorded fingerprint, or None when it is absent or malformed (metadata is untrusted)."""
    if not isinstance(value, dict) or not isinstance(value.get(FINGERPRINT_FIELD), str):
        return None
    try:
        raw = base64.b64decode(value[FINGERPRINT_FIELD], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % DIGEST_BYTES:
        return None
    return frozenset(raw[i:i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))


@dataclass(frozen=True)
class Overlap:
    """`shared` of the reviewed split's `total` images were in the checkpoint's split `used_as`."""

    used_as: str  # 'train' (learned from) or another split name (checkpoint and thresholds chosen on it)
    shared: int
    total: int
    basis: str  # 'images' (content digests) or 'folder' (the checkpoint names this data folder)


@dataclass(frozen=True)
class TrainingData:
    """What a checkpoint's `training` metadata says about its data."""

    folder: Path | None
    counts: dict[str, int]
    fingerprints: dict[str, frozenset[bytes]]

    @classmethod
    def from_meta(cls, training: Mapping[str, Any]) -> TrainingData:
        folder = training.get("data")
        counts = training.get("counts")
        recorded = training.get(FINGERPRINT_KEY)
        fingerprints = {}
        if isinstance(recorded, dict):
            fingerprints = {str(k): d for k, v in recorded.items() if (d := read_fingerprint(v)) is not None}
        return cls(folder=Path(folder) if isinstance(folder, str) and folder else None,
                   counts={str(k): v for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict)
                   else {},
                   fingerprints=fingerprints)

    @property
    def known(self) -> bool:
        return self.folder is not None or bool(self.fingerprints)

    def overlaps(self, data_dir: Path, split: str, image_paths: Iterable[Path]) -> list[Overlap]:
        """Each of the checkpoint's splits that shares images with the reviewed split `split` of `data_dir`:
        by content when the checkpoint has digests, else by its data folder."""
        if self.fingerprints:
            digests = [file_digest(p) for p in image_paths]
            found = [Overlap(name, sum(d in known for d in digests), len(digests), "images")
                     for name, known in self.fingerprints.items()]
            return [o for o in found if o.shared]
        if self.folder is not None and _same_folder(self.folder, data_dir) and split in self.counts:
            total = sum(1 for _ in image_paths)
            return [Overlap(split, total, total, "folder")]
        return []


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
