"""The studio's logic without a server: review store (concurrency, restart, read-only data), candidate
cache, failure report, bad uploads, missing model/data, and drawing."""
from __future__ import annotations

import json
import multiprocessing
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.checkpoint import read_meta, update_meta
from detector.detections import Detections
from detector.hw2 import ImageRecord, load_annotation_file, load_split
from detector.matching import AnnotationSuspect
from detector.results_io import validate_pred_json
from detector.thresholds import Thresholds
from studio.cache import checkpoint_fingerprint, load_candidates, save_candidates
from studio.detect import run_detect
from studio.drawing import KIND_COLOURS, draw_detections, draw_match_overlay
from studio.failures import ALL_IMAGES, ANY_ERROR, MISSED, NUMBER_WRONG, build_report
from studio.review import ReviewError, ReviewStore, Suggestion, make_suggestions
from studio.session import Studio, StudioError
from training.config import TrainConfig
from training.evaluate import split_metrics, validation_thresholds


# ----------------------------------------------------------------------------------------------- review
def _suggestion(i: int, image_id: int = 1, gt_index: int = -1) -> Suggestion:
    return Suggestion(id=f"{image_id}:missing_annotation:{i}", image_id=image_id, kind="missing_annotation",
                      gt_index=gt_index, box=(1.0, 2.0, 5.0, 9.0), category_id=3, confidence=0.95,
                      original_box=None, original_category_id=None)


def _writer(path: str, tag: int, n: int, barrier) -> None:
    store = ReviewStore(Path(path))
    barrier.wait()
    for i in range(n):
        store.record(_suggestion(tag * 1000 + i), "accept" if i % 2 else "reject", author=f"writer{tag}")
        store.record(_suggestion(999_999), "accept" if tag == 1 else "reject", author=f"writer{tag}")


