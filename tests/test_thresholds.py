"""detector.thresholds.Thresholds: the one threshold value of the checkpoint, the CLI, training and the app."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from detector.checkpoint import DEFAULT_CHECKPOINT, FORMAT_ID, read_meta, read_state_dict, update_meta
from detector.cli import _thresholds, build_parser, main
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.scoring import score_candidates
from detector.thresholds import Thresholds


def test_ui_values_are_clamped_to_the_unit_range() -> None:
    # an API client may send any number: the app clamps it instead of failing the request
    assert Thresholds.of(1.7, -0.2, "2", 0) == Thresholds(1.0, 0.0, 1.0, False)
    assert Thresholds.of(-5, 3.5, -0.01, 1) == Thresholds(0.0, 1.0, 0.0, True)
    assert Thresholds.of(None, "x", float("nan"), True) == Thresholds(class_agnostic=True)  # no number: the default


@pytest.mark.parametrize("values, message", [
    ([0.5], "thresholds should be an object"),
    ({"score": None}, r"thresholds.score should be a number in \[0, 1\]"),
    ({"nms_iou": 1.5}, r"thresholds.nms_iou should be a number in \[0, 1\], got 1.5"),
    ({"number_score": True}, "thresholds.number_score should be a number"),
    ({"class_agnostic": 1}, "thresholds.class_agnostic should be true or false"),
    ({"score": 0.5, "nms": 0.3},
     "unknown key.* nms; the keys are score, nms_iou, number_score, class_agnostic, number_score_by_digit"),
])
def test_bad_json_is_one_error_naming_the_key(values, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Thresholds.from_dict(values)


def test_json_round_trip_and_missing_keys_take_defaults() -> None:
    t = Thresholds(0.65, 0.3, 0.65, True)
    assert Thresholds.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert Thresholds.from_dict({"number_score": 1}) == Thresholds(number_score=1.0)
    assert isinstance(Thresholds.from_dict({"number_score": 1}).number_score, float)


def test_the_shipped_checkpoint_reads_its_stored_thresholds_unchanged() -> None:
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"the shipped checkpoint {DEFAULT_CHECKPOINT} is not installed")
    with safe_open(str(DEFAULT_CHECKPOINT), framework="pt") as f:
        stored = json.loads(f.metadata()["meta"])["thresholds"]
    assert read_meta(DEFAULT_CHECKPOINT).thresholds.to_dict() == stored


def test_an_older_checkpoint_without_some_thresholds_reads_with_defaults(tiny_checkpoint: Path, tmp_path: Path) -> None:
    state, meta = read_state_dict(tiny_checkpoint)
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata={"format": FORMAT_ID, "config": meta.config.to_json(),
                                         "meta": json.dumps({"thresholds": {"number_score": 0.4}})})
    assert read_meta(old).thresholds == Thresholds(number_score=0.4)


def test_update_meta_merges_thresholds_and_refuses_bad_ones_without_touching_the_file(tiny_checkpoint: Path,
                                                                                       tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    assert update_meta(ckpt, thresholds={"nms_iou": 0.25}).thresholds == Thresholds(nms_iou=0.25)
    assert update_meta(ckpt, thresholds=Thresholds(0.4, 0.6, 0.8, True)).thresholds == Thresholds(0.4, 0.6, 0.8, True)
    before = ckpt.read_bytes()
    for bad in ({"nms_iou": 7}, {"nms": 0.3}):
        with pytest.raises(ValueError, match="thresholds"):
            update_meta(ckpt, thresholds=bad)
    assert ckpt.read_bytes() == before
    assert read_meta(ckpt).thresholds == Thresholds(0.4, 0.6, 0.8, True)


def test_the_cli_overrides_the_checkpoints_thresholds_flag_by_flag() -> None:
    checkpoint = Thresholds(0.65, 0.3, 0.65, True)

    def resolved(*flags: str) -> Thresholds:
        return _thresholds(build_parser().parse_args(["evaluate", "--data", "D", *flags]), checkpoint)

    assert resolved() == checkpoint
    assert resolved("--nms-iou", "0.5", "--no-class-agnostic") == Thresholds(0.65, 0.5, 0.65, False)
    assert resolved("--number-threshold", "0.9") == Thresholds(0.65, 0.3, 0.9, True)
    with pytest.raises(ValueError, match=r"thresholds.nms_iou should be a number in \[0, 1\], got 7.0"):
        resolved("--nms-iou", "7")


def test_pred_csv_does_not_depend_on_pred_jsons_score_floor(tiny_hw2: Path, tiny_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    update_meta(ckpt, thresholds={"number_score": 0.02})  # an untrained model: low scores
    common = ["predict", "--checkpoint", str(ckpt), "--images", str(tiny_hw2 / "valid"), "--no-progress",
              "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "low")]) == 0
    assert main([*common, "--out", str(tmp_path / "high"), "--score-floor", "0.5"]) == 0
    low, high = ((tmp_path / name / "pred.csv").read_text() for name in ("low", "high"))
    assert any(line.split(",")[1] != "-1" for line in low.splitlines()[1:])  # numbers were read
    assert high == low
    assert all(r["score"] >= 0.5 for r in json.loads((tmp_path / "high" / "pred.json").read_text()))


def _dets(*boxes: tuple[float, int, float]) -> Detections:
    """(left x, category id, score) of 10 x 30 px boxes."""
    return Detections(torch.tensor([[x, 5.0, x + 10, 35.0] for x, _, _ in boxes]),
                      torch.tensor([s for _, _, s in boxes]), torch.tensor([c for _, c, _ in boxes]))


def test_per_digit_number_thresholds_read_a_timid_digit_and_default_to_the_global_one() -> None:
    final = _dets((10, 2, 0.55), (30, 8, 0.9), (50, 9, 0.6))  # a '1' at 0.55, a '7' at 0.9, an '8' at 0.6
    plain = Thresholds(number_score=0.7)
    assert plain.number(final).text == "7"
    per_digit = plain.with_number_scores({1: 0.5})  # digit 1 reads from 0.5; 7 and 8 keep 0.7
    assert per_digit.number(final).text == "17"
    assert per_digit.number_score_of(2) == 0.5 and per_digit.number_score_of(9) == 0.7
    assert per_digit.lowest_number_score == 0.5 and plain.lowest_number_score == 0.7
    assert per_digit.override(per_digit=False) == plain
    assert per_digit.override(number_score=0.95).number(final).text == "1"  # the flag moves only the global cut


def test_per_digit_thresholds_round_trip_through_json_and_bad_ones_name_the_digit() -> None:
    t = Thresholds(0.65, 0.3, 0.65, True, number_score_by_digit={"7": 0.55, 1: 0.8})
    assert t.number_score_by_digit == ((1, 0.8), (7, 0.55))
    stored = json.loads(json.dumps(t.to_dict()))
    assert stored["number_score_by_digit"] == {"1": 0.8, "7": 0.55}
    assert Thresholds.from_dict(stored) == t and hash(Thresholds.from_dict(stored)) == hash(t)
    assert "number_score_by_digit" not in Thresholds().to_dict()  # older checkpoints' JSON stays as it was
    for bad, message in (({"x": 0.5}, "'x' is no digit"), ({"12": 0.5}, "'12' is no digit"),
                         ({"3": 1.5}, "digit 3 has 1.5"), ({"3": None}, "digit 3 has None"), (0.5, "got 0.5"),
                         ({"3": 0.5, 3: 0.6}, "digit 3 is given twice")):
        with pytest.raises(ValueError, match=f"thresholds.number_score_by_digit should map digits 0-9.*{message}"):
            Thresholds.from_dict({"number_score_by_digit": bad})


def test_scoring_keeps_boxes_down_to_the_lowest_per_digit_threshold() -> None:
    """score_candidates runs NMS once at the lowest cut anything needs; a digit's own lower cut is one of them."""
    record = ImageRecord(1, "1.png", 100, 50, Path("."), np.array([[10, 5, 20, 35], [30, 5, 40, 35]], np.float32),
                         np.array([2, 8]))
    candidates = {1: _dets((10, 2, 0.55), (30, 8, 0.9))}
    t = Thresholds(score=0.7, number_score=0.7).with_number_scores({1: 0.5})
    assert score_candidates([record], candidates, t, map_floor=0.6).number_accuracy == 1.0
    assert score_candidates([record], candidates, t.override(per_digit=False), map_floor=0.6).number_accuracy == 0.0


