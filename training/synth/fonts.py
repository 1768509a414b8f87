"""Typefaces the generator can draw digits in, and per-process caches of their glyph masks.

Real house numbers come in every typeface, so the generator draws from a vendored library of a few hundred
open-licence families (training/synth/typefaces/, built by vendor_typefaces.py from typefaces.txt: sans,
condensed, serif, slab, rounded, display, stencil, script, handwriting and mono faces) and from OpenCV's
single-stroke Hershey faces (which look like painted or stencilled numbers). Nothing is looked up on the
machine, so the same seed draws the same data everywhere. A face is only used if it has every digit and
distractor letter and draws ten distinct, non-empty, equal-height digits (which drops old-style figures
without a hand-kept list).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

GLYPH_PX = 96  # ink height of a cached digit; placed glyphs are resized from this
DIGITS = "0123456789"
# letters that cannot pass for a digit: unlabelled distractors (suffixes like "12A", street names)
DISTRACTOR_LETTERS = "ACEFHJKMNPRUVWXY"
TYPEFACE_DIR = Path(__file__).resolve().parent / "typefaces"
MANIFEST = TYPEFACE_DIR / "manifest.json"
HERSHEY_FACES = {
    "SIMPLEX": cv2.FONT_HERSHEY_SIMPLEX, "PLAIN": cv2.FONT_HERSHEY_PLAIN, "DUPLEX": cv2.FONT_HERSHEY_DUPLEX,
    "COMPLEX": cv2.FONT_HERSHEY_COMPLEX, "TRIPLEX": cv2.FONT_HERSHEY_TRIPLEX,
    "COMPLEX_SMALL": cv2.FONT_HERSHEY_COMPLEX_SMALL, "SCRIPT_SIMPLEX": cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    "SCRIPT_COMPLEX": cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
}
WEIGHT_LEVELS = (-1, 0, 1, 2, 3)  # stroke thinning/thickening steps applied to the cached mask
_WEIGHT_STEP = 0.028  # one weight level = this fraction of the glyph height added to each stroke side


@dataclass(frozen=True, order=True)
class Typeface:
    name: str  # unique: file stem for vendored faces, "Hershey-<FACE>" for OpenCV faces
    group: str  # the library's category ("sans", "condensed", "stencil", ...) or "hershey"
    source: str  # font file path, or the Hershey face name
    family: str = field(default="", compare=False)  # held out as a whole; the name when not given

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)


@lru_cache(maxsize=1)
def manifest() -> tuple[dict, ...]:
    """The vendored library's manifest rows (file, family, style, category, licence, copyright, source, sha256)."""
    try:
        rows = json.loads(MANIFEST.read_text())["files"]
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"cannot read the typeface manifest {MANIFEST} ({e}); restore it with "
                           f"`git checkout -- {MANIFEST.parent}` or rebuild it with "
                           f"`python -m training.synth.vendor_typefaces`") from None
    return tuple(rows)


def _vendored() -> list[Typeface]:
    faces = []
    for row in manifest():
        path = TYPEFACE_DIR / row["file"]
        if not path.is_file():
            raise RuntimeError(f"vendored typeface {path} is missing; restore it with "
                               f"`git checkout -- {TYPEFACE_DIR}`")
        faces.append(Typeface(Path(row["file"]).stem, row["category"], str(path), row["family"]))
    return faces


@cache
def _pil_font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, int(GLYPH_PX * 1.45))


