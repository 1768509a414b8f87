"""How likely each label of a split is wrong, read from the model's raw candidates (no re-run, no NMS needed).

The candidates are what the predictor already caches: every class above a low score floor for every proposal,
with NMS off, so for each place in the image they carry the model's scores for several classes. Four kinds:
- 'swapped_class' (per label): p_other * (1 - p_same), where p_k is the best class-k candidate score at
  IoU >= 0.5 with the label; the fix is the best other class.
- 'badly_located' (per label): the model's own box for that digit (the score-weighted mean of the labelled
  class's candidates clustered round the best one) differs from the label by more than the model's boxes
  usually differ from this split's labels: the largest robust z-score of the centre shift and the log width and
  height ratios (median and MAD over the split), times the model's score; the fix is the model's box.
- 'spurious_box' (per label): no candidate of any class at IoU >= 0.2 with it, while the model does see the
  image's other labelled digits: (1 - evidence) * (1 - w + w * context); the fix is deleting the box.
- 'missing_box' (per model detection): a candidate, after class-agnostic NMS, at IoU < 0.3 with every label;
  its score; the fix is adding it.
Why the split matters: the four raw suspicions are on different scales (a model misses some real digits, so
'nothing here' is common; its boxes are loose, so 'box off' is common), and a plain max lets one kind's false
alarms crowd out the others. `Calibration` turns each raw suspicion into how rare it is in the split being
reviewed: 1 - (the number of same-kind suspicions in the split at least as strong) / (images). 0.99 says fewer
than one image in a hundred carries a suspicion of that kind as strong. That is a rank, not a probability: a
clean split's strongest suspicions score high too, and a minimum score works as a review budget (about
4 x (1 - minimum) suggestions per image). An image scores its strongest suspicion. benchmarks/label_errors.py
measures all of this against planted errors and cleanlab's ObjectLab.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou, nms

from detector.categories import NUM_CLASSES
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import AnnotationSuspect, detections_for

LABEL_KINDS = ("swapped_class", "badly_located", "spurious_box", "missing_box")
MATCH_IOU = 0.5  # a candidate at this IoU with a label speaks for that label's class
SPURIOUS_IOU = 0.2  # any candidate this close counts as evidence of a digit under a label
CONTEXT_WEIGHT = 0.5  # how much 'the model sees this image's other digits' raises a spurious suspicion
CONTEXT_ALONE = 0.5  # the context of an image's only label
OWN_IOU = 0.1  # a candidate belongs to the label it overlaps most, from this IoU on
CLUSTER_IOU = 0.6  # candidates this close to the best one make up the model's box for a digit
MISSING_IOU = 0.3  # a candidate below this IoU with every label is unexplained
MISSING_NMS_IOU = 0.3
CONFIDENT = 0.5  # labels found this confidently set the split's usual box deviation
_EPS = 1e-6


@dataclass(eq=False)  # holds arrays
class Evidence:
    """One image's raw, split-independent evidence; arrays are per label (G) or per unexplained detection (M)."""

    image_id: int
    gt_boxes: np.ndarray  # (G, 4) xyxy
    gt_labels: np.ndarray  # (G,) category ids
    swap: np.ndarray  # (G,) p_other * (1 - p_same)
    swap_label: np.ndarray  # (G,) the best other class
    spurious: np.ndarray  # (G,)
    fit_score: np.ndarray  # (G,) the model's best same-class score on the label's digit (0: none)
    fit_box: np.ndarray  # (G, 4) the model's box for it (the label's own box when none)
    deviation: np.ndarray  # (G, 4) centre x, centre y shift / label height, log width ratio, log height ratio
    missing: np.ndarray  # (M,) scores of unexplained detections
    missing_boxes: np.ndarray  # (M, 4)
    missing_labels: np.ndarray  # (M,)


