"""Match one image's final detections to its ground truth, for the app's review views.

Each prediction gets one kind, judged greedily in score order (the COCO way) with IoU from
torchvision.ops.box_iou:
- 'correct': IoU >= 0.5 with a same-class GT not yet taken (the highest-IoU such GT is taken);
- 'duplicate': IoU >= 0.5 with a same-class GT, but every such GT was taken by a higher score;
- 'wrong_class': no same-class GT at IoU >= 0.5, but a GT of another class is;
- 'poor_localisation': best IoU with any GT in [0.1, 0.5);
- 'background': IoU < 0.1 with every GT.
A GT not taken by a 'correct' prediction is 'missed' (even when a wrong-class box sits on it).

`confusion_matrix` (of `confusion_cells`) and `find_annotation_suspects` read many images' matches.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from detector.categories import CLASS_NAMES, NUM_DIGITS, category_to_digit
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.number import NumberReading, number_value, read_number

MATCH_IOU = 0.5
TOUCH_IOU = 0.1
PREDICTION_KINDS = ("correct", "wrong_class", "poor_localisation", "duplicate", "background")
MISSED = "missed"

# How much each error adds to an image's severity: a wrong house number dominates, then every
# missed digit, then each wrong box weighted by its score (confident mistakes first).
NUMBER_WRONG_WEIGHT = 10.0
MISSED_WEIGHT = 1.0
KIND_WEIGHTS = {"correct": 0.0, "wrong_class": 1.0, "background": 1.0, "poor_localisation": 0.5, "duplicate": 0.25}

BACKGROUND_INDEX = NUM_DIGITS  # row/column of the confusion matrix for background (FP) / missed (FN)
CONFUSION_LABELS: tuple[str, ...] = CLASS_NAMES + ("background",)


@dataclass(eq=False)  # holds arrays
class ImageMatch:
    """One image's predictions judged against its ground truth; arrays are indexed like the inputs."""

    image_id: int
    pred: Detections
    gt_boxes: np.ndarray  # (G, 4) xyxy
    gt_labels: np.ndarray  # (G,) category ids
    ious: np.ndarray  # (P, G)
    kinds: list[str]  # (P,) one of PREDICTION_KINDS
    gt_index: np.ndarray  # (P,) the GT each prediction was judged against; -1 for 'background'
    iou: np.ndarray  # (P,) IoU with that GT (for 'background': the best IoU with any GT, < 0.1)
    gt_matched_by: np.ndarray  # (G,) index of the 'correct' prediction that took each GT; -1 if missed
    number_read: str
    number_true: str

    @property
    def missed(self) -> np.ndarray:
        return np.flatnonzero(self.gt_matched_by < 0)

    @property
    def number_correct(self) -> bool:
        return number_value(self.number_read) == number_value(self.number_true)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(self.kinds)
        return {kind: found.get(kind, 0) for kind in PREDICTION_KINDS} | {MISSED: len(self.missed)}

    @property
    def severity(self) -> float:
        """'How wrong' for sorting a failure gallery; 0 for a perfect image. Weights: module constants."""
        scores = self.pred.scores.tolist()
        boxes = sum(KIND_WEIGHTS[kind] * score for kind, score in zip(self.kinds, scores, strict=False))
        return NUMBER_WRONG_WEIGHT * (not self.number_correct) + MISSED_WEIGHT * len(self.missed) + boxes

    def summary(self) -> dict:
        """One flat row per image for tables and galleries."""
        return {"image_id": self.image_id, **self.counts, "number_read": self.number_read,
                "number_true": self.number_true, "number_correct": self.number_correct,
                "severity": round(self.severity, 4)}


