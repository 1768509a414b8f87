"""Synthetic street-view house numbers: the project's embedded default dataset.

Real SVHN geometry (image sizes, digit counts, heights, spacing, position: summary figures fitted
from the real layouts, `svhn_geometry.json`), drawn in ~66 typefaces on procedural wall textures
with plaques, glyph effects, perspective, lighting, blur, noise and JPEG artefacts.

Boxes are tight on the rendered glyph ink after every geometric transform. Edge rule: a digit cut
by the image edge keeps a box clipped to its visible ink when at least 60% of its ink is inside
the image (render.VISIBLE_INK_MIN); below that it stays in the pixels but gets no box. Letters
(suffixes like "12A", street names) are never labelled.

Style families are split into a 'train' share and a 'heldout' share (styles.py) for a
generalisation test: `styles='train'` never draws a held-out typeface, texture, colour scheme,
plaque or glyph effect, and `styles='heldout'` draws only those.

    python -m training.synth --out DATA --train 1000 --valid 200 --test 200 --workers 2
    python -m training.synth.geometry --fit LAYOUTS.json.gz   # refit the geometry figures

    from training.synth import generate_dataset, render_sample
    generate_dataset("DATA", {"train": 500}, seed=1, styles="train")
    image, boxes_xyxy, category_ids, meta = render_sample(np.random.default_rng(0), "all")
"""
from training.synth.render import VISIBLE_INK_MIN, render_sample, render_twin
from training.synth.writer import DEFAULT_COUNTS, SYNTH_VERSION, generate_dataset, image_rng

__all__ = ["DEFAULT_COUNTS", "SYNTH_VERSION", "VISIBLE_INK_MIN", "generate_dataset", "image_rng", "render_sample",
           "render_twin"]