def image_evidence(gt_boxes: np.ndarray | torch.Tensor, gt_labels: np.ndarray | torch.Tensor,
                   candidates: Detections, image_id: int = -1) -> Evidence:
    """Raw evidence of one image from its labels (xyxy, category ids) and the model's raw candidates."""
    gt = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1)
    d = candidates.to("cpu")
    boxes, scores, classes = d.boxes.float().reshape(-1, 4), d.scores.float(), d.labels.long()
    n_gt, n = len(gt), len(scores)
    iou = box_iou(boxes, gt)  # (N, G)
    if n == 0:  # amax/argmax below need at least one candidate
        boxes, scores, classes = torch.zeros((1, 4)), torch.zeros(1), torch.zeros(1, dtype=torch.int64)
        iou = torch.zeros((1, n_gt))

    support = torch.zeros((n_gt, NUM_CLASSES)).scatter_reduce(
        1, classes[None].expand(n_gt, -1), torch.where(iou >= MATCH_IOU, scores[:, None], 0.0).T, reduce="amax")
    p_same = support.gather(1, labels[:, None])[:, 0]
    support.scatter_(1, labels[:, None], 0.0)
    support[:, 0] = -1.0  # background is never a suggestion
    p_other, swap_label = support.max(dim=1)

    evidence = torch.where(iou >= SPURIOUS_IOU, scores[:, None], 0.0).amax(dim=0)
    spurious = (1 - evidence) * (1 - CONTEXT_WEIGHT + CONTEXT_WEIGHT * _others_max(evidence))

    best_iou, best_gt = iou.max(dim=1) if n_gt else (torch.zeros(len(scores)), torch.zeros(len(scores), dtype=torch.int64))
    own = (best_gt[:, None] == torch.arange(n_gt)[None]) & (iou >= OWN_IOU) & (classes[:, None] == labels[None])
    fit_score, top = torch.where(own, scores[:, None], -1.0).max(dim=0)
    fit_score = fit_score.clamp(min=0.0)
    cluster = (box_iou(boxes[top], boxes) >= CLUSTER_IOU) & own.T  # (G, N)
    weights = torch.where(cluster, scores[None] ** 2, 0.0)
    fit_box = torch.where(fit_score[:, None] > 0, weights @ boxes / weights.sum(1, keepdim=True).clamp(min=_EPS), gt)

    unexplained = torch.nonzero(best_iou < MISSING_IOU).flatten() if n else torch.zeros(0, dtype=torch.int64)
    kept = unexplained[nms(boxes[unexplained], scores[unexplained], MISSING_NMS_IOU)]
    return Evidence(image_id=image_id, gt_boxes=gt.numpy(), gt_labels=labels.numpy(), swap=(p_other * (1 - p_same)).numpy(),
                    swap_label=swap_label.numpy(), spurious=spurious.numpy(), fit_score=fit_score.numpy(),
                    fit_box=fit_box.numpy(), deviation=_deviation(fit_box, gt).numpy(), missing=scores[kept].numpy(),
                    missing_boxes=boxes[kept].numpy(), missing_labels=classes[kept].numpy())


def _others_max(values: torch.Tensor) -> torch.Tensor:
    """For each entry, the largest of the other entries (CONTEXT_ALONE when there is none)."""
    if len(values) < 2:
        return torch.full_like(values, CONTEXT_ALONE)
    top2 = values.topk(2).values
    return torch.where(values == top2[0], top2[1], top2[0])


