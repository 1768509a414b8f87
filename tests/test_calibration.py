"""Threshold calibration (detector.calibration) picks the score threshold, NMS mode and per-digit number
thresholds that read numbers best: after training, from the CLI and from the app."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.calibration import MIN_DIGIT_COUNT, MIN_GAIN, MIN_GAIN_SHARE, calibrate
from detector.checkpoint import read_meta
from detector.cli import main
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.thresholds import Thresholds
from training.config import resolve
from training.evaluate import calibrate_thresholds


def _record(image_id: int, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(image_id=image_id, file_name=f"{image_id}.png", width=100, height=50, path=Path("."),
                       boxes=np.array(boxes, dtype=np.float32), category_ids=np.array(labels, dtype=np.int64))


def test_calibration_prefers_class_agnostic_nms_when_a_digit_gets_two_classes() -> None:
    # digit "1" (category 2) at x 10..20 also scored as "7" (category 8) on the same box; digit "4" at 40..50
    record = _record(1, [[10, 5, 20, 45], [40, 5, 50, 45]], [2, 5])
    candidates = {1: Detections(torch.tensor([[10.0, 5, 20, 45], [10.5, 5, 20.5, 45], [40, 5, 50, 45]]),
                                torch.tensor([0.95, 0.92, 0.90]), torch.tensor([2, 8, 5]))}
    config = resolve({"data": "unused", "preset": "resnet18"})
    calibration = calibrate_thresholds([record], candidates, config)
    thresholds, points = calibration.thresholds, calibration.points()
    assert thresholds.class_agnostic is True
    assert thresholds.number_score <= 0.9  # no score cut alone separates the "7" (0.92) from the "4" (0.90)
    assert max(p["number_accuracy"] for p in points) == 1.0

    # without the confusing second box, the run's own (class-aware) setting is kept
    plain = {1: candidates[1].select(torch.tensor([0, 2]))}
    thresholds = calibrate_thresholds([record], plain, config).thresholds
    assert thresholds.class_agnostic is config.class_agnostic and thresholds.nms_iou == config.val_nms


def _timid_ones(n_ones: int, n_clutter: int) -> tuple[list[ImageRecord], dict[int, Detections]]:
    """Numbers "14" whose '1' the model scores 0.45, and numbers "23" beside a background '8' scored 0.6.

    No global threshold reads both: <= 0.45 reads the 8s too, above 0.6 loses the 1s (best: the 23s alone).
    """
    records, candidates = [], {}
    for i in range(1, n_ones + n_clutter + 1):
        ones = i <= n_ones
        labels = [2, 5] if ones else [3, 4]  # "14" / "23" as category ids
        records.append(_record(i, [[10, 5, 20, 45], [30, 5, 40, 45]], labels))
        boxes, scores = [[10.0, 5, 20, 45], [30, 5, 40, 45]], [0.45 if ones else 0.9, 0.9]
        if not ones:
            boxes.append([70, 5, 80, 45])
            scores.append(0.6)
        candidates[i] = Detections(torch.tensor(boxes), torch.tensor(scores),
                                   torch.tensor(labels + ([] if ones else [9])))
    return records, candidates


def test_per_digit_calibration_gives_a_timid_digit_its_own_threshold() -> None:
    records, candidates = _timid_ones(60, 80)
    result = calibrate(records, candidates, Thresholds())
    assert result.accuracy_global == pytest.approx(80 / 140) and result.thresholds.number_score > 0.6
    assert [d for d, _ in result.thresholds.number_score_by_digit] == [1]  # only the 1s; the 8 needs nothing
    assert dict(result.thresholds.number_score_by_digit)[1] <= 0.45
    assert result.accuracy == 1.0
    assert result.summary()["thresholds"]["number_score_by_digit"] == {"1": dict(result.thresholds.number_score_by_digit)[1]}
    assert calibrate(records, candidates, Thresholds(), per_digit=False).thresholds.number_score_by_digit == ()


def test_a_digit_seen_too_rarely_or_gaining_too_little_keeps_the_global_threshold() -> None:
    records, candidates = _timid_ones(30, 80)  # 30 ones: fewer than MIN_DIGIT_COUNT
    assert 30 < MIN_DIGIT_COUNT
    assert calibrate(records, candidates, Thresholds()).thresholds.number_score_by_digit == ()
    assert calibrate(records, candidates, Thresholds(), min_count=30).thresholds.number_score_by_digit != ()
    records, candidates = _timid_ones(1, 80)  # one more number right is below MIN_GAIN
    assert MIN_GAIN > 1
    assert calibrate(records, candidates, Thresholds(), min_count=1).thresholds.number_score_by_digit == ()
    records, candidates = _timid_ones(3, 400)  # 3 more of 403 numbers: below MIN_GAIN_SHARE of the split
    assert 3 < MIN_GAIN_SHARE * 403
    result = calibrate(records, candidates, Thresholds(), min_count=1)
    assert result.thresholds.number_score_by_digit == () and result.summary()["min_gain"] == 5
    assert calibrate(records, candidates, Thresholds(), min_count=1, min_gain=3).thresholds.number_score_by_digit


def test_cli_calibrate_writes_a_calibrated_copy_and_leaves_the_checkpoint(tiny_hw2: Path, tiny_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    before = ckpt.read_bytes()
    common = ["calibrate", "--checkpoint", str(ckpt), "--data", str(tiny_hw2), "--device", "cpu", "--no-progress"]
    assert main(common) == 0
    assert ckpt.read_bytes() == before
    meta = read_meta(tmp_path / "model.calibrated.safetensors")
    calibration = meta.metrics["calibration"]
    assert calibration["images"] == 3 and calibration["split"] == "valid"
    assert meta.thresholds.to_dict() == calibration["thresholds"]
    assert meta.thresholds.number_score_by_digit == ()  # three images: no digit has MIN_DIGIT_COUNT boxes
    assert main([*common, "--out", str(ckpt)]) == 2  # never over the checkpoint itself
    assert ckpt.read_bytes() == before