def test_two_writers_at_once_lose_no_decision(tmp_path: Path) -> None:
    path = tmp_path / "valid.review.jsonl"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    n = 60
    procs = [ctx.Process(target=_writer, args=(str(path), tag, n, barrier)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = ReviewStore(path)
    history = store.history()
    assert store.skipped_lines == 0 and len(history) == 4 * n  # every line whole, none lost
    latest = store.decisions()
    assert {f"1:missing_annotation:{t * 1000 + i}" for t in (1, 2) for i in range(n)} <= set(latest)
    shared = [d for d in history if d.suggestion_id == "1:missing_annotation:999999"]
    assert latest["1:missing_annotation:999999"] == shared[-1]  # the last decision wins
    assert {d.author for d in history} == {"writer1", "writer2"}


def _tiny_records(root: Path) -> list[ImageRecord]:
    return load_split(root, "valid").records


def test_decisions_survive_a_restart_and_export_applies_them(tiny_hw2: Path) -> None:
    records = _tiny_records(tiny_hw2)
    original = (tiny_hw2 / "valid.json").read_bytes()
    r0, r1 = records[0], records[1]
    suspects = [
        AnnotationSuspect(r0.image_id, "wrong_label", 0, tuple(r0.boxes[0]), int(r0.category_ids[0]) % 10 + 1, 0.97),
        AnnotationSuspect(r0.image_id, "missing_annotation", -1, (1.0, 1.0, 9.0, 20.0), 4, 0.96),
        AnnotationSuspect(r1.image_id, "loose_box", 0, (2.0, 3.0, 10.0, 25.0), int(r1.category_ids[0]), 0.95),
        AnnotationSuspect(r1.image_id, "missing_annotation", -1, (30.0, 1.0, 40.0, 20.0), 2, 0.94),
    ]
    wrong_label, added, loose, rejected = make_suggestions(suspects, records)
    assert wrong_label.original_category_id == int(r0.category_ids[0])

    store = ReviewStore.beside(tiny_hw2 / "valid.json")
    assert store.path == tiny_hw2 / "valid.review.jsonl"
    store.record(wrong_label, "reject")
    store.record(added, "accept")
    store.record(rejected, "accept")

    restarted = ReviewStore.beside(tiny_hw2 / "valid.json")  # a new process would do exactly this
    assert set(restarted.decisions()) == {wrong_label.id, added.id, rejected.id}
    restarted.record(wrong_label, "accept")  # changed mind: last decision wins
    restarted.record(rejected, "reject")
    restarted.record(loose, "edit", box="2, 3, 11, 26", category_id=7, image_size=(r1.width, r1.height))
    assert restarted.decisions()[wrong_label.id].decision == "accept"

    out = restarted.export(records)
    assert out == tiny_hw2 / "valid.corrected.json"
    assert (tiny_hw2 / "valid.json").read_bytes() == original  # never touched
    corrected = load_annotation_file(out, tiny_hw2 / "valid", strict=True).by_id()
    assert corrected[r0.image_id].category_ids[0] == wrong_label.category_id
    assert len(corrected[r0.image_id].boxes) == len(r0.boxes) + 1
    np.testing.assert_allclose(corrected[r0.image_id].boxes[-1], [1, 1, 9, 20], atol=1e-3)
    assert len(corrected[r1.image_id].boxes) == len(r1.boxes)  # rejected: nothing added
    np.testing.assert_allclose(corrected[r1.image_id].boxes[0], [2, 3, 11, 26], atol=1e-3)
    assert corrected[r1.image_id].category_ids[0] == 7


def test_bad_decisions_are_refused_with_a_reason(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "valid.review.jsonl")
    s = _suggestion(1)
    with pytest.raises(ReviewError, match="decision must be one of"):
        store.record(s, "maybe")
    with pytest.raises(ReviewError, match="four numbers"):
        store.record(s, "edit", box="1, 2, 3", category_id=2)
    with pytest.raises(ReviewError, match="x2 must be > x1"):
        store.record(s, "edit", box="5, 2, 3, 9", category_id=2)
    with pytest.raises(ReviewError, match="outside"):
        store.record(s, "edit", box="1, 2, 300, 9", category_id=2, image_size=(100, 50))
    with pytest.raises(ReviewError, match="1..10"):
        store.record(s, "edit", box="1, 2, 3, 9", category_id=11)
    with pytest.raises(ReviewError, match="has none"):
        store.record(s, "delete")
    assert store.history() == []


def test_a_torn_last_line_is_skipped_and_the_next_decision_starts_clean(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "valid.review.jsonl")
    store.record(_suggestion(1), "accept")
    with store.path.open("ab") as f:
        f.write(b'{"suggestion_id": "1:miss')  # a crash mid-write
    store.record(_suggestion(2), "reject")
    assert set(store.decisions()) == {"1:missing_annotation:1", "1:missing_annotation:2"}
    assert store.skipped_lines == 1


def test_unwritable_data_folder_sends_reviews_to_the_user_dir(tiny_hw2: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    # A directory where the review file should be: appending fails as on a read-only mount (root ignores chmod).
    (tiny_hw2 / "valid.review.jsonl").mkdir()
    store = ReviewStore.beside(tiny_hw2 / "valid.json")
    assert store.path.is_relative_to(tmp_path / "xdg") and "read-only" in store.note and str(store.path) in store.note
    store.record(_suggestion(1), "accept")
    assert ReviewStore.beside(tiny_hw2 / "valid.json").decisions()  # the same fallback file after a restart


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the directory case above covers it")
def test_read_only_data_folder_sends_reviews_to_the_user_dir(tiny_hw2: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    tiny_hw2.chmod(0o555)
    try:
        store = ReviewStore.beside(tiny_hw2 / "valid.json")
        assert store.path.is_relative_to(tmp_path / "xdg")
    finally:
        tiny_hw2.chmod(0o755)


# ----------------------------------------------------------------------------------------------- cache
def test_candidate_cache_round_trips_and_survives_a_threshold_save(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    candidates = {3: Detections(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.5]), torch.tensor([2])),
                  7: Detections.empty()}
    path = save_candidates(tmp_path / "c.safetensors", candidates)
    back = load_candidates(path)
    assert set(back) == {3, 7} and len(back[7]) == 0
    assert torch.equal(back[3].boxes, candidates[3].boxes) and back[3].labels.tolist() == [2]

    before = checkpoint_fingerprint(ckpt)
    update_meta(ckpt, thresholds={"score": 0.33})  # what the app's "save thresholds" button does
    assert read_meta(ckpt).thresholds.score == 0.33
    assert checkpoint_fingerprint(ckpt) == before  # same weights: cached candidates stay valid

    path.write_bytes(path.read_bytes()[:40])  # a damaged cache is ignored, not fatal
    assert load_candidates(path) is None


def test_validation_predictions_are_computed_once_then_read_from_disk(tiny_checkpoint: Path, tiny_hw2: Path,
                                                                       tmp_path: Path) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    first = Studio(ckpt, tiny_hw2, device="cpu")
    seen = []
    state = first.validation(progress=lambda done, total: seen.append((done, total)))
    n = len(first.records)
    assert first.model_runs == n and seen[-1] == (n, n) and set(state.candidates) == {r.image_id for r in first.records}
    assert first.validation() is state  # memory

    second = Studio(ckpt, tiny_hw2, device="cpu")
    again = second.validation()
    assert second.model_runs == 0 and again.source.endswith(".safetensors")  # disk
    for image_id, det in state.candidates.items():
        assert torch.allclose(det.scores, again.candidates[image_id].scores)

    image = Image.open(first.records[0].path)
    first.candidates_for(image)
    first.candidates_for(image.copy())
    assert first.model_runs == n + 1  # uploads: the same pixels run once


# ----------------------------------------------------------------------------------------------- failures
def _record(image_id: int, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(image_id, f"{image_id}.png", 120, 60, Path(f"{image_id}.png"),
                       np.asarray(boxes, dtype=np.float32), np.asarray(labels, dtype=np.int64))


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores, dtype=torch.float32),
                      torch.tensor(labels, dtype=torch.int64))


def test_failure_report_finds_each_kind_of_failure_and_sorts_by_severity() -> None:
    a, b, c = [10, 10, 30, 50], [35, 10, 55, 50], [60, 10, 80, 50]
    records = [_record(1, [a, b], [2, 3]), _record(2, [a, b], [2, 3]), _record(3, [a, b, c], [5, 6, 7]),
               _record(4, [a], [9])]
    candidates = {
        1: _dets([a, b], [2, 3], [0.99, 0.98]),  # perfect: "12"
        2: _dets([a, b, [90, 5, 110, 40]], [2, 3, 4], [0.99, 0.98, 0.95]),  # background FP -> reads "123"
        3: _dets([a, b], [5, 8], [0.99, 0.97]),  # 6 read as 7, and the last digit missed
        4: _dets([a, [11, 11, 31, 51]], [9, 9], [0.9, 0.6]),  # a duplicate, number still right
    }
    th = Thresholds(score=0.5, nms_iou=1.0, number_score=0.7, class_agnostic=False)
    report = build_report(records, candidates, th, backend="pycocotools")
    assert [m.number_correct for m in report.matches] == [True, False, False, True]
    assert report.number_accuracy == 0.5
    assert 0 < report.metrics["AP"] < 1
    assert [m.image_id for m in report.select(ANY_ERROR)] == [3, 2, 4]  # two number errors first, worst first
    assert [m.image_id for m in report.select("background")] == [2]
    assert [m.image_id for m in report.select("wrong_class")] == [3]
    assert [m.image_id for m in report.select(MISSED)] == [3]
    assert [m.image_id for m in report.select("duplicate")] == [4]
    assert [m.image_id for m in report.select("wrong_class", "7")] == [3]  # a 6 read as 7: both digits
    assert [m.image_id for m in report.select("wrong_class", "5")] == [3]
    assert report.select("wrong_class", "1") == []
    assert [m.image_id for m in report.select(NUMBER_WRONG, "3")] == [2]  # true "12", read "123"
    assert [m.image_id for m in report.select(ALL_IMAGES, "8")] == [4]
    counts = report.counts()
    # the 6 under a wrong-class box counts as missed too (matching.py), so image 3 misses two digits
    assert counts["background"] == 1 and counts[MISSED] == 2 and counts["duplicate"] == 1 and counts[NUMBER_WRONG] == 2
    rows = {row[0]: row for row in report.per_class_rows()}
    assert rows["6"][3:] == [1, 0, 1] and rows["1"][3:] == [2, 2, 0]
    assert report.confusion[5, 7] == 1  # true 6 (category 7) predicted 7 (category 8)

    # class-agnostic NMS at 0.5 removes the duplicate: the same call, another threshold, no model
    clean = build_report(records, candidates, Thresholds(0.5, 0.5, 0.7, True), backend="faster_coco_eval")
    assert clean.select("duplicate") == []


# detector.scoring.score_candidates: the one scoring the CLI, training and the app share
A, B = [10, 10, 30, 50], [35, 10, 55, 50]
RECORDS = [_record(1, [A, B], [2, 3]), _record(2, [A, B], [4, 5]), _record(3, [A], [6])]
CANDIDATES = {
    1: _dets([A, B], [2, 3], [0.9, 0.03]),  # "12", its second digit scored under the mAP floor (0.05)
    2: _dets([A, B], [4, 5], [0.8, 0.7]),
    3: _dets([A], [6], [0.95]),
}


@pytest.mark.parametrize("thresholds", [Thresholds(0.5, 0.5, 0.5, False), Thresholds(0.02, 0.5, 0.02, False),
                                        Thresholds(0.6, 0.5, 0.02, True)])
def test_the_app_shows_the_numbers_it_scores(thresholds: Thresholds) -> None:
    """Each image's number in the gallery is the one number accuracy counts, at any thresholds."""
    report = build_report(RECORDS, CANDIDATES, thresholds, backend="faster_coco_eval")
    assert report.number_accuracy == pytest.approx(np.mean([m.number_correct for m in report.matches]))
    reads = {m.image_id: m.number_read for m in report.matches}
    assert reads == ({1: "1", 2: "34", 3: "5"} if thresholds.number_score == 0.5 else {1: "12", 2: "34", 3: "5"})


def test_training_and_the_app_score_the_same_candidates_alike() -> None:
    config = TrainConfig(val_score=0.5, val_nms=0.5, coco_backend="faster_coco_eval")
    trained = split_metrics(RECORDS, CANDIDATES, config)
    report = build_report(RECORDS, CANDIDATES, validation_thresholds(config), backend="faster_coco_eval")
    assert trained["AP"] == report.metrics["AP"] and trained["number_accuracy"] == report.number_accuracy


# ----------------------------------------------------------------------------------------------- detect
def _huge_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A valid PNG header promising 400 Mpx (and a tiny, bogus body): must be refused before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_detect_reports_each_bad_upload_and_still_handles_the_good_ones(tiny_checkpoint: Path, tiny_hw2: Path,
                                                                        tmp_path: Path) -> None:
    studio = Studio(tiny_checkpoint, tiny_hw2, device="cpu")
    good = tiny_hw2 / "valid" / "1.png"
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    _huge_png(tmp_path / "huge.png")
    rgb = np.asarray(Image.open(good).convert("RGB"))
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grayscale
    paths = [tmp_path / n for n in ("notes.txt", "cut.png", "huge.png", "gray.png", "alpha.png", "deep.png")]
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")

    outcome = run_detect(studio, paths, Thresholds(0.05, 0.5, 0.05, False))
    assert [r.name for r in outcome.results] == ["gray.png", "alpha.png", "deep.png"]
    assert len(outcome.problems) == 3
    for name, words in (("notes.txt", "not an image"), ("cut.png", "truncated"), ("huge.png", "pixels")):
        assert any(p.startswith(name) and words in p for p in outcome.problems), outcome.problems
    assert len(outcome.gallery()) == 3 and "number-digits" in outcome.number_html()
    validate_pred_json(outcome.coco_results(), image_ids=[1, 2, 3])
    assert all(row[3] >= 0.05 for row in outcome.table())

    # an unreadable validation image counts as "nothing found" and is reported, the rest is evaluated
    last = studio.records[-1]
    last.path.write_bytes(last.path.read_bytes()[:50])
    state = studio.validation()
    assert list(state.unreadable) == [last.image_id] and "truncated" in state.unreadable[last.image_id]
    assert len(state.candidates[last.image_id]) == 0 and studio.model_runs == 3 + len(studio.records) - 1
    from studio.ui_validation import metrics_markdown
    from studio.validation import ValidationViews

    text = metrics_markdown(ValidationViews(studio).report(Thresholds(0.05, 0.5, 0.05, False)), studio)
    assert "1 validation image(s) could not be read" in text


def test_missing_or_broken_model_and_data_are_explained(tiny_hw2: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    missing = Studio(tmp_path / "nope.safetensors", tmp_path / "empty", device="cpu")
    status = missing.status_markdown()
    assert "nope.safetensors" in status and "--checkpoint" in status and "valid.json" in status and "--data" in status
    with pytest.raises(StudioError, match="not found"):
        run_detect(missing, [tiny_hw2 / "valid" / "1.png"], Thresholds())
    with pytest.raises(StudioError):
        missing.validation()

    pickled = tmp_path / "model.safetensors"
    pickled.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    broken = Studio(pickled, tiny_hw2, device="cpu")
    assert broken.predictor is None and "pickle" in broken.checkpoint_error

    (tmp_path / "nolabels").mkdir()
    (tmp_path / "nolabels" / "valid").mkdir()
    (tmp_path / "nolabels" / "valid.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert "empty" in Studio(pickled, tmp_path / "nolabels").data_error
    (tmp_path / "nolabels" / "valid.json").write_text("{ not json")
    assert "malformed JSON" in Studio(pickled, tmp_path / "nolabels").data_error


# ----------------------------------------------------------------------------------------------- drawing
def test_drawing_scales_small_images_up_and_colours_by_kind() -> None:
    image = Image.new("RGB", (100, 50), "white")
    det = _dets([[10, 10, 30, 40]], [4], [0.9])
    drawn = draw_detections(image, det, det)
    assert drawn.height >= 300 and drawn.width == 2 * drawn.height  # readable, same aspect
    scale = drawn.width / 100
    edge = drawn.getpixel((round(10 * scale), round(25 * scale)))
    assert edge != (255, 255, 255)

    from detector.matching import match_image

    match = match_image(_dets([[60, 5, 80, 45]], [2], [0.8]), np.array([[10, 10, 30, 40]]), np.array([4]))
    overlay = draw_match_overlay(image, match, scale=4.0)
    hex_of = lambda px: "#{:02x}{:02x}{:02x}".format(*px)  # noqa: E731
    assert hex_of(overlay.getpixel((240, 100))) == KIND_COLOURS["background"]  # the FP's left edge
    assert hex_of(overlay.getpixel((40, 100))) == KIND_COLOURS[MISSED]  # the missed digit's left edge