def test_predict_reads_numbers_at_the_checkpoints_per_digit_thresholds(tiny_hw2: Path, tiny_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    """A checkpoint whose global number threshold reads nothing (1.0) but whose every digit has its own cut of 0:
    pred.csv reads every box, as a global 0 would, unless --no-per-digit."""
    ckpt = tmp_path / "ckpt.safetensors"
    update_meta(tiny_checkpoint, to=ckpt,
                thresholds={"number_score": 1.0, "number_score_by_digit": {str(d): 0.0 for d in range(10)}})
    common = ["predict", "--checkpoint", str(ckpt), "--images", str(tiny_hw2 / "valid"), "--no-progress",
              "--device", "cpu", "--score-floor", "0.5"]  # pred.json's floor: NMS must still keep the boxes below
    runs = {"per_digit": [], "global_0": ["--number-threshold", "0", "--no-per-digit"], "off": ["--no-per-digit"]}
    for name, flags in runs.items():
        assert main([*common, "--out", str(tmp_path / name), *flags]) == 0
    csv = {name: (tmp_path / name / "pred.csv").read_text().splitlines()[1:] for name in runs}
    assert csv["per_digit"] == csv["global_0"] and any(line.split(",")[1] != "-1" for line in csv["per_digit"])
    assert all(line.endswith(",-1") for line in csv["off"])
