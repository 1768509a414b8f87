"""Synthetic street-view house numbers: the project's embedded default dataset.

Real SVHN geometry (image sizes, digit counts, heights, spacing, position: summary figures fitted
from the real layouts, `svhn_geometry.json`), drawn in a vendored library of open-licence typefaces on
procedural wall textures with plaques, street clutter (poles, railings, frames, lamps, letterboxes,
hooks, shadows), glyph effects, perspective, lighting, low resolution, blur, noise and JPEG artefacts.

Boxes follow SVHN's convention (render.BoxConvention): the measured glyph ink after every geometric
transform, widened by an annotator's margins, because SVHN's hand-drawn boxes are looser than the ink.
Edge rule: as in SVHN, a digit is labelled only when fully visible (render.VISIBLE_INK_MIN of its ink
inside the image); a digit cut by the edge stays in the pixels, unlabelled. Letters (suffixes like
"12A", street names) are never labelled. `negatives=` adds train images with no number at all.

Style families are split into a 'train' share and a 'heldout' share (styles.py) for a
generalisation test: `styles='train'` never draws a held-out typeface, texture, colour scheme,
plaque or glyph effect, and `styles='heldout'` draws only those.

    python -m training.synth --out DATA --train 1000 --valid 200 --test 200 --workers 2
    python -m training.synth.geometry --fit LAYOUTS.json.gz   # refit the geometry figures

    from training.synth import generate_dataset, render_sample
    generate_dataset("DATA", {"train": 500}, seed=1, styles="train")
    image, boxes_xyxy, category_ids, meta = render_sample(np.random.default_rng(0), "all")
"""
from importlib import import_module
from typing import Any

_EXPORTS = {"render_sample": "render", "render_twin": "render", "VISIBLE_INK_MIN": "render",
            "generate_dataset": "writer", "image_rng": "writer", "DEFAULT_COUNTS": "writer", "SYNTH_VERSION": "writer"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Lazy exports: `python -m training.synth.geometry` must not import (and so run twice) its own module."""
    if name in _EXPORTS:
        return getattr(import_module(f"training.synth.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'training.synth' has no attribute {name!r}")
