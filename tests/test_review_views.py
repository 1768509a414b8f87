"""The review tab's logic without a browser: any split can be reviewed, a box drawn on the display-scaled picture
lands in the image's own pixels (left alone it is an accept, moved it is an edit), and the tab warns when the
model trained on the split it reviews."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detector.categories import NUM_CLASSES, digit_to_category
from detector.checkpoint import DEFAULT_CHECKPOINT, CheckpointMeta, save_checkpoint
from detector.detections import Detections
from detector.hw2 import ImageRecord, load_split
from detector.matching import AnnotationSuspect
from detector.models import build_model, get_preset
from detector.provenance import FINGERPRINT_KEY, split_fingerprints
from studio.paths import DEFAULT_DATA
from studio.review import DEFAULT_MIN_SCORE, make_suggestions
from studio.review_views import ReviewViews
from studio.session import Studio
from tests.conftest import write_tiny_hw2


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
    """Trained on synthetic data of other seeds: the shipped set is a fair audit, judged by the image digests the
    shipped checkpoint records (those of the soup's parts that trained with them)."""
    note = ReviewViews(Studio(DEFAULT_CHECKPOINT, DEFAULT_DATA, device="cpu", disk_cache=False)).split().fairness_note()
    assert "⚠️" not in note and "did not train on these images" in note


def _views_with_suggestions(data: Path, checkpoint: Path, split: str):
    """Views whose suggestion list is set by hand (one relabel, one missing digit) rather than by a model."""
    views = _views(data, checkpoint)
    records = views.split(split).records
    r0, r1 = records[0], records[1]
    suspects = [AnnotationSuspect(r0.image_id, "swapped_class", 0, tuple(r0.boxes[0]),
                                  int(r0.category_ids[0]) % 10 + 1, 0.97),
                AnnotationSuspect(r1.image_id, "missing_box", -1, (1.0, 2.0, 9.0, 20.0), 4, 0.95)]
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


def _seeing(record: ImageRecord) -> Detections:
    """What a model that sees every true digit caches: each digit's box (a little off, as a model's boxes are)
    scored 0.95 for its class, 0.02 for the others (NMS off, as the app's raw candidates)."""
    jitter = 0.4 * torch.sin(torch.arange(4 * len(record.boxes), dtype=torch.float32) + record.image_id).reshape(-1, 4)
    boxes = (torch.as_tensor(record.boxes, dtype=torch.float32) + jitter).repeat_interleave(NUM_CLASSES - 1, dim=0)
    classes = torch.arange(1, NUM_CLASSES).repeat(len(record.boxes))
    truth = torch.as_tensor(record.category_ids, dtype=torch.int64).repeat_interleave(NUM_CLASSES - 1)
    return Detections(boxes, torch.where(classes == truth, 0.95, 0.02), classes)


def test_the_review_finds_a_planted_spurious_box_and_a_swapped_class_and_accepting_fixes_both(
        tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The tab's own call at its default minimum score, on a 24-image split where the model sees every true digit:
    a label with no digit under it is suggested for deletion (accepting deletes it), a relabelled digit for its
    true class. (The score ranks suspicions within the split, so each kind's strongest few show even on clean
    labels: here the boxes the model puts least where the labels are.)"""
    data = write_tiny_hw2(tmp_path / "DATA", n_train=24, n_valid=1, n_test=0, seed=3)
    true = load_split(data, "train").records
    candidates = {r.image_id: _seeing(r) for r in true}
    annotation = json.loads((data / "train.json").read_text())
    swapped_image, spurious_image = true[0].image_id, true[1].image_id
    first = next(a for a in annotation["annotations"] if a["image_id"] == swapped_image)
    true_category = first["category_id"]
    first["category_id"] = true_category % 10 + 1
    x, y, w, h = next(a for a in annotation["annotations"] if a["image_id"] == spurious_image)["bbox"]
    spurious_box = [float(true[1].width - w - 1), float(y), float(w), float(h)]  # right edge: no digit there
    annotation["annotations"].append({**first, "id": 10_000, "image_id": spurious_image, "bbox": spurious_box,
                                      "category_id": 3, "area": w * h})
    (data / "train.json").write_text(json.dumps(annotation))

    views = _views(data, tiny_checkpoint)
    views.split("train")._candidates = candidates  # the model's cached candidates, without running a model
    found = views.suggestions(DEFAULT_MIN_SCORE, split="train")
    noisy = views.split("train").record(spurious_image)
    planted = {(swapped_image, 0), (spurious_image, len(noisy.boxes) - 1)}
    swapped, spurious = sorted((s for s in found if (s.image_id, s.gt_index) in planted), key=lambda s: s.image_id)
    assert (swapped.kind, spurious.kind) == ("swapped_class", "spurious_box")
    assert {s.kind for s in found if (s.image_id, s.gt_index) not in planted} <= {"badly_located"}
    assert swapped.gt_index == 0 and swapped.category_id == true_category and swapped.changes() == {
        "category_id": true_category}
    assert spurious.gt_index == len(noisy.boxes) - 1 and spurious.changes() == {"delete": True}
    assert "delete digit 2's label" in spurious.describe()
    summary = views.summary(views.table(DEFAULT_MIN_SCORE, "train"), DEFAULT_MIN_SCORE, "train")
    assert "1 wrong digit?" in summary and "1 no digit here?" in summary

    assert views.decide(spurious.id, "accept", None, None, DEFAULT_MIN_SCORE, "t", "train").decision == "delete"
    assert views.decide(swapped.id, "accept", None, None, DEFAULT_MIN_SCORE, "t", "train").decision == "accept"
    exported = json.loads(views.split("train").require_store().export(views.split("train").records).read_text())
    assert len(exported["annotations"]) == sum(len(r.boxes) for r in true)  # the spurious box is gone
    assert spurious_box not in [a["bbox"] for a in exported["annotations"]]
    assert next(a for a in exported["annotations"] if a["image_id"] == swapped_image)["category_id"] == true_category
