"""detector.label_quality on constructed splits (labels + raw candidates as the predictor returns them), and
training.label_noise's planted errors checked against what it promises."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.label_quality import LABEL_KINDS, find_label_suspects, image_evidence, judge_labels
from training.label_noise import BADLY_LOCATED_IOU, ERROR_KINDS, SPURIOUS_MAX_IOU, plant_label_errors


def _row(rng: np.random.Generator, n: int, width: float = 120.0, height: float = 60.0) -> np.ndarray:
    """n touching digit boxes in a row, as SVHN draws them."""
    w, h = rng.uniform(14, 20), rng.uniform(28, 40)
    x0, y0 = rng.uniform(4, width - n * w - 4), rng.uniform(4, height - h - 4)
    return np.array([[x0 + k * w, y0, x0 + (k + 1) * w, y0 + h] for k in range(n)], dtype=np.float32)


def _candidates(rng: np.random.Generator, boxes: np.ndarray, labels: np.ndarray) -> Detections:
    """What a decent model returns with NMS off: per digit a few jittered boxes of its class (high scores) and of
    two other classes (low scores), plus some low-scored clutter."""
    out_boxes, scores, classes = [], [], []
    for box, label in zip(boxes, labels, strict=True):
        w, h = box[2] - box[0], box[3] - box[1]
        for _ in range(4):
            out_boxes.append(box + rng.normal(0, 0.04, 4) * [w, h, w, h])
            scores.append(rng.uniform(0.85, 0.99))
            classes.append(int(label))
        for other in rng.choice([c for c in range(1, 11) if c != label], 2, replace=False):
            out_boxes.append(box + rng.normal(0, 0.04, 4) * [w, h, w, h])
            scores.append(rng.uniform(0.01, 0.08))
            classes.append(int(other))
    for _ in range(3):
        x, y = rng.uniform(0, 100), rng.uniform(0, 40)
        out_boxes.append([x, y, x + rng.uniform(5, 20), y + rng.uniform(10, 20)])
        scores.append(rng.uniform(0.01, 0.1))
        classes.append(int(rng.integers(1, 11)))
    return Detections(torch.tensor(np.array(out_boxes), dtype=torch.float32), torch.tensor(scores, dtype=torch.float32),
                      torch.tensor(classes, dtype=torch.int64))


def _record(image_id: int, boxes: np.ndarray, labels: np.ndarray) -> ImageRecord:
    return ImageRecord(image_id, f"{image_id}.png", 120, 60, Path(f"{image_id}.png"), boxes.astype(np.float32),
                       np.asarray(labels, dtype=np.int64))


def _split(n_clean: int = 30, seed: int = 0) -> tuple[list[ImageRecord], dict[int, Detections], dict[str, dict]]:
    """Clean images plus one image per error kind; returns the records, candidates and what is wrong where."""
    rng = np.random.default_rng(seed)
    records, candidates, truth = [], {}, {}
    for image_id in range(1, n_clean + 5):
        boxes = _row(rng, int(rng.integers(2, 5)))
        labels = rng.integers(1, 11, len(boxes))
        candidates[image_id] = _candidates(rng, boxes, labels)
        kind = {n_clean + 1: "swapped_class", n_clean + 2: "badly_located", n_clean + 3: "spurious_box",
                n_clean + 4: "missing_box"}.get(image_id)
        gt_boxes, gt_labels = boxes.copy(), labels.copy()
        if kind == "swapped_class":
            gt_labels[1] = labels[1] % 10 + 1
            truth[kind] = {"image_id": image_id, "gt_index": 1, "label": int(labels[1])}
        elif kind == "badly_located":
            w = boxes[0, 2] - boxes[0, 0]
            gt_boxes[0] = boxes[0] + [0.45 * w, 0, 0.45 * w, 0]  # IoU with the digit: 0.38
            truth[kind] = {"image_id": image_id, "gt_index": 0, "box": boxes[0]}
        elif kind == "spurious_box":
            gt_boxes = np.concatenate([boxes, [[2, 2, 12, 20]]]).astype(np.float32)  # where nothing is drawn
            gt_labels = np.append(labels, 4)
            truth[kind] = {"image_id": image_id, "gt_index": len(boxes)}
        elif kind == "missing_box":
            gt_boxes, gt_labels = boxes[1:], labels[1:]
            truth[kind] = {"image_id": image_id, "gt_index": -1, "box": boxes[0], "label": int(labels[0])}
        records.append(_record(image_id, gt_boxes, gt_labels))
    return records, candidates, truth


def test_each_kind_is_found_first_with_its_fix() -> None:
    records, candidates, truth = _split()
    top = find_label_suspects(records, candidates)[:4]
    assert {s.kind for s in top} == set(LABEL_KINDS)
    for s in top:
        expected = truth[s.kind]
        assert (s.image_id, s.gt_index) == (expected["image_id"], expected["gt_index"]), s
        assert 0.0 < s.confidence <= 1.0
        if s.kind == "swapped_class":
            assert s.category_id == expected["label"]  # the class the model sees
        if s.kind in ("badly_located", "missing_box"):
            assert box_iou(torch.tensor([s.box]), torch.tensor(expected["box"][None]))[0, 0] > 0.85
        if s.kind == "missing_box":
            assert s.category_id == expected["label"]
    if_spurious = next(s for s in top if s.kind == "spurious_box")
    spurious_record = next(r for r in records if r.image_id == if_spurious.image_id)
    assert if_spurious.box == tuple(float(v) for v in spurious_record.boxes[if_spurious.gt_index])  # delete that box


def test_error_images_outrank_every_clean_image() -> None:
    records, candidates, truth = _split(seed=1)
    scores = {j.image_id: j.score for j in judge_labels(records, candidates)}
    wrong = {t["image_id"] for t in truth.values()}
    assert min(scores[i] for i in wrong) > max(s for i, s in scores.items() if i not in wrong)


def test_a_confident_model_that_disagrees_on_class_is_not_a_box_problem() -> None:
    """The swapped label sits exactly on the digit: localisation and presence must look fine."""
    records, candidates, truth = _split(seed=2)
    t = truth["swapped_class"]
    r = next(r for r in records if r.image_id == t["image_id"])
    e = image_evidence(r.boxes, r.category_ids, candidates[r.image_id], r.image_id)
    g = t["gt_index"]
    assert e.swap[g] > 0.8 and e.swap_label[g] == t["label"]
    assert e.spurious[g] < 0.2  # candidates of another class are still evidence of a digit
    others = np.arange(len(r.category_ids)) != g
    assert (e.swap[others] < 0.2).all()


def test_images_without_labels_or_candidates() -> None:
    rng = np.random.default_rng(3)
    boxes = _row(rng, 3)
    labels = np.array([2, 5, 9])
    no_labels = image_evidence(np.zeros((0, 4)), np.zeros(0), _candidates(rng, boxes, labels))
    assert len(no_labels.swap) == 0 and len(no_labels.missing) >= 3  # every digit is unexplained
    assert set(no_labels.missing_labels[no_labels.missing > 0.5].tolist()) == {2, 5, 9}
    nothing = image_evidence(boxes, labels, Detections.empty())
    assert (nothing.spurious > 0).all() and (nothing.swap == 0).all() and len(nothing.missing) == 0
    assert ((nothing.swap_label >= 1) & (nothing.swap_label <= 10)).all()  # never background, even with no evidence
    assert (nothing.fit_score == 0).all() and np.allclose(nothing.fit_box, boxes)
    records = [_record(1, boxes, labels), _record(2, np.zeros((0, 4)), np.zeros(0))]
    judged = judge_labels(records, {1: Detections.empty(), 2: Detections.empty()})
    assert [len(j.gt_score) for j in judged] == [3, 0] and judged[1].score == 0.0


def _layout_records(n: int, seed: int) -> list[ImageRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for image_id in range(1, n + 1):
        width, height = int(rng.integers(90, 200)), int(rng.integers(50, 90))
        boxes = _row(rng, int(rng.integers(1, 5)), width, height)
        out.append(ImageRecord(image_id, f"{image_id}.png", width, height, Path(f"{image_id}.png"), boxes,
                               rng.integers(1, 11, len(boxes)).astype(np.int64)))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(torch.tensor(a, dtype=torch.float64)[None], torch.tensor(b, dtype=torch.float64)[None])[0, 0])


def _inside(box: np.ndarray, r: ImageRecord) -> bool:
    return bool(0 <= box[0] < box[2] <= r.width and 0 <= box[1] < box[3] <= r.height)


def test_planted_errors_are_what_they_claim() -> None:
    records = _layout_records(300, seed=4)
    n_boxes = sum(len(r.category_ids) for r in records)
    rate = 20.6 / n_boxes  # 20.6 boxes' worth: 21 of each kind
    noisy, planted = plant_label_errors(records, rate=rate, seed=5)
    assert [sum(e.kind == k for e in planted) for k in ERROR_KINDS] == [21] * 4
    assert len({e.image_id for e in planted}) == len(planted)  # one error per image
    by_id = {r.image_id: r for r in records}
    touched = {e.image_id for e in planted}
    for before, after in zip(records, noisy, strict=True):
        assert after.image_id == before.image_id
        if before.image_id not in touched:
            assert np.array_equal(after.boxes, before.boxes) and np.array_equal(after.category_ids, before.category_ids)
    hows = set()
    for e in planted:
        before, after = by_id[e.image_id], noisy[[r.image_id for r in noisy].index(e.image_id)]
        if e.kind == "swapped_class":
            assert np.array_equal(after.boxes, before.boxes)
            assert after.category_ids[e.gt_index] != before.category_ids[e.gt_index] == e.true_category_id
            assert (np.delete(after.category_ids, e.gt_index) == np.delete(before.category_ids, e.gt_index)).all()
        elif e.kind == "badly_located":
            hows.add(e.how)
            assert np.array_equal(after.category_ids, before.category_ids)
            assert BADLY_LOCATED_IOU[0] <= _iou(after.boxes[e.gt_index], before.boxes[e.gt_index]) <= BADLY_LOCATED_IOU[1]
            assert _inside(after.boxes[e.gt_index], before)
            assert np.array_equal(np.delete(after.boxes, e.gt_index, 0), np.delete(before.boxes, e.gt_index, 0))
        elif e.kind == "missing_box":
            assert e.gt_index == -1 and len(after.boxes) == len(before.boxes) - 1
            assert not any(np.array_equal(b, np.asarray(e.true_box, np.float32)) for b in after.boxes)
        else:
            assert e.kind == "spurious_box" and len(after.boxes) == len(before.boxes) + 1 == e.gt_index + 1
            new = after.boxes[e.gt_index]
            assert _inside(new, before) and 1 <= after.category_ids[e.gt_index] <= 10
            assert max(_iou(new, b) for b in before.boxes) <= SPURIOUS_MAX_IOU
    assert hows == {"shift", "resize"}
    again, planted_again = plant_label_errors(records, rate=rate, seed=5)
    assert planted_again == planted  # a seed plants the same errors


def test_planting_refuses_what_cannot_be_done() -> None:
    records = _layout_records(20, seed=6)
    with pytest.raises(ValueError, match="lower --rate"):
        plant_label_errors(records, rate=0.2, seed=0)
    with pytest.raises(ValueError, match="rate"):
        plant_label_errors(records, rate=0.0)
    with pytest.raises(ValueError, match="iou_range"):
        plant_label_errors(records, iou_range=(0.6, 0.3))
    assert plant_label_errors([replace(r, boxes=r.boxes[:0], category_ids=r.category_ids[:0]) for r in records])[1] == []
