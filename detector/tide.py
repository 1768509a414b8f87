"""TIDE: how much AP each kind of detection error costs (Bolya et al., ECCV 2020; dbolya/tide, MIT).

mAP says how good a detector is; TIDE says what to fix. Every false positive gets one error kind, every
ground truth that nothing found (and no error could recover) is missed; the dAP of a kind is the AP gained by
fixing only the errors of that kind. The definitions are tidecv 1.0.1's, so the numbers agree with it
(tests/test_tide.py says by how much on the shipped validation set):

- AP is COCO-style: 101-point interpolated precision at IoU `pos_iou` (0.5), the mean over classes that have
  a ground truth or a prediction (unlike COCO, a class with predictions and no ground truth counts as AP 0);
- per image, at most `max_dets` predictions (by score); each in score order takes the unused same-class
  ground truth of highest IoU >= pos_iou (a true positive);
- a prediction that took nothing is, tested in this order: 'Bkg' when the image has no ground truth; 'Loc'
  when its best same-class IoU (used ground truth too) is in [bg_iou, pos_iou]; 'Cls' when an other-class
  ground truth has IoU >= pos_iou; 'Dupe' when a used same-class ground truth has IoU >= pos_iou; 'Bkg'
  when its best IoU with any ground truth is <= bg_iou; else 'Both' (wrong class and poorly localised);
- 'Miss': a ground truth no prediction took, and no 'Cls' or 'Loc' error points at.
Fixing: a 'Cls' or 'Loc' error on a ground truth nothing took becomes a true positive (of the ground truth's
class), but only the highest-scored of the errors on that ground truth; the others, and those on a taken
ground truth, are removed. 'Dupe', 'Bkg' and 'Both' are removed. A 'Miss' is removed from the ground truth
count. A fix that lowers AP (interpolation) counts as 0, as in tidecv. The two special errors: 'FalsePos'
(every false positive scored below every true positive) and 'FalseNeg' (every missed ground truth dropped).

detector.matching judges boxes for the gallery with other rules (a wrong class is found before a poor
localisation, missed means not found); this module is for the decomposition and the gallery's TIDE filters.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import detections_for

POS_IOU = 0.5
BG_IOU = 0.1
MAX_DETS = 100
ERROR_KINDS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")  # tidecv's order
SPECIAL_KINDS = ("FalsePos", "FalseNeg")
ERROR_NAMES = {"Cls": "classification", "Loc": "localisation", "Both": "classification + localisation",
               "Dupe": "duplicate", "Bkg": "background", "Miss": "missed"}
RECALL_POINTS = np.arange(101) / 100  # as tidecv builds them (x / 100), so recall == level compares alike


@dataclass(frozen=True)
class TideError:
    """One error: `pred` indexes the image's detections as given (-1 for 'Miss'), `gt` its ground truth (-1: none)."""

    kind: str
    image_id: int
    pred: int
    gt: int
    category: int  # the prediction's class ('Miss': the ground truth's)
    gt_category: int  # the ground truth's class (-1: none)
    score: float  # the prediction's score (0 for 'Miss')


@dataclass(frozen=True)
class _Point:
    """One entry of a class's precision-recall data; `order` breaks score ties as tidecv's insertion order does."""

    category: int
    score: float
    true: bool
    order: int


@dataclass
class _Error:
    error: TideError
    fixed: _Point | None  # what fixing it pushes (None: removed)
    removes_gt: bool = False


