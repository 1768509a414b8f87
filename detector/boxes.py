"""Box conversions: COCO files store [x, y, w, h]; models and torchvision.ops use [x1, y1, x2, y2]."""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torchvision.ops import box_convert

# a TypeVar, so a conversion returns what it was given (an array stays an array)
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def xywh_to_xyxy(boxes: ArrayOrTensor) -> ArrayOrTensor:
    if isinstance(boxes, torch.Tensor):
        return box_convert(boxes, "xywh", "xyxy")
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: ArrayOrTensor) -> ArrayOrTensor:
    if isinstance(boxes, torch.Tensor):
        return box_convert(boxes, "xyxy", "xywh")
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def clip_xyxy(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip to the image; the caller decides what to do with boxes that become empty."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def box_centre_x(boxes_xyxy: ArrayOrTensor) -> ArrayOrTensor:
    return (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
