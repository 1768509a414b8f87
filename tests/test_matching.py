from pathlib import Path

import numpy as np
import pytest
import torch

from detector.categories import digit_to_category
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import (
    BACKGROUND_INDEX,
    confusion_matrix,
    find_annotation_suspects,
    match_image,
    match_records,
)

# Two ground-truth digits, "3" then "7", 20 x 40 px each.
GT_BOXES = np.array([[10, 10, 30, 50], [40, 10, 60, 50]], dtype=np.float32)
GT_LABELS = np.array([digit_to_category(3), digit_to_category(7)])


def preds(rows: list[tuple[list[float], float, int]]) -> Detections:
    """(xyxy box, score, digit) rows."""
    return Detections(torch.tensor([b for b, _, _ in rows], dtype=torch.float32).reshape(-1, 4),
                      torch.tensor([s for _, s, _ in rows], dtype=torch.float32),
                      torch.tensor([digit_to_category(d) for _, _, d in rows], dtype=torch.int64))


def test_every_kind_on_one_image():
    m = match_image(preds([
        ([10, 10, 30, 50], 0.95, 3),    # exact on GT 0 -> correct
        ([11, 10, 31, 50], 0.90, 3),    # same GT, same class, lower score -> duplicate
        ([40, 10, 60, 50], 0.85, 1),    # exact on GT 1, digit 1 not 7 -> wrong_class
        ([40, 10, 50, 20], 0.80, 7),    # IoU 0.125 with GT 1 -> poor_localisation
        ([100, 100, 120, 140], 0.75, 5),  # nowhere near -> background
    ]), GT_BOXES, GT_LABELS, image_id=4)
    assert m.kinds == ["correct", "duplicate", "wrong_class", "poor_localisation", "background"]
    assert m.gt_index.tolist() == [0, 0, 1, 1, -1]
    assert m.iou[0] == pytest.approx(1.0) and m.iou[3] == pytest.approx(0.125) and m.iou[4] == 0.0
    assert m.gt_matched_by.tolist() == [0, -1] and m.missed.tolist() == [1]
    assert m.counts == {"correct": 1, "wrong_class": 1, "poor_localisation": 1, "duplicate": 1,
                        "background": 1, "missed": 1}
    assert m.number_read == "33715" and m.number_true == "37" and not m.number_correct


def test_greedy_by_score_not_input_order():
    # The lower-scored box comes first in the input but must not take the GT.
    m = match_image(preds([([12, 10, 32, 50], 0.6, 3), ([10, 10, 30, 50], 0.9, 3)]), GT_BOXES[:1], GT_LABELS[:1])
    assert m.kinds == ["duplicate", "correct"] and m.gt_matched_by.tolist() == [1]


def test_same_class_match_prefers_a_free_gt():
    # Two overlapping "3"s; the second prediction fits the taken GT best (IoU 0.74) but the free one too (0.6).
    gt = np.array([[0, 0, 20, 40], [8, 0, 28, 40]], dtype=np.float32)
    labels = np.array([digit_to_category(3)] * 2)
    m = match_image(preds([([0, 0, 20, 40], 0.9, 3), ([3, 0, 23, 40], 0.8, 3)]), gt, labels)
    assert m.kinds == ["correct", "correct"] and m.gt_matched_by.tolist() == [0, 1]


def test_perfect_image_has_zero_severity_and_reads_the_number():
    m = match_image(preds([([40, 10, 60, 50], 0.9, 7), ([10, 10, 30, 50], 0.8, 3)]), GT_BOXES, GT_LABELS)
    assert m.kinds == ["correct", "correct"] and m.missed.size == 0
    assert m.number_correct and m.severity == 0.0
    assert m.summary()["number_read"] == "37"


def test_no_ground_truth_and_no_predictions():
    only_bg = match_image(preds([([0, 0, 5, 5], 0.5, 1)]), np.zeros((0, 4)), np.zeros(0))
    assert only_bg.kinds == ["background"] and only_bg.number_true == "-1"
    nothing = match_image(Detections.empty(), GT_BOXES, GT_LABELS)
    assert nothing.kinds == [] and nothing.missed.tolist() == [0, 1] and nothing.number_read == "-1"
    both_empty = match_image(Detections.empty(), np.zeros((0, 4)), np.zeros(0))
    assert both_empty.number_correct and both_empty.severity == 0.0


