"""Training augmentation with torchvision.transforms.v2, so any geometric transform moves the boxes too.

The seed's recipe is photometric only: RandomApply(ColorJitter(0.2, 0.2, 0.2), p=0.3) and
RandomApply(GaussianBlur(3, (0.3, 0.8)), p=0.3). Geometric options (RandomAffine, RandomPerspective) are
off by default; when on, boxes are tv_tensors.BoundingBoxes (XYXY) and are transformed with the image, then
SanitizeBoundingBoxes drops boxes (and their labels) pushed out of the image. No horizontal flip: a mirrored
digit is not a digit.

No ImageNet normalisation here: torchvision's detection models normalise inside
(GeneralizedRCNNTransform with the backbone's mean/std, which detector.models sets), so the transform only
scales pixels to [0, 1] floats, exactly what detector.predictor feeds the model at inference.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from training.config import TrainConfig


def build_train_transform(config: TrainConfig) -> v2.Compose:
    steps: list[v2.Transform] = []
    if config.color_p > 0 and config.color_jitter > 0:
        jitter = config.color_jitter
        steps.append(v2.RandomApply([v2.ColorJitter(jitter, jitter, jitter)], p=config.color_p))
    if config.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(config.blur_kernel, tuple(config.blur_sigma))], p=config.blur_p))
    geometric = False
    if config.affine_p > 0:
        affine = v2.RandomAffine(
            degrees=config.degrees, translate=(config.translate, config.translate),
            scale=(1 - config.scale, 1 + config.scale), shear=config.shear or None,
        )
        steps.append(v2.RandomApply([affine], p=config.affine_p))
        geometric = True
    if config.perspective_p > 0:
        steps.append(v2.RandomPerspective(distortion_scale=config.perspective, p=config.perspective_p))
        geometric = True
    if geometric:
        steps.append(v2.ClampBoundingBoxes())
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    steps.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
    return v2.Compose(steps)


def make_sample(image: Image.Image | np.ndarray, boxes: np.ndarray, labels: np.ndarray
                ) -> tuple[tv_tensors.Image, dict[str, torch.Tensor]]:
    """An image and its target in the form v2 transforms and torchvision's detection models expect."""
    tensor = v2.functional.to_image(image)
    height, width = tensor.shape[-2:]
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
    }
    return tensor, target
