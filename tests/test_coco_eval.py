from pathlib import Path

import numpy as np
import pytest
import torch

from detector.categories import digit_to_category
from detector.coco_eval import STAT_NAMES, evaluate_coco, number_accuracy, sweep_score_threshold
from detector.detections import Detections
from detector.hw2 import ImageRecord, records_to_coco
from detector.results_io import PredictionFileError, detections_to_coco_results

BACKENDS = ["pycocotools", "faster_coco_eval"]


def make_records(n: int = 12, seed: int = 0) -> list[ImageRecord]:
    """House numbers of 1-4 digits in a row; digits 0-4 only, so classes 5-9 have no GT."""
    rng = np.random.default_rng(seed)
    records = []
    for image_id in range(1, n + 1):
        k = int(rng.integers(1, 5))
        h = float(rng.uniform(20, 60))
        x = np.cumsum(rng.uniform(0.5, 0.7, size=k) * h) + 5
        boxes = np.stack([x, np.full(k, 10.0), x + 0.45 * h, np.full(k, 10.0 + h)], axis=1).astype(np.float32)
        labels = np.array([digit_to_category(int(d)) for d in rng.integers(0, 5, size=k)], dtype=np.int64)
        records.append(ImageRecord(image_id, f"{image_id}.png", 400, 100, Path(f"{image_id}.png"), boxes, labels))
    return records


def as_detections(record: ImageRecord, shift: float = 0.0, score: float = 0.9) -> Detections:
    boxes = torch.from_numpy(record.boxes.copy())
    boxes[:, [0, 2]] += shift * (boxes[:, 2:3] - boxes[:, 0:1])  # shift by a fraction of the box width
    return Detections(boxes, torch.full((len(boxes),), score), torch.from_numpy(record.category_ids))


RECORDS = make_records()
GT = records_to_coco(RECORDS)
PERFECT = {r.image_id: as_detections(r) for r in RECORDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_predictions_score_one(backend):
    m = evaluate_coco(GT, PERFECT, backend=backend)
    assert list(m.stats) == list(STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AR10", "AR100", "AR_small", "AR_medium"):
        assert m[name] == pytest.approx(1.0), name
    assert m["AP_large"] == -1.0  # no GT box is large: undefined, as pycocotools says
    assert {c: v for c, v in m.per_class_ap.items() if v >= 0} == {c: pytest.approx(1.0) for c in range(1, 6)}
    assert all(m.per_class_ap[c] == -1.0 for c in range(6, 11))
    assert m.recall.shape == m.precision_50.shape == m.precision_mean.shape == (101,)
    assert np.allclose(m.precision_50, 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_boxes_lower_ap_but_not_ap50(backend):
    # A 15% shift of a box along x gives IoU 0.85/1.15 = 0.74: a hit at IoU 0.5, a miss from 0.75 up.
    shifted = {r.image_id: as_detections(r, shift=0.15) for r in RECORDS}
    m = evaluate_coco(GT, shifted, backend=backend)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(0.0)
    assert 0.0 < m["AP"] < 1.0
    assert m.precision_mean[0] < 1.0 and m.precision_50[0] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_predictions_give_zero_without_crashing(backend):
    for empty in ({r.image_id: Detections.empty() for r in RECORDS}, {}, []):
        m = evaluate_coco(GT, empty, backend=backend)
        assert all(m[name] in (0.0, -1.0) for name in STAT_NAMES)
        assert m["AP"] == 0.0 and m["AR100"] == 0.0 and not np.any(m.precision_50 > 0)


def test_backends_agree_and_records_equal_detections():
    rng = np.random.default_rng(1)
    noisy = {}
    for r in RECORDS:
        d = as_detections(r, shift=float(rng.uniform(-0.3, 0.3)), score=float(rng.uniform(0.2, 1)))
        d.labels[0] = digit_to_category(int(rng.integers(0, 10)))
        noisy[r.image_id] = d
    ours = evaluate_coco(GT, noisy, backend="pycocotools")
    theirs = evaluate_coco(GT, detections_to_coco_results(noisy), backend="faster_coco_eval")
    assert 0.1 < ours["AP"] < 0.9
    for name in STAT_NAMES:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name
    assert ours.per_class_ap == pytest.approx(theirs.per_class_ap)


def test_unknown_image_ids_and_backend_are_refused():
    with pytest.raises(PredictionFileError, match="image_id 999"):
        evaluate_coco(GT, {999: as_detections(RECORDS[0])})
    with pytest.raises(ValueError, match="backend"):
        evaluate_coco(GT, PERFECT, backend="detectron")


def test_number_accuracy():
    assert number_accuracy(RECORDS, PERFECT, 0.5) == 1.0
    assert number_accuracy(RECORDS, PERFECT, 0.95) == 0.0  # every digit is below the threshold
    half = {r.image_id: (PERFECT[r.image_id] if r.image_id % 2 else Detections.empty()) for r in RECORDS}
    assert number_accuracy(RECORDS, half, 0.5) == 0.5
    with pytest.raises(KeyError, match="no detections"):
        number_accuracy(RECORDS, {}, 0.5)


def test_sweep_finds_the_threshold_between_noise_and_digits():
    # Each image: its true digits at 0.8, a duplicate of the first at 0.79 (NMS removes it), and a
    # stray digit far right at 0.3 (only a threshold above 0.3 removes it).
    candidates = {}
    for r in RECORDS:
        true = as_detections(r, score=0.8)
        dup = Detections(true.boxes[:1] + 1, torch.tensor([0.79]), true.labels[:1])
        stray = Detections(torch.tensor([[350.0, 10, 370, 40]]), torch.tensor([0.3]), torch.tensor([digit_to_category(5)]))
        parts = (true, dup, stray)
        candidates[r.image_id] = Detections(*(torch.cat([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "labels")))
    sweep = sweep_score_threshold(RECORDS, candidates, [0.9, 0.1, 0.2, 0.5, 0.6, 0.7], nms_iou=0.5, with_map=True)
    assert [p.threshold for p in sweep.points] == [0.1, 0.2, 0.5, 0.6, 0.7, 0.9]
    assert [p.number_accuracy for p in sweep.points] == [0, 0, 1, 1, 1, 0]
    assert sweep.best_threshold == 0.6 and sweep.best_accuracy == 1.0  # the middle of the 0.5-0.7 plateau
    # The strays score below every true digit, so they cost no AP: mAP favours low thresholds.
    assert [p.mAP for p in sweep.points] == pytest.approx([1, 1, 1, 1, 1, 0])
    no_nms = sweep_score_threshold(RECORDS, candidates, [0.5], nms_iou=1.0)
    # Without NMS the duplicate doubles the first digit; only a lone "0" survives that ("00" is 0).
    assert no_nms.best_accuracy < 0.2 and no_nms.points[0].mAP is None