def test_severity_ranks_confident_and_number_breaking_errors_higher():
    def severity(rows):
        return match_image(preds(rows), GT_BOXES, GT_LABELS).severity

    good = [([10, 10, 30, 50], 0.9, 3), ([40, 10, 60, 50], 0.9, 7)]
    wrong_digit = [([10, 10, 30, 50], 0.9, 3), ([40, 10, 60, 50], 0.9, 1)]
    assert severity(good) == 0.0
    assert severity(wrong_digit) > severity(good[:1]) > 10.0  # both break the number; one also adds a bad box
    assert severity(good + [([200, 0, 210, 20], 0.9, 1)]) > severity(good + [([200, 0, 210, 20], 0.2, 1)]) > 10.0


def test_match_records_uses_each_records_ground_truth():
    record = ImageRecord(image_id=9, file_name="9.png", width=80, height=60, path=Path("9.png"),
                         boxes=GT_BOXES, category_ids=GT_LABELS)
    (m,) = match_records([record], {9: preds([([10, 10, 30, 50], 0.9, 3)])})
    assert m.image_id == 9 and m.number_true == record.number == "37" and m.missed.tolist() == [1]
    with pytest.raises(KeyError, match="image ids \\[9\\]"):
        match_records([record], {})


def test_confusion_matrix_counts_each_gt_once():
    matches = [
        match_image(preds([([10, 10, 30, 50], 0.9, 3),       # 3 -> 3
                           ([40, 10, 60, 50], 0.8, 1),       # 7 -> 1 (wrong class)
                           ([41, 10, 61, 50], 0.7, 2),       # second wrong class on the same GT -> FP
                           ([100, 0, 120, 40], 0.6, 5)]),    # background FP of digit 5
                    GT_BOXES, GT_LABELS),
        match_image(Detections.empty(), GT_BOXES, GT_LABELS),  # both missed
    ]
    cm = confusion_matrix(matches)
    assert cm.shape == (11, 11)
    assert cm[3, 3] == 1 and cm[7, 1] == 1
    assert cm[3, BACKGROUND_INDEX] == 1 and cm[7, BACKGROUND_INDEX] == 1
    assert cm[BACKGROUND_INDEX, 2] == 1 and cm[BACKGROUND_INDEX, 5] == 1
    assert cm[:10].sum() == 4  # four GT boxes in all
    assert cm.sum() == 4 + 2  # plus two false positives


def test_annotation_suspects():
    gt = np.array([[10, 10, 30, 50], [40, 10, 60, 50], [70, 0, 110, 60]], dtype=np.float32)
    labels = np.array([digit_to_category(d) for d in (3, 7, 2)])
    m = match_image(preds([
        ([10, 10, 30, 50], 0.99, 3),     # agrees: no suspect
        ([40, 10, 60, 50], 0.97, 1),     # confident 1 on a GT "7" -> wrong_label
        ([75, 10, 100, 50], 0.95, 2),    # inside a GT box 2.4x its area -> loose_box
        ([130, 10, 150, 50], 0.93, 8),   # no GT near -> missing_annotation
        ([160, 10, 180, 50], 0.40, 9),   # not confident: ignored
    ]), gt, labels, image_id=12)
    found = find_annotation_suspects([m], min_score=0.9)
    assert [(s.kind, s.gt_index, s.category_id) for s in found] == [
        ("wrong_label", 1, digit_to_category(1)),
        ("loose_box", 2, digit_to_category(2)),
        ("missing_annotation", -1, digit_to_category(8)),
    ]
    assert found[0].box == tuple(gt[1].tolist()) and found[1].box == (75.0, 10.0, 100.0, 50.0)
    assert all(s.image_id == 12 for s in found) and found[0].confidence == pytest.approx(0.97)
    assert find_annotation_suspects([m], min_score=0.999) == []


def test_tight_box_suspect():
    gt = np.array([[20, 20, 30, 40]], dtype=np.float32)  # 200 px^2 inside a 500 px^2 prediction
    m = match_image(preds([([15, 15, 35, 40], 0.95, 4)]), gt, np.array([digit_to_category(4)]))
    (s,) = find_annotation_suspects([m])
    assert s.kind == "tight_box" and s.box == (15.0, 15.0, 35.0, 40.0)