def match_image(pred: Detections, gt_boxes: np.ndarray | torch.Tensor, gt_labels: np.ndarray | torch.Tensor,
                image_id: int = -1, number: NumberReading | None = None) -> ImageMatch:
    """Judge `pred` (final detections: already score-filtered and NMS'd) against xyxy GT boxes.

    `number` is the image's number as the caller read it (detector.scoring reads it at the number threshold, which
    may keep boxes below `pred`'s score cut); without it, every box of `pred` is read.
    """
    pred = pred.to("cpu")
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_labels_np = torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1).numpy()
    ious = box_iou(pred.boxes.float(), gt_boxes).numpy()
    n_pred, n_gt = ious.shape
    labels = pred.labels.numpy()
    kinds = [""] * n_pred
    gt_index = np.full(n_pred, -1, dtype=np.int64)
    iou = np.zeros(n_pred, dtype=np.float32)
    matched_by = np.full(n_gt, -1, dtype=np.int64)
    for p in torch.argsort(pred.scores, descending=True, stable=True).tolist():
        row = ious[p]
        best = float(row.max()) if n_gt else 0.0
        same = (gt_labels_np == labels[p]) & (row >= MATCH_IOU)
        free = same & (matched_by < 0)
        if free.any():
            g, kinds[p] = int(np.argmax(np.where(free, row, -1.0))), "correct"
            matched_by[g] = p
        elif same.any():
            g, kinds[p] = int(np.argmax(np.where(same, row, -1.0))), "duplicate"
        elif best >= MATCH_IOU:
            g, kinds[p] = int(np.argmax(row)), "wrong_class"
        elif best >= TOUCH_IOU:
            g, kinds[p] = int(np.argmax(row)), "poor_localisation"
        else:
            g, kinds[p] = -1, "background"
        gt_index[p], iou[p] = g, row[g] if g >= 0 else best
    gt_text = _number_of(gt_boxes, gt_labels_np)
    return ImageMatch(image_id=image_id, pred=pred, gt_boxes=gt_boxes.numpy(), gt_labels=gt_labels_np, ious=ious,
                      kinds=kinds, gt_index=gt_index, iou=iou, gt_matched_by=matched_by,
                      number_read=(read_number(pred, 0.0) if number is None else number).text, number_true=gt_text)


def _number_of(gt_boxes: torch.Tensor, gt_labels: np.ndarray) -> str:
    """The ground truth read exactly as predictions are: ground truth is detections with score 1."""
    gt = Detections(gt_boxes, torch.ones(len(gt_labels)), torch.from_numpy(gt_labels))
    return read_number(gt, 0.0).text


def detections_for(records: Sequence[ImageRecord], detections_by_id: Mapping[int, Detections]) -> list[Detections]:
    """Each record's detections, in record order; names the image ids that have none (a caller bug)."""
    missing = [r.image_id for r in records if r.image_id not in detections_by_id]
    if missing:
        raise KeyError(f"no detections for {len(missing)} of {len(records)} images, e.g. image ids {missing[:5]} "
                       "(pass an empty Detections for images where nothing was found)")
    return [detections_by_id[r.image_id] for r in records]


def match_records(records: Sequence[ImageRecord], detections_by_id: Mapping[int, Detections]) -> list[ImageMatch]:
    return [match_image(dets, r.boxes, r.category_ids, image_id=r.image_id)
            for r, dets in zip(records, detections_for(records, detections_by_id), strict=False)]


def confusion_matrix(matches: Iterable[ImageMatch]) -> np.ndarray:
    """11x11 counts, rows = ground truth, columns = prediction, index = digit, 10 = background.

    Every GT is counted once in its row: on the diagonal when a 'correct' prediction took it, else in
    the column of the highest-scored 'wrong_class' prediction on it, else in the background column
    (missed). Every prediction not counted that way is a false positive in the background row.
    """
    cm = np.zeros((NUM_DIGITS + 1, NUM_DIGITS + 1), dtype=np.int64)
    for m in matches:
        for row, column in confusion_cells(m):
            cm[row, column] += 1
    return cm


