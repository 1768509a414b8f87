"""Plant known annotation errors in a labelled split, so a label review can be scored against the truth.

Four kinds, each on `rate` of all boxes, at most one error per image (so an image's kind is unambiguous):
- 'swapped_class': a box keeps its place, its class becomes another digit (uniformly);
- 'badly_located': a box is shifted or resized (half each) until its IoU with the true box is in `iou_range`;
- 'missing_box': a box is deleted from the labels (the digit stays in the image);
- 'spurious_box': a box of a random class is added where no digit is: the size of one of the image's digits
  (x0.85-1.15), at most `SPURIOUS_MAX_IOU` IoU with every true box and at most `SPURIOUS_MAX_COVER` of its area
  on them. It is placed anywhere in the image, not on the number's row, so reviews should not be credited
  with a layout prior: the model's evidence is what has to find it.
Every draw comes from one numpy Generator seeded with `seed`, so a seed plants the same errors everywhere.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torchvision.ops import box_iou

from detector.categories import NUM_DIGITS
from detector.hw2 import ImageRecord

ERROR_KINDS = ("swapped_class", "badly_located", "missing_box", "spurious_box")
BADLY_LOCATED_IOU = (0.3, 0.6)
SPURIOUS_MAX_IOU = 0.05
SPURIOUS_MAX_COVER = 0.2  # share of the added box's area that may lie on true boxes
MIN_SIDE = 2.0  # px: a planted box is at least this wide and tall
_DRAWS = 256  # rejection-sampling draws per try; a box that finds no fit in them goes to the next image


@dataclass(frozen=True)
class PlantedError:
    """One planted error. `gt_index` indexes the noisy record's boxes (-1 for 'missing_box': the box is gone)."""

    image_id: int
    kind: str
    gt_index: int
    true_box: tuple[float, float, float, float] | None  # the box as labelled before (None for 'spurious_box')
    true_category_id: int | None
    box: tuple[float, float, float, float] | None  # the planted box (None for 'missing_box')
    category_id: int | None
    how: str = ""  # 'shift' or 'resize' for 'badly_located'


