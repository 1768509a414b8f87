"""The review tab's logic without a browser: any split can be reviewed, a box drawn on the display-scaled picture
lands in the image's own pixels (left alone it is an accept, moved it is an edit), and the tab warns when the
model trained on the split it reviews."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detector.categories import digit_to_category
from detector.checkpoint import DEFAULT_CHECKPOINT, CheckpointMeta, save_checkpoint
from detector.hw2 import load_split
from detector.matching import AnnotationSuspect
from detector.models import build_model, get_preset
from detector.provenance import FINGERPRINT_KEY, split_fingerprints
from studio.paths import DEFAULT_DATA
from studio.review import DEFAULT_MIN_SCORE, make_suggestions
from studio.review_views import ReviewViews
from studio.session import Studio


def _checkpoint(path: Path, training: dict) -> Path:
    torch.manual_seed(0)
    config = get_preset("resnet18").replace(min_size=64, max_size=128)
    return save_checkpoint(path, build_model(config).state_dict(), CheckpointMeta(config=config, training=training))


def _views(data: Path, checkpoint: Path) -> ReviewViews:
    return ReviewViews(Studio(checkpoint, data, device="cpu", disk_cache=False))


def test_the_tab_warns_when_the_model_trained_on_the_reviewed_split(tiny_hw2: Path, tmp_path: Path) -> None:
    splits = {name: load_split(tiny_hw2, name).records for name in ("train", "valid")}
    by_content = _views(tiny_hw2, _checkpoint(tmp_path / "a.safetensors", {
        "data": "/elsewhere/DATA", "counts": {"train": 4, "valid": 3},
        FINGERPRINT_KEY: split_fingerprints({"train": splits["train"]})}))
    assert by_content.split_names == ["valid", "train"] and by_content.default_split == "valid"
    assert "The model trained on 4 of these 4 images" in by_content.split("train").fairness_note()
    assert "did not train on these images" in by_content.split("valid").fairness_note()

    by_folder = _views(tiny_hw2, _checkpoint(tmp_path / "b.safetensors", {
        "data": str(tiny_hw2), "counts": {"train": 4, "valid": 3}}))  # written before digests existed
    assert "The model was trained on this split" in by_folder.split("train").fairness_note()
    valid = by_folder.split("valid").fairness_note()
    assert "⚠️" not in valid and "chosen on 3 of these 3" in valid

    unknown = _views(tiny_hw2, _checkpoint(tmp_path / "c.safetensors", {}))
    assert "does not record its training data" in unknown.split("train").fairness_note()


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="the shipped checkpoint is not installed")
def test_no_warning_for_the_shipped_model_on_the_shipped_validation_set() -> None:
    """Trained on synthetic data of other seeds (another folder): the shipped set is a fair audit."""
    note = ReviewViews(Studio(DEFAULT_CHECKPOINT, DEFAULT_DATA, device="cpu", disk_cache=False)).split().fairness_note()
    assert "⚠️" not in note and "not on this folder" in note


def _views_with_suggestions(data: Path, checkpoint: Path, split: str):
    """Views whose suggestion list is set by hand (one relabel, one missing digit) rather than by a model."""
    views = _views(data, checkpoint)
    records = views.split(split).records
    r0, r1 = records[0], records[1]
    suspects = [AnnotationSuspect(r0.image_id, "wrong_label", 0, tuple(r0.boxes[0]), int(r0.category_ids[0]) % 10 + 1,
                                  0.97),
                AnnotationSuspect(r1.image_id, "missing_annotation", -1, (1.0, 2.0, 9.0, 20.0), 4, 0.95)]
    views.lists.put((split, DEFAULT_MIN_SCORE), make_suggestions(suspects, records))
    return views, records


def _drawn(value: dict, tmp_path: Path, shift: float = 0.0) -> dict:
    """What the editor sends back: its picture as a file, the box in whole display pixels (moved by `shift`)."""
    picture = tmp_path / "shown.webp"
    value["image"].save(picture)
    return {"image": str(picture), "orientation": 0,
            "boxes": [{**b, **{k: round(b[k] + shift) for k in ("xmin", "ymin", "xmax", "ymax")}}
                      for b in value["boxes"]]}


def test_a_box_left_alone_is_an_accept_and_a_drawn_one_an_edit_in_image_pixels(tiny_hw2: Path, tiny_checkpoint: Path,
                                                                                tmp_path: Path) -> None:
    views, records = _views_with_suggestions(tiny_hw2, tiny_checkpoint, "train")  # any split, train too
    relabel, added = views.suggestions(DEFAULT_MIN_SCORE, split="train")
    value = views.editor_value(relabel, "train")
    assert value["image"].height >= 300  # the picture is scaled up for drawing; the box with it
    assert value["boxes"][0]["label"] == str(relabel.category_id - 1)

    left_alone = views.decide_drawn(relabel.id, _drawn(value, tmp_path), None, DEFAULT_MIN_SCORE, "t", "train")
    assert left_alone.decision == "accept" and left_alone.changes == {"category_id": relabel.category_id}

    value = views.editor_value(added, "train")
    scale = value["image"].width / records[1].width
    moved = views.decide_drawn(added.id, _drawn(value, tmp_path, shift=2 * scale), "7", DEFAULT_MIN_SCORE, "t",
                               "train")
    assert moved.decision == "edit" and moved.changes["category_id"] == digit_to_category(7)
    assert moved.changes["box"] == pytest.approx([3.0, 4.0, 11.0, 22.0], abs=0.6 / scale + 0.01)

    store = views.split("train").require_store()
    assert store.path.name == "train.review.jsonl" and len(store.path.read_text().splitlines()) == 2
    exported = json.loads(store.export(records).read_text())
    assert store.path.with_name("train.corrected.json").is_file()
    added_boxes = [a for a in exported["annotations"] if a["image_id"] == records[1].image_id]
    assert len(added_boxes) == len(records[1].boxes) + 1 and added_boxes[-1]["category_id"] == digit_to_category(7)


def test_next_moves_on_without_deciding_and_a_missing_box_is_refused(tiny_hw2: Path, tiny_checkpoint: Path) -> None:
    views, _ = _views_with_suggestions(tiny_hw2, tiny_checkpoint, "valid")
    first, second = (s.id for s in views.suggestions(DEFAULT_MIN_SCORE))
    assert views.next_undecided(first, DEFAULT_MIN_SCORE) is None  # undecided: a failed decision stays
    assert views.next_undecided(first, DEFAULT_MIN_SCORE, skip=True) == second
    assert views.next_undecided(second, DEFAULT_MIN_SCORE, skip=True) == first  # wraps round
    with pytest.raises(ValueError, match="no box on the image: draw one"):
        views.decide_drawn(first, {"boxes": []}, "3", DEFAULT_MIN_SCORE)
    assert not views.split().require_store().path.exists() or not views.split().require_store().decisions()
    with pytest.raises(Exception, match="no split 'test'"):
        views.split("test")
