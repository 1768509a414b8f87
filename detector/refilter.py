"""Turn a model's cached raw candidates (score floor ~0.01, no NMS) into final detections.

The model is run once per image with NMS off; every score-threshold / NMS-IoU change in the app,
the threshold sweep and pred.json writing go through here, so re-filtering never re-runs the model.

Semantics (the same as torchvision's detection heads, except for `>=`):
- a candidate survives the score filter when `score >= score_threshold`;
- NMS discards a box whose IoU with a higher-scored kept box is `> nms_iou` (torchvision's rule), per
  class (`batched_nms`) or across classes (`nms`); `nms_iou >= 1` therefore keeps everything;
- the result is sorted by score, highest first, and cut to `max_detections` when given.

Greedy NMS decides each box only from boxes scored above it, so filtering at t after NMS equals
NMS after filtering at t: refilter once at the lowest threshold, then any higher threshold is a plain
score cut (as `read_number` does). The threshold sweep relies on that.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torchvision.ops import batched_nms, nms

from detector.detections import Detections


def above_score(det: Detections, score_threshold: float) -> Detections:
    """The one score cut everything shares: keep `score >= score_threshold`, order unchanged."""
    return det.select(torch.nonzero(det.scores >= score_threshold).flatten())


def refilter(
    candidates: Detections,
    score_threshold: float,
    nms_iou: float,
    class_agnostic: bool = False,
    max_detections: int | None = None,
) -> Detections:
    """Score filter, then NMS, then sort by score (descending) and cap the count."""
    kept = above_score(candidates, score_threshold)
    if nms_iou >= 1.0 or len(kept) == 0:
        order = torch.argsort(kept.scores, descending=True, stable=True)
    elif class_agnostic:
        order = nms(kept.boxes, kept.scores, nms_iou)
    else:
        order = batched_nms(kept.boxes, kept.scores, kept.labels, nms_iou)
    if max_detections is not None:
        order = order[:max_detections]
    return kept.select(order)


def refilter_many(
    candidates_by_id: Mapping[int, Detections],
    score_threshold: float,
    nms_iou: float,
    class_agnostic: bool = False,
    max_detections: int | None = None,
) -> dict[int, Detections]:
    """`refilter` for a whole split, keyed like the input.

    A per-image loop on purpose: one NMS over all images' boxes at once (offset per image and class)
    computes IoUs across the whole split, so its cost grows with the square of the split: already ~10x
    slower per image at 300 images (benchmarks/refilter_latency.py).
    """
    return {
        image_id: refilter(dets, score_threshold, nms_iou, class_agnostic, max_detections)
        for image_id, dets in candidates_by_id.items()
    }