def plant_label_errors(records: Sequence[ImageRecord], rate: float = 0.04, seed: int = 0,
                       iou_range: tuple[float, float] = BADLY_LOCATED_IOU) -> tuple[list[ImageRecord], list[PlantedError]]:
    """The records with errors planted (order and ids kept) and the list of what was planted where.

    round(rate * boxes) errors of each kind, each in a different image drawn at random from those with a box.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate is a share of the boxes in (0, 1], got {rate}")
    lo, hi = iou_range
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"iou_range must satisfy 0 < low < high < 1, got {iou_range}")
    rng = np.random.default_rng(seed)
    n_boxes = sum(len(r.category_ids) for r in records)
    per_kind = round(rate * n_boxes)
    queue = [int(i) for i in rng.permutation(len(records)) if len(records[int(i)].category_ids)]
    out, planted = list(records), []
    for kind in ERROR_KINDS:
        for _ in range(per_kind):
            while True:
                if not queue:
                    raise ValueError(f"cannot plant {per_kind} errors of each of {len(ERROR_KINDS)} kinds, one per "
                                     f"image, in {len(records)} images ({n_boxes} boxes); lower --rate or add --images")
                index = queue.pop()
                result = _PLANT[kind](records[index], rng, iou_range)
                if result is not None:
                    out[index], error = result
                    planted.append(error)
                    break
    return out, planted


def _box(values: np.ndarray) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _swap(r: ImageRecord, rng: np.random.Generator, _: tuple[float, float]) -> tuple[ImageRecord, PlantedError]:
    g = int(rng.integers(len(r.category_ids)))
    old = int(r.category_ids[g])
    new = int(rng.choice([c for c in range(1, NUM_DIGITS + 1) if c != old]))
    labels = r.category_ids.copy()
    labels[g] = new
    return replace(r, category_ids=labels), PlantedError(r.image_id, "swapped_class", g, _box(r.boxes[g]), old,
                                                         _box(r.boxes[g]), new)


def _fit_in_image(boxes: np.ndarray, r: ImageRecord) -> np.ndarray:
    clipped = np.clip(boxes, 0.0, [r.width, r.height, r.width, r.height])
    big_enough = ((clipped[:, 2] - clipped[:, 0]) >= MIN_SIDE) & ((clipped[:, 3] - clipped[:, 1]) >= MIN_SIDE)
    return clipped[big_enough]


def _relocate(r: ImageRecord, rng: np.random.Generator,
              iou_range: tuple[float, float]) -> tuple[ImageRecord, PlantedError] | None:
    g = int(rng.integers(len(r.category_ids)))
    box = r.boxes[g].astype(np.float64)
    w, h = box[2] - box[0], box[3] - box[1]
    how = "shift" if rng.random() < 0.5 else "resize"
    if how == "shift":  # move by up to 80% of the width and 60% of the height
        d = rng.uniform(-1, 1, (_DRAWS, 2)) * [0.8 * w, 0.6 * h]
        tries = box + np.concatenate([d, d], axis=1)
    else:  # scale width and height by 0.35-2.9 each about a random point of the box
        scale = np.exp(rng.uniform(np.log(0.35), np.log(2.9), (_DRAWS, 2)))
        anchor = box[:2] + rng.uniform(0, 1, (_DRAWS, 2)) * [w, h]
        tries = np.concatenate([anchor - (anchor - box[:2]) * scale, anchor + (box[2:] - anchor) * scale], axis=1)
    tries = _fit_in_image(tries, r)
    iou = box_iou(torch.from_numpy(tries), torch.from_numpy(box[None])).numpy()[:, 0]
    ok = np.flatnonzero((iou >= iou_range[0]) & (iou <= iou_range[1]))
    if not len(ok):
        return None
    new = tries[ok[0]].astype(np.float32)
    boxes = r.boxes.copy()
    boxes[g] = new
    label = int(r.category_ids[g])
    return replace(r, boxes=boxes), PlantedError(r.image_id, "badly_located", g, _box(r.boxes[g]), label, _box(new),
                                                 label, how)


def _delete(r: ImageRecord, rng: np.random.Generator, _: tuple[float, float]) -> tuple[ImageRecord, PlantedError]:
    g = int(rng.integers(len(r.category_ids)))
    keep = np.arange(len(r.category_ids)) != g
    return (replace(r, boxes=r.boxes[keep], category_ids=r.category_ids[keep]),
            PlantedError(r.image_id, "missing_box", -1, _box(r.boxes[g]), int(r.category_ids[g]), None, None))


def _add(r: ImageRecord, rng: np.random.Generator, _: tuple[float, float]) -> tuple[ImageRecord, PlantedError] | None:
    like = r.boxes[rng.integers(len(r.boxes), size=_DRAWS)].astype(np.float64)
    size = (like[:, 2:] - like[:, :2]) * rng.uniform(0.85, 1.15, (_DRAWS, 2))
    room = np.array([r.width, r.height]) - size
    fits = (room > 0).all(axis=1)
    corner = rng.uniform(0, 1, (_DRAWS, 2)) * np.maximum(room, 0)
    tries = np.concatenate([corner, corner + size], axis=1)[fits]
    if not len(tries):
        return None
    t, gt = torch.from_numpy(tries), torch.from_numpy(r.boxes.astype(np.float64))
    iou = box_iou(t, gt).numpy()
    inter = _intersections(t, gt).sum(dim=1).numpy()
    cover = inter / (size[fits, 0] * size[fits, 1])
    ok = np.flatnonzero((iou.max(axis=1) <= SPURIOUS_MAX_IOU) & (cover <= SPURIOUS_MAX_COVER))
    if not len(ok):
        return None
    new = tries[ok[0]].astype(np.float32)
    label = int(rng.integers(1, NUM_DIGITS + 1))
    return (replace(r, boxes=np.concatenate([r.boxes, new[None]]), category_ids=np.append(r.category_ids, label)),
            PlantedError(r.image_id, "spurious_box", len(r.boxes), None, None, _box(new), label))


def _intersections(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, B) intersection areas of xyxy boxes."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    return (rb - lt).clamp(min=0).prod(dim=2)


_PLANT = {"swapped_class": _swap, "badly_located": _relocate, "missing_box": _delete, "spurious_box": _add}
