"""detector.tide: TIDE's error decomposition, on hand-built cases whose dAP follows from the definitions.

Measured once against tidecv 1.0.1 itself (a scratch venv; tidecv is not a dependency: it pulls opencv-python,
which clashes with our opencv-python-headless) on the shipped validation set (assets/, 48 images, 105 digits)
with the then shipped default's (stage C's) predictions at its NMS (IoU 0.3, class-agnostic):
- every box down to score 0.05 (122 boxes, what mAP counts): tidecv AP50 86.5347, dAP Cls 8.0198, Loc 1.4851,
  Both 0.4950, Dupe 0.0000, Bkg 0.3713, Miss 2.3762, FalsePos 1.4851, FalseNeg 11.6238; errors Cls 10, Loc 3,
  Both 5, Dupe 0, Bkg 10, Miss 2;
- the boxes at its score threshold 0.65 (98 boxes): AP50 85.0495, Cls 1.5842, Loc 0, Both 0.4950, Dupe 0,
  Bkg 0, Miss 12.7723, FalsePos 0.4950, FalseNeg 14.4554.
Ours gave the same figures and counts (largest difference 1.4e-14, summation order), and agreed within 3e-14
on 30 random sets with tied scores, images without ground truth and classes without ground truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.coco_eval import evaluate_coco
from detector.detections import Detections
from detector.hw2 import ImageRecord, records_to_coco
from detector.tide import ERROR_KINDS, tide

H = 30  # every box is 10 x 30 px


def box(x: float, y: float = 5) -> list[float]:
    return [x, y, x + 10, y + H]


def record(image_id: int, gt: list[tuple[float, int]]) -> ImageRecord:
    """Ground truth as (left x, category id) pairs."""
    return ImageRecord(image_id, f"{image_id}.png", 100, 50, Path("."),
                       np.array([box(x) for x, _ in gt], dtype=np.float32).reshape(-1, 4),
                       np.array([c for _, c in gt], dtype=np.int64))


def dets(*preds: tuple[float, int, float]) -> Detections:
    """Predictions as (left x, category id, score)."""
    if not preds:
        return Detections.empty()
    return Detections(torch.tensor([box(x) for x, _, _ in preds]), torch.tensor([s for _, _, s in preds]),
                      torch.tensor([c for _, c, _ in preds]))


# Per-class AP of the patterns used below (101 recall levels 0, 0.01, ..., 1):
TFT_OF_2 = (51 + 50 * 2 / 3) / 101  # true, false, true positive with 2 ground truths: recall 0.5 at precision 1, then 2/3
TT_OF_3 = 67 / 101  # two true positives of 3 ground truths: precision 1 up to recall 2/3
TFT_OF_3 = (34 + 33 * 2 / 3) / 101  # true, false, true with 3 ground truths


CASES = {
    # kind: (records, detections, {kind: expected dAP}, expected error counts)
    "Dupe": ([record(1, [(10, 1), (50, 1)])],
             {1: dets((10, 1, 0.9), (11, 1, 0.8), (50, 1, 0.7))},  # a second box on the first digit
             {"Dupe": 1 - TFT_OF_2}),
    "Bkg": ([record(1, [(10, 1), (50, 1)])],
            {1: dets((10, 1, 0.9), (85, 1, 0.8), (50, 1, 0.7))},  # on nothing
            {"Bkg": 1 - TFT_OF_2}),
    "Loc": ([record(1, [(10, 1), (30, 1), (50, 1)])],
            {1: dets((10, 1, 0.9), (35, 1, 0.8), (50, 1, 0.7))},  # right digit, IoU 1/3: fixed into a true positive
            {"Loc": 1 - TFT_OF_3}),
    "Miss": ([record(1, [(10, 1), (30, 1), (50, 1)])],
             {1: dets((10, 1, 0.9), (50, 1, 0.7))},  # nothing on the middle digit
             {"Miss": 1 - TT_OF_3}),
    # A '3' box (category 4) sits exactly on a '2' (category 3). Category 3: two of three found (TT_OF_3); category 4
    # (two digits in image 2) has the false positive between its true positives (TFT_OF_2). Fixing turns it into
    # category 3's third true positive: both classes reach AP 1.
    "Cls": ([record(1, [(10, 3), (30, 3), (50, 3)]), record(2, [(10, 4), (50, 4)])],
            {1: dets((10, 3, 0.9), (30, 4, 0.8), (50, 3, 0.7)), 2: dets((10, 4, 0.9), (50, 4, 0.7))},
            {"Cls": 1 - (TT_OF_3 + TFT_OF_2) / 2}),
    # A '3' box half off a '2' (IoU 1/3, other class): wrong class and poorly placed. Only category 4 pays.
    "Both": ([record(1, [(10, 3), (50, 3)]), record(2, [(10, 4), (50, 4)])],
             {1: dets((10, 3, 0.9), (15, 4, 0.8), (50, 3, 0.7)), 2: dets((10, 4, 0.9), (50, 4, 0.7))},
             {"Both": (1 - TFT_OF_2) / 2}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_fixing_one_kind_gains_what_the_definition_says_and_the_others_nothing(kind: str) -> None:
    records, detections, expected = CASES[kind]
    result = tide(records, detections)
    assert result.counts() == {k: int(k == kind) for k in ERROR_KINDS}
    assert result.delta_ap == pytest.approx({k: expected.get(k, 0.0) for k in ERROR_KINDS}, abs=1e-12)
    assert [(e.kind, e.image_id) for e in result.errors] == [(kind, 1)]


def test_of_two_errors_on_one_digit_only_the_higher_scored_is_fixed() -> None:
    """Two poorly placed boxes on the middle digit: fixing makes the 0.85 one a true positive and drops the 0.8 one
    (fixing both would reach AP 1 past the background box at 0.75)."""
    records = [record(1, [(10, 1), (30, 1), (50, 1)])]
    detections = {1: dets((10, 1, 0.9), (35, 1, 0.85), (25, 1, 0.8), (85, 1, 0.75), (50, 1, 0.7))}
    result = tide(records, detections)
    # true, false x3, true of 3 digits: precision 1 to recall 1/3, then 2/5 to 2/3
    base = (34 + 33 * 0.4) / 101
    assert result.ap == pytest.approx(base)
    assert result.counts() == {"Cls": 0, "Loc": 2, "Both": 0, "Dupe": 0, "Bkg": 1, "Miss": 0}  # not missed: recoverable
    # fixed: true, true, false (background), true: precision 1 to recall 2/3, then 3/4
    assert result.delta_ap["Loc"] == pytest.approx((67 + 34 * 0.75) / 101 - base)
    # the special errors: perfect precision puts the false positives last; perfect recall drops the middle digit
    assert result.special["FalsePos"] == pytest.approx(TT_OF_3 - base)
    assert result.special["FalseNeg"] == pytest.approx((51 + 50 * 0.4) / 101 - base)


def test_kinds_are_tested_in_tidecvs_order() -> None:
    """Poor localisation is tested before wrong class (detector.matching decides the other way round), a box on a
    digit already found is a duplicate, and every box of an image without digits is background."""
    records = [record(1, [(10, 1), (40, 2)]), record(2, [])]
    detections = {1: dets((10, 1, 0.9), (40, 2, 0.9),
                          (46, 1, 0.6),  # IoU 0.25 with the '1' (another class), 0 with its own: both
                          (13, 1, 0.5),  # IoU 0.54 with the '0' already found: duplicate
                          (37, 1, 0.4)),  # IoU 0.54 with the '1' (wrong class), IoU 0 with its own class's '0'
                  2: dets((10, 5, 0.99))}
    kinds = {(e.image_id, e.pred): e.kind for e in tide(records, detections).errors}
    assert kinds == {(1, 2): "Both", (1, 3): "Dupe", (1, 4): "Cls", (2, 0): "Bkg"}
    # a '0' box at IoU 0.18 with the '0' and 0.54 with the '1': Loc, because Loc is tested before Cls
    records = [record(1, [(10, 1), (20, 2)])]
    detections = {1: dets((10, 1, 0.9), (20, 2, 0.9), (17, 1, 0.5))}
    assert [e.kind for e in tide(records, detections).errors] == ["Loc"]


def test_ap_is_cocos_ap50_when_every_class_has_ground_truth() -> None:
    """The same AP as pycocotools' AP50 (through detector.coco_eval) on a random set without tied scores."""
    rng = np.random.default_rng(3)
    records, detections = [], {}
    for image_id in range(1, 31):
        gt = [(5 + 22 * k, int(rng.integers(1, 11))) for k in range(int(rng.integers(1, 4)))]
        records.append(record(image_id, gt))
        preds = []
        for x, c in gt:
            for _ in range(int(rng.integers(0, 3))):
                preds.append((x + float(rng.normal(0, 3)), c if rng.random() < 0.8 else int(rng.integers(1, 11)),
                              float(rng.random())))
        detections[image_id] = dets(*preds)
    covered = {c for r in records for c in r.category_ids.tolist()}
    assert covered == set(range(1, 11)), "every class needs a ground truth for COCO and TIDE to average alike"
    coco = evaluate_coco(records_to_coco(records), detections, backend="pycocotools")
    assert tide(records, detections).ap == pytest.approx(coco["AP50"], abs=1e-9)


def test_a_class_with_predictions_and_no_ground_truth_counts_as_zero_as_in_tidecv() -> None:
    records = [record(1, [(10, 1)])]
    result = tide(records, {1: dets((10, 1, 0.9), (60, 7, 0.8))})
    assert result.ap == pytest.approx(0.5)  # category 1: AP 1; category 7: only a false positive, AP 0
    assert result.delta_ap["Bkg"] == pytest.approx(0.5)  # removed, category 7 is no class any more


def test_images_without_predictions_miss_every_digit_and_by_image_lists_errors() -> None:
    records = [record(1, [(10, 1), (30, 2)]), record(2, [(10, 3)])]
    result = tide(records, {1: Detections.empty(), 2: dets((10, 3, 0.9))})
    assert result.counts()["Miss"] == 2 and result.ap == pytest.approx(1 / 3)
    assert sorted(result.by_image) == [1] and {e.gt for e in result.by_image[1]} == {0, 1}
    with pytest.raises(KeyError, match="no detections for 1 of 2 images"):
        tide(records, {2: dets((10, 3, 0.9))})
