"""Reading uploads within memory bounds: per image, per Detect request, and per process.

A 40-Mpx upload is 120 MB as RGB and ~480 MB as the float tensor the model would get; 48 of them in one
request took the app to 9.9 GB. So every image is downscaled to MAX_SIDE right after decoding (a JPEG is
decoded at 1/2..1/8 scale, never in full; other formats are decoded in full one at a time per process, under
`_FULL_DECODE`), a request reads at most MAX_IMAGES files and MAX_REQUEST_PIXELS source pixels (the rest is
refused with a message), and identical files are read once. The model then runs on the bounded image; boxes
are scaled back to the file's own pixels for the table and the JSON (`Upload.to_original`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from detector.detections import Detections
from detector.images import MAX_IMAGE_PIXELS, ImageLoadError, load_rgb

MAX_SIDE = 2048  # the model sees 128..512 px: more pixels than this only cost memory
MAX_IMAGES = 48
MAX_REQUEST_PIXELS = 160_000_000  # source pixels read per request (four 40-Mpx files, or 13 phone photos)
LIMITS_NOTE = (f"Up to {MAX_IMAGES} images and {MAX_REQUEST_PIXELS // 1_000_000} Mpx per Detect; images over "
               f"{MAX_SIDE} px a side are downscaled (boxes stay in the file's pixels), files over "
               f"{MAX_IMAGE_PIXELS // 1_000_000} Mpx are refused.")
_FULL_DECODE = threading.BoundedSemaphore(1)  # at most one full-size decode of a big image in the process


@dataclass
class Upload:
    name: str
    image: Image.Image  # RGB, at most MAX_SIDE px a side
    original_size: tuple[int, int]  # (width, height) of the file as displayed (EXIF orientation applied)

    @property
    def downscaled(self) -> bool:
        return self.image.size != self.original_size

    def to_original(self, det: Detections) -> Detections:
        """Boxes found on `image` in the file's own pixels."""
        if not self.downscaled:
            return det
        (w, h), (ow, oh) = self.image.size, self.original_size
        factor = torch.tensor([ow / w, oh / h, ow / w, oh / h], dtype=det.boxes.dtype)
        return Detections(det.boxes * factor, det.scores, det.labels)

    def note(self) -> str:
        (w, h), (ow, oh) = self.image.size, self.original_size
        return f"{self.name}: {ow}x{oh} px, detected on a {w}x{h} copy; boxes are in the file's pixels"


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def load_bounded(path: str | Path, name: str | None = None, max_side: int = MAX_SIDE) -> Upload:
    """Read one upload as RGB of at most `max_side` px a side; ImageLoadError (naming the file) when unreadable."""
    name = name or Path(path).name
    try:
        lazy = Image.open(path)  # reads the header only
    except Exception:  # not an image, missing, ...: load_rgb says which, in the project's words
        lazy = None
    if lazy is None or max(lazy.size) <= max_side or lazy.width * lazy.height > MAX_IMAGE_PIXELS:
        image = load_rgb(lazy if lazy is not None else path, name=name)  # small, or refused before decoding
        return Upload(name, image, image.size)
    raw = lazy.size
    with _FULL_DECODE:
        if lazy.format == "JPEG":
            lazy.draft("RGB", _fit(raw, max_side))  # the decoder scales by 1/2..1/8 itself
        try:
            lazy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # decode, then keep only the small copy
        except (OSError, ValueError, SyntaxError):
            pass  # truncated, or a mode Pillow cannot resample: load_rgb reports or converts it
        stored = lazy.size
        image = load_rgb(lazy, name=name)  # EXIF turn and RGB conversion, now on the small copy
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    turned = image.width != image.height and (image.width > image.height) != (stored[0] > stored[1])
    return Upload(name, image, (raw[1], raw[0]) if turned else raw)


def _source_pixels(path: str | Path) -> int:
    try:
        with Image.open(path) as lazy:
            return lazy.width * lazy.height
    except Exception:
        return 0  # unreadable: reading it fails fast and says why


def _digest(path: str | Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


@dataclass
class UploadPlan:
    """Which files one request reads, and what it says about the others."""

    paths: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # refused: the user must act (shown as warnings)
    notes: list[str] = field(default_factory=list)  # informational (duplicates)


def plan_uploads(paths: Sequence[str | Path], max_images: int = MAX_IMAGES,
                 max_pixels: int = MAX_REQUEST_PIXELS) -> UploadPlan:
    """Drop repeated files (same bytes), then keep files while the image count and source pixels allow."""
    plan = UploadPlan()
    seen: dict[str, str] = {}
    unique = []
    for p in paths:
        digest = _digest(p)
        if digest is not None and digest in seen:
            plan.notes.append(f"{Path(p).name} is the same file as {seen[digest]}: shown once")
            continue
        if digest is not None:
            seen[digest] = Path(p).name
        unique.append(str(p))
    total = 0
    for i, p in enumerate(unique):
        pixels = _source_pixels(p)
        if i >= max_images or (plan.paths and total + pixels > max_pixels):
            rest = len(unique) - i
            why = (f"{max_images} images" if i >= max_images
                   else f"{max_pixels / 1e6:g} Mpx ({total / 1e6:.1f} Mpx read so far)")
            plan.problems.append(f"{rest} file(s) not processed, from {Path(p).name} on: one Detect reads at most "
                                 f"{why}; detect them in another request")
            break
        total += pixels
        plan.paths.append(p)
    return plan


def _libc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS after big decodes. glibc keeps freed image buffers in the process
    (they are reused, not leaked), so without this a server that once read big images stays that big."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def read_one(path: str | Path) -> Upload | str:
    """The bounded image, or the one-line reason it cannot be read (a decoder bug must not stop the batch)."""
    name = Path(path).name
    try:
        return load_bounded(path, name)
    except ImageLoadError as err:
        return str(err)
    except Exception as err:  # a decoder bug on a hostile file must not take the app down
        return f"{name}: could not be read ({type(err).__name__}: {err})"