@dataclass(eq=False)
class TideResult:
    ap: float  # AP at pos_iou, 0..1 (tidecv prints it x100)
    delta_ap: dict[str, float]  # kind -> AP gained by fixing only that kind (0..1)
    special: dict[str, float]  # 'FalsePos' / 'FalseNeg' -> AP gained
    errors: list[TideError]
    ground_truths: int
    true_positives: int
    pos_iou: float = POS_IOU
    bg_iou: float = BG_IOU
    by_image: dict[int, list[TideError]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_image = {}
        for error in self.errors:
            self.by_image.setdefault(error.image_id, []).append(error)

    def counts(self) -> dict[str, int]:
        found = Counter(e.kind for e in self.errors)
        return {kind: found.get(kind, 0) for kind in ERROR_KINDS}


def _ap(points: list[_Point], ground_truths: int) -> float:
    """COCO-style 101-point AP of one class; 0 without ground truth (tidecv's convention)."""
    if ground_truths <= 0:
        return 0.0
    if not points:
        return 0.0
    order = np.lexsort((np.array([p.order for p in points]), -np.array([p.score for p in points])))
    true = np.array([points[i].true for i in order], dtype=np.float64)
    hits = np.cumsum(true)
    precision = hits / np.arange(1, len(true) + 1)
    recall = hits / ground_truths
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: no dips
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean())


def _mean_ap(points: list[_Point], ground_truths: Mapping[int, int], classes: set[int]) -> float:
    by_class: dict[int, list[_Point]] = defaultdict(list)
    for p in points:
        by_class[p.category].append(p)
    aps = [_ap(by_class[c], ground_truths.get(c, 0)) for c in sorted(classes)
           if by_class[c] or ground_truths.get(c, 0) > 0]
    return sum(aps) / len(aps) if aps else 0.0