def _crop_ink(mask: np.ndarray) -> np.ndarray:
    """Crop to where coverage reaches one half: the same threshold boxes are measured at, so a glyph
    scaled to a box has its measured ink on the box edges (the faint anti-aliased fringe is dropped)."""
    rows, cols = np.flatnonzero(mask.max(axis=1) >= 128), np.flatnonzero(mask.max(axis=0) >= 128)
    if len(rows) == 0:
        return np.zeros((0, 0), np.uint8)
    return np.ascontiguousarray(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def _draw_ttf(path: str, char: str) -> np.ndarray:
    font = _pil_font(path)
    size = int(GLYPH_PX * 2.2)
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).text((size // 4, size // 8), char, font=font, fill=255)
    return _crop_ink(np.asarray(img))


def _draw_hershey(face: str, char: str) -> np.ndarray:
    font = HERSHEY_FACES[face]
    (_, h1), _ = cv2.getTextSize("0", font, 1.0, 1)
    scale = GLYPH_PX / h1
    thickness = max(2, round(GLYPH_PX * 0.06))
    size = int(GLYPH_PX * 2.4)
    img = np.zeros((size, size), np.uint8)
    cv2.putText(img, char, (size // 4, int(size * 0.7)), font, scale, 255, thickness, cv2.LINE_AA)
    return _crop_ink(img)


_raw: dict[tuple[str, str], np.ndarray] = {}  # (typeface name, char) -> unweighted mask; shared with workers


def face_glyph(face: Typeface, char: str) -> np.ndarray:
    """Unweighted ink-cropped mask, drawn once per process; takes any face (the vendoring script checks new ones)."""
    key = (face.name, char)
    if key not in _raw:
        _raw[key] = _draw_hershey(face.source, char) if face.group == "hershey" else _draw_ttf(face.source, char)
    return _raw[key]


def draws_digits(face: Typeface) -> bool:
    """Ten non-empty, distinct, roughly equal-height digits (rejects symbol fonts and old-style figures).

    Run on every face when the library is vendored (a face that fails is not vendored) and by the tests, so
    that listing the typefaces at run time costs no drawing.
    """
    try:
        glyphs = [face_glyph(face, d) for d in DIGITS]
    except OSError:
        return False
    if any(g.size == 0 or g.shape[0] < GLYPH_PX * 0.4 for g in glyphs):
        return False
    heights = np.array([g.shape[0] for g in glyphs], dtype=np.float64)
    if heights.max() / heights.min() > 1.25:
        return False
    thumbs = np.stack([cv2.resize(g, (12, 16), interpolation=cv2.INTER_AREA).astype(np.float32) for g in glyphs])
    diffs = np.abs(thumbs[:, None] - thumbs[None]).mean(axis=(2, 3))
    return bool(diffs[~np.eye(10, dtype=bool)].min() > 4.0)


_probed: tuple[Typeface, ...] | None = None


def all_typefaces() -> tuple[Typeface, ...]:
    """Every typeface (vendored + Hershey), sorted by name (the order is part of determinism)."""
    global _probed
    if _probed is None:
        faces = [Typeface(f"Hershey-{name}", "hershey", name) for name in HERSHEY_FACES]
        _probed = tuple(sorted(faces + _vendored()))
    return _probed


def probe_state() -> tuple[tuple[Typeface, ...], dict[tuple[str, str], np.ndarray]]:
    """The typeface list and the digit masks drawn so far, for worker processes (they draw the rest lazily)."""
    faces = all_typefaces()
    return faces, {k: v for k, v in _raw.items() if k[1] in DIGITS}


def use_probe_state(state: tuple[tuple[Typeface, ...], dict[tuple[str, str], np.ndarray]]) -> None:
    """Adopt another process's list and masks (worker start-up): no glyph is drawn twice."""
    global _probed
    faces, masks = state
    _probed = tuple(faces)
    _raw.update(masks)


@cache
def typeface_by_name(name: str) -> Typeface:
    for face in all_typefaces():
        if face.name == name:
            return face
    raise KeyError(f"unknown typeface {name!r}: not one of the {len(all_typefaces())} faces in {MANIFEST} "
                   "or Hershey-<FACE>; list them with training.synth.fonts.all_typefaces()")


@cache
def glyph(face_name: str, char: str, weight: int = 0) -> np.ndarray:
    """Ink-cropped uint8 mask of `char`, strokes thickened (weight > 0) or thinned (< 0) by whole levels.

    Weight is applied here, before the glyph is scaled to its box, so that the ink the caller places
    is exactly the ink it asked for (the twin renderer relies on this).
    """
    if weight not in WEIGHT_LEVELS:
        raise ValueError(f"weight must be one of {WEIGHT_LEVELS}, got {weight}")
    mask = face_glyph(typeface_by_name(face_name), char)
    if weight == 0 or mask.size == 0:
        return mask
    r = max(1, round(abs(weight) * _WEIGHT_STEP * GLYPH_PX))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    if weight > 0:
        padded = cv2.copyMakeBorder(mask, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
        return _crop_ink(cv2.dilate(padded, kernel))
    thinned = cv2.erode(mask, kernel)
    # a light face eroded to nothing (or to broken strokes) would no longer read as its digit
    return _crop_ink(thinned) if thinned.sum() > 0.55 * mask.sum() else mask


def font_search_paths() -> list[str]:
    """For the metadata: where typefaces come from (the vendored folder only; Hershey faces ship with OpenCV)."""
    return [str(TYPEFACE_DIR)]
