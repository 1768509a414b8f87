"""How the generator labels digits (SVHN's box convention, the full-visibility rule, negatives) and the
street clutter it draws around them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training.synth.camera import Scene
from training.synth.clutter import CLUTTER
from training.synth.geometry import load_geometry
from training.synth.render import (
    VISIBLE_INK_MIN,
    BoxConvention,
    PlacedGlyph,
    _ink_inside,
    _labels,
    _widen,
    render_sample,
    render_twin,
)
from training.synth.writer import generate_dataset, is_negative


def test_labels_are_the_ink_widened_by_the_annotators_margins() -> None:
    scene = Scene(width=100, height=50, scale=1.0, cw=100, ch=50, margin=0)
    ink = np.array([40.0, 10.0, 50.0, 30.0], np.float32)  # 10 x 20 px of ink
    box = _widen(ink, (0.1, 0.05, 0.2, 0.15), scene)
    assert box.tolist() == pytest.approx([38.0, 9.0, 54.0, 33.0])
    # near the edge the widened box is clipped to the image
    assert _widen(np.array([1.0, 1.0, 11.0, 21.0], np.float32), (0.5, 0.5, 0.0, 0.0), scene)[:2].tolist() == [0, 0]


def test_ink_inside_a_given_box_widens_back_to_it() -> None:
    pad = (0.08, 0.06, 0.05, 0.1)
    x, y, w, h = _ink_inside((10.0, 5.0, 20.0, 40.0), pad)
    ink = np.array([x, y, x + w, y + h], np.float32)
    scene = Scene(width=100, height=100, scale=1.0, cw=100, ch=100, margin=0)
    assert _widen(ink, pad, scene).tolist() == pytest.approx([10.0, 5.0, 30.0, 45.0], abs=1e-4)


def test_convention_margins_are_loose_like_svhn_boxes() -> None:
    """Ink height 80-96% of the box, a few hundredths to a tenth of the box height per side."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = BoxConvention.sample(rng)
        left, top, right, bottom = c.pad(rng)
        assert min(left, top, right, bottom) >= 0
        box_h = 1 + top + bottom  # in ink heights
        assert 1 / 0.96 - 0.2 <= box_h <= 1 / 0.8 + 0.2


def test_only_fully_visible_digits_are_labelled() -> None:
    scene = Scene(width=100, height=50, scale=1.0, cw=100, ch=50, margin=0)
    patch = np.ones((20, 10), np.float32)
    glyphs = [PlacedGlyph("3", 4, "number", patch, 40, 10),  # inside
              PlacedGlyph("5", 6, "neighbour", patch, 93, 10),  # 70% visible: a sliver of a neighbour
              PlacedGlyph("A", 0, "letter", patch, 10, 10)]  # letters are never labelled
    boxes, labels, unlabelled = _labels(glyphs, np.eye(3), scene, None)
    assert labels.tolist() == [4] and unlabelled == 1
    assert VISIBLE_INK_MIN > 0.9


def test_rendered_boxes_are_wider_than_the_ink_and_ones_are_narrow() -> None:
    geo = load_geometry()
    aspects: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(150):
        _, boxes, cats, _ = render_sample(np.random.default_rng(seed), "train", geo)
        for (x0, y0, x1, y1), c in zip(boxes.tolist(), cats.tolist(), strict=False):
            aspects[c == 2].append((x1 - x0) / (y1 - y0))
    ones, others = np.median(aspects[True]), np.median(aspects[False])
    # the real figures: '1' boxes 0.37 as wide as tall, other digits 0.51 (svhn_geometry.json)
    assert 0.25 < ones < 0.5 and 0.4 < others < 0.65 and ones < others - 0.08


def test_negative_scene_has_no_box() -> None:
    image, boxes, cats, meta = render_sample(np.random.default_rng(3), "train", negative=True)
    assert boxes.shape == (0, 4) and cats.shape == (0,) and meta["negative"] is True
    assert image.ndim == 3 and image.std() > 0


def test_twin_keeps_the_given_boxes() -> None:
    given = np.array([[30.0, 10.0, 45.0, 40.0], [46.0, 11.0, 60.0, 41.0]])
    _, boxes, cats, _ = render_twin(np.random.default_rng(5), 100, 50, given, np.array([3, 8]), "train")
    assert cats.tolist() == [3, 8]
    assert np.abs(boxes - given).max() < 2.0


@pytest.mark.parametrize("name", [n for n in CLUTTER if n != "hard_shadow"])
def test_clutter_stays_off_the_number(name: str) -> None:
    """A clutter object may go anywhere but over the number's keep-clear region."""
    clear = (60.0, 30.0, 100.0, 60.0)
    drawn = 0
    for seed in range(30):
        img = np.full((90, 160, 3), 0.5, np.float32)
        if CLUTTER[name][1](np.random.default_rng(seed), img, clear, 25.0):
            drawn += 1
            inside = img[31:59, 61:99]
            assert np.abs(inside - 0.5).max() < 1e-3, f"{name} drew over the number (seed {seed})"
    assert drawn > 0, f"{name} never found room"


def test_negatives_are_train_only_and_seeded(tmp_path) -> None:
    assert [is_negative(1, i, 0.3) for i in range(20)] == [is_negative(1, i, 0.3) for i in range(20)]
    assert 2 <= sum(is_negative(1, i, 0.3) for i in range(40)) <= 22
    out = generate_dataset(tmp_path / "d", {"train": 12, "valid": 4, "test": 0}, seed=1, workers=1, negatives=0.5)
    train = json.loads((out / "train.json").read_text())
    valid = json.loads((out / "valid.json").read_text())
    with_boxes = {a["image_id"] for a in train["annotations"]}
    negatives = [i for i in range(1, 13) if is_negative(1, i, 0.5)]
    assert negatives and not set(negatives) & with_boxes
    assert {a["image_id"] for a in valid["annotations"]} == {1, 2, 3, 4}