def _deviation(fit: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """How the model's box differs from the label: centre shift in label heights, log width and height ratios."""
    size_fit, size_gt = (fit[:, 2:] - fit[:, :2]).clamp(min=_EPS), (gt[:, 2:] - gt[:, :2]).clamp(min=_EPS)
    shift = ((fit[:, :2] + fit[:, 2:]) - (gt[:, :2] + gt[:, 2:])) / 2 / size_gt[:, 1:]
    return torch.cat([shift, torch.log(size_fit / size_gt)], dim=1)


@dataclass
class Calibration:
    """The split's view of 'usual': how the model's boxes differ from its labels, and each kind's raw suspicions."""

    n_images: int
    deviation_centre: np.ndarray  # (4,) median deviation of confidently found labels
    deviation_scale: np.ndarray  # (4,) its MAD, as a standard deviation
    raw_sorted: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> ascending raw suspicions

    @classmethod
    def fit(cls, evidence: Sequence[Evidence]) -> Calibration:
        found = [e.deviation[e.fit_score >= CONFIDENT] for e in evidence]
        deviations = np.concatenate(found) if found else np.zeros((0, 4))
        if len(deviations) < 2:  # too few to say what is usual: only large deviations count
            centre, scale = np.zeros(4), np.full(4, 0.1)
        else:
            centre = np.median(deviations, axis=0)
            scale = np.maximum(1.4826 * np.median(np.abs(deviations - centre), axis=0), 0.01)
        cal = cls(len(evidence), centre, scale)
        cal.raw_sorted = {kind: np.sort(np.concatenate([cal.raw(e)[kind] for e in evidence] or [np.zeros(0)]))
                          for kind in LABEL_KINDS}
        return cal

    def raw(self, e: Evidence) -> dict[str, np.ndarray]:
        """Each kind's raw suspicion, higher = more suspicious (per label, or per unexplained detection for
        'missing_box'); all in [0, 1] but 'badly_located', the model's score x the largest robust z."""
        z = np.abs(e.deviation - self.deviation_centre) / self.deviation_scale
        worst = z.max(axis=1) if len(z) else np.zeros(0)
        return {"swapped_class": e.swap, "badly_located": e.fit_score * worst,
                "spurious_box": e.spurious, "missing_box": e.missing}

    def rarity(self, kind: str, raw: np.ndarray) -> np.ndarray:
        """1 - (suspicions of this kind in the split at least this strong) per image, in [0, 1]."""
        ranked = self.raw_sorted[kind]
        at_least = len(ranked) - np.searchsorted(ranked, raw, side="left")
        return np.clip(1 - at_least / max(self.n_images, 1), 0.0, 1.0)

    def judge(self, e: Evidence) -> LabelJudgement:
        raw = self.raw(e)
        per_gt = np.stack([self.rarity(k, raw[k]) for k in LABEL_KINDS[:3]])  # (3, G)
        worst = per_gt.argmax(axis=0)
        fix_boxes = np.where((worst == 1)[:, None], e.fit_box, e.gt_boxes)
        fix_labels = np.where(worst == 0, e.swap_label, e.gt_labels)
        return LabelJudgement(e.image_id, per_gt.max(axis=0),
                              [LABEL_KINDS[k] for k in worst], fix_boxes, fix_labels,
                              self.rarity("missing_box", raw["missing_box"]),
                              e.missing_boxes, e.missing_labels)


@dataclass(eq=False)  # holds arrays
class LabelJudgement:
    """One image's suspicions in [0, 1]: per label (with its likeliest kind and fix) and per unexplained detection."""

    image_id: int
    gt_score: np.ndarray  # (G,)
    gt_kind: list[str]  # (G,) 'swapped_class' | 'badly_located' | 'spurious_box'
    fix_boxes: np.ndarray  # (G, 4): the model's box for 'badly_located', else the label's
    fix_labels: np.ndarray  # (G,): the suggested class for 'swapped_class', else the label's
    missing_score: np.ndarray  # (M,)
    missing_boxes: np.ndarray  # (M, 4)
    missing_labels: np.ndarray  # (M,)

    @property
    def score(self) -> float:
        """The image's strongest suspicion (0 for an image with nothing to say)."""
        return float(max(self.gt_score.max(initial=0.0), self.missing_score.max(initial=0.0)))

    def suspects(self, min_score: float = 0.0) -> list[AnnotationSuspect]:
        """Suspicions above 0 and at or above `min_score`, in the app's suggestion form (gt_index -1: add the box)."""
        out = [AnnotationSuspect(self.image_id, kind, g, _box(self.fix_boxes[g]), int(self.fix_labels[g]), s)
               for g, (kind, s) in enumerate(zip(self.gt_kind, self.gt_score.tolist(), strict=True))
               if s > 0 and s >= min_score]
        out += [AnnotationSuspect(self.image_id, "missing_box", -1, _box(box), int(label), s)
                for box, label, s in zip(self.missing_boxes, self.missing_labels.tolist(), self.missing_score.tolist(),
                                         strict=True) if s > 0 and s >= min_score]
        return out


def _box(values: np.ndarray) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def judge_labels(records: Sequence[ImageRecord], candidates_by_id: Mapping[int, Detections]) -> list[LabelJudgement]:
    """Every record's judgement, calibrated on these records together (review a split, not a single image)."""
    evidence = [image_evidence(r.boxes, r.category_ids, d, r.image_id)
                for r, d in zip(records, detections_for(records, candidates_by_id), strict=True)]
    cal = Calibration.fit(evidence)
    return [cal.judge(e) for e in evidence]


def find_label_suspects(records: Sequence[ImageRecord], candidates_by_id: Mapping[int, Detections],
                        min_score: float = 0.0) -> list[AnnotationSuspect]:
    """Likely label errors of a split, most suspicious first (AnnotationSuspect.confidence is the suspicion)."""
    found = [s for j in judge_labels(records, candidates_by_id) for s in j.suspects(min_score)]
    return sorted(found, key=lambda s: -s.confidence)