def confusion_cells(m: ImageMatch) -> list[tuple[int, int]]:
    """The (row, column) of the confusion matrix each of one image's GTs and left-over predictions counts in."""
    cells = []
    digit = [category_to_digit(int(c)) for c in m.pred.labels.tolist()]
    used = np.array([kind == "correct" for kind in m.kinds], dtype=bool)
    wrong_class = np.array([kind == "wrong_class" for kind in m.kinds], dtype=bool)
    scores = m.pred.scores.numpy()
    for g, label in enumerate(m.gt_labels.tolist()):
        row = category_to_digit(int(label))
        if m.gt_matched_by[g] >= 0:
            cells.append((row, row))
            continue
        on_it = (m.gt_index == g) & wrong_class & ~used
        if on_it.any():
            p = _best(on_it, scores)
            used[p] = True
            cells.append((row, digit[p]))
        else:
            cells.append((row, BACKGROUND_INDEX))
    cells += [(BACKGROUND_INDEX, digit[fp]) for fp in np.flatnonzero(~used).tolist()]
    return cells


@dataclass(frozen=True)
class AnnotationSuspect:
    """A likely annotation error: what to look at and what the model suggests instead."""

    image_id: int
    kind: str  # 'missing_annotation' | 'wrong_label' | 'loose_box' | 'tight_box'
    gt_index: int  # index into the record's boxes; -1 for 'missing_annotation'
    box: tuple[float, float, float, float]  # suggested xyxy box
    category_id: int  # suggested category id
    confidence: float  # the score of the prediction behind the suggestion


def find_annotation_suspects(
    matches: Iterable[ImageMatch],
    min_score: float = 0.9,
    box_area_ratio: float = 0.5,
    box_iou_range: tuple[float, float] = (0.3, 0.6),
) -> list[AnnotationSuspect]:
    """Places where a confident model (score >= min_score) disagrees with the labels, most confident first.

    - 'missing_annotation': a confident prediction with IoU < 0.1 with every GT; suggests adding it.
    - 'wrong_label': a missed GT under a confident prediction of another class at IoU >= 0.5; suggests
      the prediction's class for the GT's box.
    - 'loose_box' / 'tight_box': a confident same-class prediction with IoU in `box_iou_range` whose area
      is < `box_area_ratio` of the GT's (GT drawn too loose) or > 1/`box_area_ratio` of it (GT too tight,
      e.g. cutting the digit); suggests the prediction's box. An area ratio r bounds IoU by r, so with
      r < 0.5 the pair's IoU is < 0.5 and the smaller box lies mostly inside the larger one.
    Each GT gets at most one suggestion per kind, from its highest-scored prediction.
    """
    found: list[AnnotationSuspect] = []
    lo, hi = box_iou_range
    for m in matches:
        boxes, scores, labels = m.pred.boxes.numpy(), m.pred.scores.numpy(), m.pred.labels.numpy()
        confident = scores >= min_score

        def suggest(kind: str, g: int, p: int, box: np.ndarray, label: int, m=m, scores=scores) -> None:
            x0, y0, x1, y1 = (float(v) for v in box)
            found.append(AnnotationSuspect(m.image_id, kind, g, (x0, y0, x1, y1), int(label), float(scores[p])))

        for fp in np.flatnonzero(confident).tolist():
            if m.kinds[fp] == "background":
                suggest("missing_annotation", -1, fp, boxes[fp], labels[fp])
        pred_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for g, (gt_box, gt_label) in enumerate(zip(m.gt_boxes, m.gt_labels.tolist(), strict=False)):
            gt_area = (gt_box[2] - gt_box[0]) * (gt_box[3] - gt_box[1])
            column = m.ious[:, g]
            other = confident & (labels != gt_label) & (column >= MATCH_IOU)
            if m.gt_matched_by[g] < 0 and other.any():
                p = _best(other, scores)
                suggest("wrong_label", g, p, gt_box, labels[p])
            near = confident & (labels == gt_label) & (column >= lo) & (column < hi)
            for kind, odd in (("loose_box", pred_area < box_area_ratio * gt_area),
                              ("tight_box", pred_area * box_area_ratio > gt_area)):
                if (near & odd).any():
                    p = _best(near & odd, scores)
                    suggest(kind, g, p, boxes[p], gt_label)
    return sorted(found, key=lambda s: -s.confidence)


def _best(mask: np.ndarray, scores: np.ndarray) -> int:
    candidates = np.flatnonzero(mask)
    return int(candidates[np.argmax(scores[candidates])])
