"""Anchor coverage and anchor fitting: how well a detector's anchors can cover a dataset's boxes, and anchors that do.

Coverage is measured at the model's input scale and on the real anchor grid, because that is what the RPN
sees: torchvision's GeneralizedRCNNTransform resizes each image by min(min_size / short side, max_size /
long side), pads it to a multiple of 32, and each FPN level puts its anchors (AnchorGenerator's rounded cell
anchors) on a grid with that level's stride. A shape-only IoU (anchor and box sharing a centre) overstates
coverage badly when anchors are small next to their level's stride. `python -m training.stats` is the command
line over this module.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import box_iou

from detector.hw2 import ImageRecord
from detector.models import ModelConfig, build_model, get_preset

_SEED = get_preset("seed")  # the defaults: the reference study's anchors and input scale
SEED_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = _SEED.anchor_sizes
SEED_ASPECT_RATIOS: tuple[float, ...] = _SEED.aspect_ratios  # torchvision's aspect ratio is h / w
SEED_MIN_SIZE, SEED_MAX_SIZE = _SEED.min_size, _SEED.max_size
RESNET_FPN_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64)  # '0'..'3' and the max-pool level
SIZE_DIVISIBLE = 32  # GeneralizedRCNNTransform pads every batch to a multiple of this
IOU_THRESHOLDS = (0.5, 0.7)  # ROI heads' and RPN's foreground thresholds
_GRID_OFFSETS = torch.arange(0, 2)  # grid index floor(c / step) and the next: the nearest point to any anchor
_CHUNK = 65536


# ------------------------------------------------------------------------------------------------- geometry
def input_scale(width: np.ndarray, height: np.ndarray, min_size: int, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resized (height, width) per image, as GeneralizedRCNNTransform computes them (interpolate floors)."""
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    scale = np.minimum(min_size / np.minimum(w, h), max_size / np.maximum(w, h))
    return np.floor(h * scale), np.floor(w * scale)


def gather_boxes(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    """All boxes (N, 4) xyxy in original pixels and, per box, its image's (width, height)."""
    boxes = [r.boxes.reshape(-1, 4) for r in records]
    sizes = [np.tile([r.width, r.height], (len(r.boxes), 1)) for r in records]
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0, 2))
    return np.concatenate(boxes).astype(np.float64), np.concatenate(sizes).astype(np.float64)


