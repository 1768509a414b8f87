import pytest
import torch
from torchvision.ops import box_iou

from detector.detections import Detections
from detector.refilter import above_score, refilter, refilter_many


def random_candidates(n: int = 300, seed: int = 0, classes: int = 10) -> Detections:
    """Clustered boxes like a detector's raw output: several jittered proposals around each digit."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 20 + 1, 2, generator=g) * 200
    idx = torch.randint(0, len(centres), (n,), generator=g)
    xy = centres[idx] + torch.randn(n, 2, generator=g) * 2
    wh = 10 + torch.rand(n, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = 0.01 + 0.99 * torch.rand(n, generator=g)
    labels = torch.randint(1, classes + 1, (n,), generator=g)
    return Detections(boxes, scores, labels)


def greedy_nms_reference(d: Detections, iou_threshold: float, class_agnostic: bool) -> set[int]:
    """Textbook greedy NMS, one box at a time, independent of torchvision's kernels."""
    iou = box_iou(d.boxes, d.boxes)
    kept: list[int] = []
    for i in sorted(range(len(d)), key=lambda i: -float(d.scores[i])):
        if all(iou[i, j] <= iou_threshold or (not class_agnostic and d.labels[i] != d.labels[j]) for j in kept):
            kept.append(i)
    return set(kept)


def as_rows(d: Detections) -> list[tuple]:
    return [tuple(b) + (s, lab) for b, s, lab in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=False)]


@pytest.mark.parametrize("class_agnostic", [False, True])
@pytest.mark.parametrize("threshold,iou", [(0.01, 0.5), (0.3, 0.3), (0.6, 0.7)])
def test_matches_textbook_greedy_nms(class_agnostic, threshold, iou):
    cand = random_candidates(seed=int(threshold * 100))
    out = refilter(cand, threshold, iou, class_agnostic=class_agnostic)
    mask = cand.scores >= threshold
    above = cand.select(torch.nonzero(mask).flatten())
    expected = above.select(torch.tensor(sorted(greedy_nms_reference(above, iou, class_agnostic)), dtype=torch.long))
    assert sorted(as_rows(out)) == sorted(as_rows(expected))
    assert 0 < len(out) < mask.sum()  # the case actually exercises suppression
    assert torch.all(out.scores[:-1] >= out.scores[1:])


def test_class_aware_keeps_overlapping_boxes_of_different_classes():
    boxes = torch.tensor([[0, 0, 10, 20], [1, 0, 11, 20], [1, 1, 11, 21]], dtype=torch.float32)
    d = Detections(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([2, 3, 2]))
    assert refilter(d, 0.5, 0.5).labels.tolist() == [2, 3]
    assert refilter(d, 0.5, 0.5, class_agnostic=True).labels.tolist() == [2]


def test_threshold_is_inclusive_and_iou_one_keeps_everything_sorted():
    d = random_candidates(50, seed=3)
    t = float(d.scores.sort().values[20])
    out = refilter(d, t, 1.0)
    assert len(out) == 30 and float(out.scores.min()) == t
    assert torch.equal(out.scores, d.scores[d.scores >= t].sort(descending=True).values)


def test_max_detections_keeps_the_best():
    d = random_candidates(seed=4)
    full = refilter(d, 0.05, 0.5)
    top = refilter(d, 0.05, 0.5, max_detections=5)
    assert as_rows(top) == as_rows(full)[:5]


def test_empty_inputs():
    assert len(refilter(Detections.empty(), 0.5, 0.5)) == 0
    assert len(refilter(random_candidates(30), 1.01, 0.5)) == 0


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_nms_once_then_cut_equals_refilter_at_each_threshold(class_agnostic):
    cand = random_candidates(seed=7)
    once = refilter(cand, 0.01, 0.5, class_agnostic)
    for t in (0.05, 0.2, 0.5, 0.8):
        assert as_rows(above_score(once, t)) == as_rows(refilter(cand, t, 0.5, class_agnostic))


def test_refilter_many_is_per_image():
    by_id = {i: random_candidates(seed=i) for i in (3, 1, 2)}
    out = refilter_many(by_id, 0.3, 0.5)
    assert list(out) == [3, 1, 2]
    for i in by_id:
        assert as_rows(out[i]) == as_rows(refilter(by_id[i], 0.3, 0.5))