class _Run:
    """tidecv's TIDERun for boxes: matching, error kinds and the data to re-score AP with errors fixed."""

    def __init__(self, pos_iou: float, bg_iou: float, max_dets: int) -> None:
        self.pos_iou, self.bg_iou, self.max_dets = pos_iou, bg_iou, max_dets
        self.points: list[_Point] = []  # every prediction kept, in push order
        self.errors: list[_Error] = []
        self.ground_truths: Counter[int] = Counter()
        self.false_negatives: Counter[int] = Counter()
        self.classes: set[int] = set()

    def _push(self, category: int, score: float, true: bool) -> _Point:
        point = _Point(category, score, true, len(self.points))
        self.points.append(point)
        self.classes.add(category)
        return point

    def image(self, image_id: int, det: Detections, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> None:
        labels_gt = [int(c) for c in gt_labels.tolist()]
        self.ground_truths.update(labels_gt)
        self.classes.update(labels_gt)
        n_gt = len(labels_gt)
        if len(det) == 0:
            for g, c in enumerate(labels_gt):
                self._miss(image_id, g, c)
            return
        keep = torch.argsort(det.scores, descending=True, stable=True)[: self.max_dets].tolist()
        boxes = det.boxes.double()
        scores = det.scores.double().tolist()
        labels = det.labels.tolist()
        iou = (box_iou(boxes[keep], torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)).numpy()
               if n_gt else np.zeros((len(keep), 0)))
        same = np.asarray(labels)[keep][:, None] == np.asarray(labels_gt, dtype=np.int64)[None, :]
        cls_iou = iou * same
        buffer = cls_iou.copy()
        taken_by = np.full(n_gt, -1)
        for row in range(len(keep)):
            if n_gt:
                g = int(np.argmax(buffer[row]))
                if buffer[row, g] >= self.pos_iou:
                    taken_by[g] = row
                    buffer[:, g] = 0
        matched = set(taken_by[taken_by >= 0].tolist())
        used = taken_by >= 0
        best_for_gt: dict[int, tuple[float, int]] = {}  # gt -> (score, error index) of the error its fix keeps
        pending: list[tuple[int, int, int]] = []  # (error index, gt, class of the fixed true positive)
        for row, p in enumerate(keep):
            true = row in matched
            self._push(labels[p], scores[p], true)
            if true:
                continue
            kind, g = self._kind(n_gt, cls_iou[row], iou[row] * ~same[row], iou[row], used, same[row])
            error = TideError(kind, image_id, p, g, labels[p], labels_gt[g] if g >= 0 else -1, scores[p])
            self.errors.append(_Error(error, None))
            if kind in ("Cls", "Loc") and not used[g]:
                if g not in best_for_gt or best_for_gt[g][0] < scores[p]:
                    best_for_gt[g] = (scores[p], len(self.errors) - 1)
                pending.append((len(self.errors) - 1, g, labels_gt[g]))
        for index, g, category in pending:
            if best_for_gt[g][1] == index:
                self.errors[index].fixed = _Point(category, self.errors[index].error.score, True, -1)
        usable = set(best_for_gt)
        for g, c in enumerate(labels_gt):
            if not used[g]:
                self.false_negatives[c] += 1
                if g not in usable:
                    self._miss(image_id, g, c, counted=True)

    def _miss(self, image_id: int, g: int, category: int, counted: bool = False) -> None:
        if not counted:
            self.false_negatives[category] += 1
        self.errors.append(_Error(TideError("Miss", image_id, -1, g, category, category, 0.0), None, removes_gt=True))

    def _kind(self, n_gt: int, cls_iou: np.ndarray, other_iou: np.ndarray, any_iou: np.ndarray, used: np.ndarray,
              same: np.ndarray) -> tuple[str, int]:
        """A false positive's kind and the ground truth it concerns, tested in tidecv's order."""
        if n_gt == 0:
            return "Bkg", -1
        g = int(np.argmax(cls_iou))
        if self.bg_iou <= cls_iou[g] <= self.pos_iou:
            return "Loc", g
        g = int(np.argmax(other_iou))
        if other_iou[g] >= self.pos_iou:
            return "Cls", g
        used_same = any_iou * same * used
        g = int(np.argmax(used_same))
        if used_same[g] >= self.pos_iou:
            return "Dupe", g
        if any_iou.max() <= self.bg_iou:
            return "Bkg", -1
        return "Both", -1

    def mean_ap(self, fix: Collection[str] = (), *, perfect_precision: bool = False,
                perfect_recall: bool = False) -> float:
        """AP with the errors of the kinds in `fix` fixed (tidecv's fix_errors), or one of the special fixes."""
        if not fix and not perfect_precision and not perfect_recall:
            return _mean_ap(self.points, self.ground_truths, self.classes)
        ground_truths = Counter(self.ground_truths)
        points: list[_Point] = []
        for order, e in enumerate(self.errors):
            if e.error.kind in fix:
                if e.removes_gt:
                    ground_truths[e.error.category] -= 1
                elif e.fixed is not None:
                    points.append(_Point(e.fixed.category, e.fixed.score, True, order))
            elif not e.removes_gt:
                points.append(_Point(e.error.category, e.error.score, False, order))
        first_true = len(self.errors)
        points += [_Point(p.category, p.score, True, first_true + p.order) for p in self.points if p.true]
        if perfect_precision:
            points = [_Point(p.category, 1.0 if p.true else 0.0, p.true, p.order) for p in points]
        if perfect_recall:
            ground_truths.subtract(self.false_negatives)
        return _mean_ap(points, ground_truths, self.classes)


def tide(records: Sequence[ImageRecord], detections_by_id: Mapping[int, Detections], *, pos_iou: float = POS_IOU,
         bg_iou: float = BG_IOU, max_dets: int = MAX_DETS) -> TideResult:
    """TIDE's error decomposition of final detections (score-cut and NMS'd) against the records' ground truth."""
    run = _Run(pos_iou, bg_iou, max_dets)
    for record, det in zip(records, detections_for(records, detections_by_id), strict=True):
        run.image(record.image_id, det.to("cpu"), record.boxes, record.category_ids)
    ap = run.mean_ap()
    delta = {kind: max(run.mean_ap({kind}) - ap, 0.0) for kind in ERROR_KINDS}
    special = {"FalsePos": run.mean_ap(perfect_precision=True) - ap,
               "FalseNeg": run.mean_ap(perfect_recall=True) - ap}
    return TideResult(ap=ap, delta_ap=delta, special=special, errors=[e.error for e in run.errors],
                      ground_truths=sum(run.ground_truths.values()),
                      true_positives=sum(p.true for p in run.points), pos_iou=pos_iou, bg_iou=bg_iou)