def scale_boxes(
    records: Sequence[ImageRecord], min_size: int, max_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes at the model's input scale (torchvision's resize_boxes: per-axis new/old ratio) and each box's
    resized image (height, width)."""
    boxes, wh = gather_boxes(records)
    new_h, new_w = input_scale(wh[:, 0], wh[:, 1], min_size, max_size)
    ratio = np.stack([new_w / wh[:, 0], new_h / wh[:, 1]] * 2, axis=1) if len(boxes) else np.zeros((0, 4))
    return boxes * ratio, np.stack([new_h, new_w], axis=1) if len(boxes) else np.zeros((0, 2))


def box_wh(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.stack([boxes_xyxy[:, 2] - boxes_xyxy[:, 0], boxes_xyxy[:, 3] - boxes_xyxy[:, 1]], axis=1)


def quantiles(values: np.ndarray) -> dict[str, float]:
    """min, p5, p25, median, p75, p95, max and mean, rounded for stats.json; {} for no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {}
    qs = np.quantile(values, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    keys = ("min", "p5", "p25", "median", "p75", "p95", "max")
    return {k: round(float(v), 3) for k, v in zip(keys, qs, strict=False)} | {"mean": round(float(values.mean()), 3)}


# ---------------------------------------------------------------------------------------------- anchor IoU
def best_anchor_iou(
    boxes: np.ndarray | torch.Tensor,
    image_hw: np.ndarray | torch.Tensor,
    sizes: Sequence[Sequence[float]],
    ratios: Sequence[float],
    strides: Sequence[int] = RESNET_FPN_STRIDES,
    size_divisible: int = SIZE_DIVISIBLE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For boxes already at input scale, the IoU of the best anchor on the real grid and that anchor's level.

    Each level's grid is torchvision's: feature size ceil(padded / stride) (stride-2 convs round up), grid step
    padded // feature size (AnchorGenerator.forward), anchors at step * index, which is how the pool level of a
    non-multiple-of-64 image ends up with a step of e.g. 61. For a fixed anchor shape the IoU only falls as the
    anchor moves away from the box along either axis, so the best grid point is the one nearest the box centre
    on each axis: floor(c / step) or the next (rounded cell anchors are off-centre by at most half a pixel),
    or the nearest one inside the feature map. IoU is translation invariant, so every box is compared, with
    torchvision.ops.box_iou, against one template of anchors on those 2x2 grid points, shifted into the box's
    frame.
    """
    if len(sizes) != len(strides):
        raise ValueError(f"{len(sizes)} anchor size levels but {len(strides)} strides; give one stride per level")
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    hw = torch.as_tensor(np.asarray(image_hw, dtype=np.float64)).reshape(-1, 2)
    padded = (torch.ceil(hw / size_divisible) * size_divisible).long()
    centres = (boxes_t[:, :2] + boxes_t[:, 2:]) / 2  # (x, y)
    generator = AnchorGenerator(tuple(tuple(s) for s in sizes), (tuple(ratios),) * len(sizes))
    best = torch.zeros(len(boxes_t), dtype=torch.float32)
    best_level = torch.full((len(boxes_t),), -1, dtype=torch.long)
    oy, ox = torch.meshgrid(_GRID_OFFSETS, _GRID_OFFSETS, indexing="ij")
    offsets = torch.stack([ox.reshape(-1), oy.reshape(-1)], dim=1)  # (4, 2) grid offsets (x, y)
    for level, (cell, stride) in enumerate(zip(generator.cell_anchors, strides, strict=False)):
        feature = torch.div(padded + stride - 1, stride, rounding_mode="floor").flip(1)  # ceil(padded / stride), (w, h)
        step = torch.div(padded.flip(1), feature, rounding_mode="floor")  # (N, 2) x, y
        for group in torch.unique(step, dim=0):
            chosen = torch.nonzero((step == group).all(dim=1)).flatten()
            shifts = (offsets * group).repeat(1, 2).float()  # (4, 4) xyxy shifts
            template = (shifts[:, None, :] + cell[None]).reshape(-1, 4)  # (4 * A, 4), grid-point-major
            for part in chosen.split(_CHUNK):
                # the nearest in-map grid point is this index or the next (see the docstring)
                start = torch.minimum(torch.floor(centres[part] / group), feature[part] - 2).clamp(min=0)
                origin = (start * group).repeat(1, 2)
                iou = box_iou((boxes_t[part] - origin).float(), template)
                valid = ((start[:, None, :] + offsets[None]) < feature[part][:, None, :]).all(dim=2)  # (n, 4)
                iou = iou.masked_fill(~valid.repeat_interleave(len(cell), dim=1), 0.0)
                level_best = iou.amax(dim=1)
                better = level_best > best[part]
                best[part] = torch.where(better, level_best, best[part])
                best_level[part[better]] = level
    return best, best_level


def anchor_recall(
    records: Sequence[ImageRecord],
    sizes: Sequence[Sequence[float]],
    ratios: Sequence[float],
    strides: Sequence[int] = RESNET_FPN_STRIDES,
    min_size: int = SEED_MIN_SIZE,
    max_size: int = SEED_MAX_SIZE,
    size_divisible: int = SIZE_DIVISIBLE,
) -> dict[str, Any]:
    """Share of ground-truth boxes whose best anchor reaches IoU 0.5 / 0.7 at the model's input scale
    (keys 'recall@0.5', 'recall@0.7', plus mean/median best IoU, which level wins, box sizes at that scale)."""
    boxes, hw = scale_boxes(records, min_size, max_size)
    return recall_summary(boxes, hw, sizes, ratios, strides, min_size, max_size, size_divisible)[0]


def recall_summary(
    boxes: np.ndarray, image_hw: np.ndarray, sizes: Sequence[Sequence[float]], ratios: Sequence[float],
    strides: Sequence[int], min_size: int, max_size: int, size_divisible: int = SIZE_DIVISIBLE,
) -> tuple[dict[str, Any], np.ndarray]:
    """anchor_recall's figures for boxes already at input scale, and each box's best IoU (for plots)."""
    best, level = best_anchor_iou(boxes, image_hw, sizes, ratios, strides, size_divisible)
    n = len(best)
    out: dict[str, Any] = {
        "min_size": int(min_size), "max_size": int(max_size),
        "anchor_sizes": [[int(v) if float(v).is_integer() else float(v) for v in level_sizes] for level_sizes in sizes],
        "aspect_ratios": [float(r) for r in ratios],
        "strides": [int(s) for s in strides], "boxes": n,
        "mean_best_iou": float(best.mean()) if n else float("nan"),
        "median_best_iou": float(best.median()) if n else float("nan"),
        "box_height_at_input": quantiles(boxes[:, 3] - boxes[:, 1]),
        "box_width_at_input": quantiles(boxes[:, 2] - boxes[:, 0]),
        "best_level_share": [round(float((level == i).double().mean()), 4) if n else 0.0 for i in range(len(sizes))],
    }
    for t in IOU_THRESHOLDS:
        out[f"recall@{t}"] = float((best >= t).double().mean()) if n else float("nan")
    return out, best.numpy()


def recall_label(result: dict[str, Any]) -> str:
    """One line for a recall_summary: the anchors and their recall (the CLI's lines and the plots' legends)."""
    sizes = ",".join("/".join(str(s) for s in level) for level in result["anchor_sizes"])
    ratios = ",".join(f"{r:g}" for r in result["aspect_ratios"])
    return f"{sizes} x {ratios}: R@.5 {result['recall@0.5']:.1%}, R@.7 {result['recall@0.7']:.1%}"


# ------------------------------------------------------------------------------------------- anchor fitting
def _wh_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU of (w, h) pairs with boxes sharing a centre: the shape-only distance k-means uses."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None] - inter
    return inter / union


def kmeans_wh(wh: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    """k-means on box shapes with distance 1 - IoU (YOLOv2's anchor clustering); centroids sorted by area.

    Deterministic: it starts from area quantiles, so the same boxes always give the same anchors.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if len(wh) < k:
        raise ValueError(f"k-means needs at least {k} boxes, got {len(wh)}")
    order = np.argsort(wh[:, 0] * wh[:, 1], kind="stable")
    centroids = wh[order[((np.arange(k) + 0.5) / k * len(wh)).astype(int)]].copy()
    assign = np.full(len(wh), -1)
    for _ in range(iterations):
        new_assign = _wh_iou(wh, centroids).argmax(axis=1)
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                centroids[j] = np.median(members, axis=0)
    return centroids[np.argsort(centroids[:, 0] * centroids[:, 1], kind="stable")]


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    values = np.sort(np.asarray(values, dtype=np.float64))
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assign = np.abs(values[:, None] - centres[None]).argmin(axis=1)
        new = np.array([values[assign == j].mean() if (assign == j).any() else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


@dataclass(frozen=True)
class AnchorFit:
    """A proposal in ModelConfig's shape (sizes per level, shared h/w ratios) plus the clusters behind it."""

    anchor_sizes: tuple[tuple[int, ...], ...]
    aspect_ratios: tuple[float, ...]
    centroids_wh: tuple[tuple[float, float], ...]  # k-means centres at input scale
    centroid_sizes: tuple[float, ...]  # sqrt(w * h)
    centroid_ratios: tuple[float, ...]  # h / w, torchvision's convention
    shape_iou: float  # mean IoU of each box with its closest centroid, shapes only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_anchors(
    boxes_wh: np.ndarray,
    scale: float | np.ndarray = 1.0,
    n_sizes: int = 5,
    ratios: Sequence[float] | None = None,
    n_ratios: int = 3,
    n_levels: int | None = None,
) -> AnchorFit:
    """Propose anchor sizes and aspect ratios for boxes of shape `boxes_wh` (original pixels) times `scale`
    (a number, or one per box as `input_scale` gives), ready for ModelConfig(anchor_sizes=..., aspect_ratios=...).

    Sizes are sqrt(w*h) of `n_sizes` 1-IoU k-means centres, spread over `n_levels` feature levels (default one
    per size; n_sizes must be a multiple of n_levels, as torchvision's shared RPN head needs the same anchor
    count on every level). Ratios (h / w) are `ratios` if given, else `n_ratios` 1-D k-means centres of log(h/w).
    """
    wh = np.asarray(boxes_wh, dtype=np.float64).reshape(-1, 2) * np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    wh = wh[(wh > 0).all(axis=1)]
    n_levels = n_levels or n_sizes
    if n_sizes % n_levels:
        raise ValueError(f"n_sizes ({n_sizes}) must be a multiple of the number of feature levels ({n_levels})")
    centroids = kmeans_wh(wh, n_sizes)
    shape_iou = float(_wh_iou(wh, centroids).max(axis=1).mean())
    raw_sizes = np.sqrt(centroids[:, 0] * centroids[:, 1])
    sizes: list[int] = []
    for s in raw_sizes:  # integer sizes (ModelConfig's type), kept strictly increasing
        sizes.append(max(int(round(s)), sizes[-1] + 1 if sizes else 1))
    per_level = n_sizes // n_levels
    anchor_sizes = tuple(tuple(sizes[i * per_level:(i + 1) * per_level]) for i in range(n_levels))
    if ratios is None:
        ratios = tuple(round(float(v), 2) for v in np.exp(_kmeans_1d(np.log(wh[:, 1] / wh[:, 0]), n_ratios)))
    return AnchorFit(
        anchor_sizes=anchor_sizes,
        aspect_ratios=tuple(float(r) for r in ratios),
        centroids_wh=tuple((round(float(w), 2), round(float(h), 2)) for w, h in centroids),
        centroid_sizes=tuple(round(float(s), 2) for s in raw_sizes),
        centroid_ratios=tuple(round(float(h / w), 3) for w, h in centroids),
        shape_iou=shape_iou,
    )


def _grid_score(best: torch.Tensor) -> float:
    # both foreground thresholds count; mean IoU breaks ties between configurations with equal recall
    return float((best >= 0.5).double().mean() + (best >= 0.7).double().mean() + 0.1 * best.double().mean())


def refine_anchors(
    boxes: np.ndarray,
    image_hw: np.ndarray,
    sizes: Sequence[Sequence[int]],
    ratios: Sequence[float],
    strides: Sequence[int] = RESNET_FPN_STRIDES,
    *,
    rounds: int = 3,
    sample: int = 8000,
    seed: int = 0,
) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Coordinate ascent on each level's sizes and each ratio, scored on the real anchor grid.

    k-means sees shapes only; on the grid an anchor much smaller than its level's stride (or a large one on
    a coarse level) misses boxes that sit between grid points. This tries scaling one level (or one ratio) at
    a time, or swapping two levels, and keeps a change when recall@0.5 + recall@0.7 (+ 0.1 mean IoU)
    improves on a fixed sample of boxes at input scale; a local search, not a global optimum. Sizes may come
    out non-monotonic across levels: that is the grid's verdict, and torchvision does not require order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image_hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    if len(boxes) > sample:
        keep = np.random.default_rng(seed).choice(len(boxes), sample, replace=False)
        boxes, image_hw = boxes[keep], image_hw[keep]
    current_sizes = [tuple(int(v) for v in level) for level in sizes]
    current_ratios = [float(r) for r in ratios]

    def score(candidate_sizes: list[tuple[int, ...]], candidate_ratios: list[float]) -> float:
        return _grid_score(best_anchor_iou(boxes, image_hw, candidate_sizes, candidate_ratios, strides)[0])

    best = score(current_sizes, current_ratios)
    for _ in range(rounds):
        improved = False
        for level in range(len(current_sizes)):
            for factor in (0.6, 0.75, 0.87, 1.15, 1.3, 1.6):
                trial = list(current_sizes)
                trial[level] = tuple(max(1, round(v * factor)) for v in trial[level])
                if trial[level] == current_sizes[level]:
                    continue
                value = score(trial, current_ratios)
                if value > best + 1e-4:
                    best, current_sizes, improved = value, trial, True
        for a in range(len(current_sizes)):  # moving a size to another level changes its grid
            for b in range(a + 1, len(current_sizes)):
                trial = list(current_sizes)
                trial[a], trial[b] = trial[b], trial[a]
                value = score(trial, current_ratios)
                if value > best + 1e-4:
                    best, current_sizes, improved = value, trial, True
        for index in range(len(current_ratios)):
            for factor in (0.8, 0.9, 1.1, 1.25):
                trial_ratios = list(current_ratios)
                trial_ratios[index] = round(trial_ratios[index] * factor, 2)
                value = score(current_sizes, trial_ratios)
                if value > best + 1e-4:
                    best, current_ratios, improved = value, trial_ratios, True
        if not improved:
            break
    return tuple(current_sizes), tuple(current_ratios)


# -------------------------------------------------------------------------------------------------- presets
def preset_anchor_config(name: str, strides: Sequence[int] | None = None) -> dict[str, Any]:
    """Anchors, input scale and level strides of a detector.models preset. Unless given, strides are measured on
    the preset's real backbone, so presets with other backbones (mobilenet's levels are 32, 32, 64) are checked
    on their own grid."""
    config = get_preset(name)
    strides = strides or measure_strides(config)
    return {
        "anchor_sizes": tuple(tuple(level) for level in config.anchor_sizes),
        "aspect_ratios": tuple(config.aspect_ratios),
        "min_size": int(config.min_size), "max_size": int(config.max_size), "strides": tuple(int(s) for s in strides),
    }


def measure_strides(config: ModelConfig, side: int = 512) -> tuple[int, ...]:
    """Each feature level's stride, from the shapes the preset's backbone (random weights) produces."""
    try:
        model = build_model(config).eval()
    except Exception as err:  # a backbone whose module is missing or broken: the user can still give strides
        raise ValueError(
            f"cannot build preset {config.preset!r} to measure its strides ({type(err).__name__}: {err}); "
            "pass --strides"
        ) from err
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, side, side))
    return tuple(side // int(f.shape[-1]) for f in features.values())
