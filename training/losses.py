"""Loss variants for the Fast R-CNN box head, built on torchvision.ops' IoU losses.

- `original`: torchvision's own `fastrcnn_loss`: cross-entropy + SmoothL1 (beta 1/9) on the encoded box
  regression of the positive samples, summed and divided by the number of sampled RoIs.
- `diou` / `ciou`: the seed's variant. The box regression loss stays SmoothL1; from epoch
  `iou_start_epoch` (1-based, as the seed counts: the 6th epoch) an IoU loss of the positive samples is
  added to the classification loss with weight lambda = min(0.1 + (epoch - 6) * 0.05, 0.5). The optimiser
  sees CE + lambda * IoU-loss + SmoothL1; we log the lambda * IoU-loss part as its own component `loss_iou`
  so the curves show it (the sum is the same as folding it into `loss_classifier`).
- `giou_box` / `diou_box` / `ciou_box`: the ordinary use of IoU losses: the IoU loss replaces SmoothL1 as
  the box regression loss, with torchvision's normalisation (sum over positives / number of sampled RoIs).
For the IoU losses the regression of each positive RoI (for its ground-truth class) is decoded to a box
with the model's own `box_coder`, against the same proposal its target was encoded from.

The loss is swapped on one model only: `install_box_loss` turns that model's RoIHeads instance into a
`CustomLossRoIHeads` (a subclass whose training forward calls the chosen loss); no module-level function is
patched, so other models in the process keep torchvision's behaviour. Weights and state-dict keys are
unchanged, so checkpoints load into plain models.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

IOU_LOSSES: dict[str, Callable[..., Tensor]] = {
    "giou": generalized_box_iou_loss,
    "diou": distance_box_iou_loss,
    "ciou": complete_box_iou_loss,
}
MIXED = ("diou", "ciou")  # the seed's: an IoU term added to the classification loss
BOX = ("giou_box", "diou_box", "ciou_box")  # an IoU loss instead of SmoothL1
LOSSES = ("original",) + MIXED + BOX  # every `loss=` choice


def iou_mix_weight(epoch: int, start: int = 6, base: float = 0.1, step: float = 0.05, cap: float = 0.5) -> float:
    """The seed's lambda for 1-based `epoch`: 0 before `start`, then base + (epoch - start) * step, capped."""
    if epoch < start:
        return 0.0
    return min(base + (epoch - start) * step, cap)


def positive_boxes(box_regression: Tensor, labels: list[Tensor], regression_targets: list[Tensor],
                   proposals: list[Tensor], box_coder: BoxCoder) -> tuple[Tensor, Tensor]:
    """(predicted, ground-truth) xyxy boxes of the positive RoIs, decoded in float32 from their proposals."""
    labels_cat = torch.cat(labels, dim=0)
    targets = torch.cat(regression_targets, dim=0)
    anchors = torch.cat(proposals, dim=0).float()
    positive = torch.where(labels_cat > 0)[0]
    per_class = box_regression.reshape(box_regression.shape[0], -1, 4)
    regression = per_class[positive, labels_cat[positive]].float()
    predicted = box_coder.decode_single(regression, anchors[positive])
    target = box_coder.decode_single(targets[positive].float(), anchors[positive])
    return predicted, target


@dataclass
class BoxHeadLoss:
    """One of the loss variants (see the module docstring); `epoch` (1-based) is set by the training loop."""

    kind: str = "original"
    iou_start_epoch: int = 6
    iou_lambda: float = 0.1
    iou_lambda_step: float = 0.05
    iou_lambda_max: float = 0.5
    box_loss_weight: float = 1.0
    epoch: int = 1

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"unknown loss {self.kind!r}; choose from {', '.join(LOSSES)}")

    @property
    def mix_weight(self) -> float:
        if self.kind not in MIXED:
            return 0.0
        return iou_mix_weight(self.epoch, self.iou_start_epoch, self.iou_lambda, self.iou_lambda_step,
                              self.iou_lambda_max)

    def __call__(self, class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                 regression_targets: list[Tensor], proposals: list[Tensor], box_coder: BoxCoder) -> dict[str, Tensor]:
        if self.kind in BOX:
            iou_loss = IOU_LOSSES[self.kind.removesuffix("_box")]
            labels_cat = torch.cat(labels, dim=0)
            predicted, target = positive_boxes(box_regression, labels, regression_targets, proposals, box_coder)
            box_loss = iou_loss(predicted, target, reduction="sum") / labels_cat.numel()
            return {"loss_classifier": F.cross_entropy(class_logits, labels_cat),
                    "loss_box_reg": self.box_loss_weight * box_loss}
        classification, box_loss = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        out = {"loss_classifier": classification, "loss_box_reg": box_loss}
        weight = self.mix_weight
        if weight > 0:
            predicted, target = positive_boxes(box_regression, labels, regression_targets, proposals, box_coder)
            if len(predicted):
                iou = IOU_LOSSES[self.kind](predicted, target, reduction="mean")
            else:  # no positive RoI in the batch: a zero that keeps the graph (DDP needs every rank's grads)
                iou = box_regression.sum() * 0.0
            out["loss_iou"] = weight * iou
        return out


class CustomLossRoIHeads(RoIHeads):
    """torchvision's RoIHeads with a pluggable box-head loss (`self.box_loss`); inference is unchanged."""

    box_loss: BoxHeadLoss

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        losses = self.box_loss(class_logits, box_regression, labels, regression_targets, proposals, self.box_coder)
        return [], losses


def install_box_loss(model: torch.nn.Module, loss: BoxHeadLoss) -> BoxHeadLoss:
    """Give this model's box head `loss` (a no-op for `original`, which is torchvision's own code path)."""
    heads = model.roi_heads
    if not isinstance(heads, RoIHeads):
        raise TypeError(f"expected a torchvision RoIHeads, got {type(heads).__name__}")
    if heads.has_mask() or heads.has_keypoint():
        raise ValueError("custom box losses support box-only Faster R-CNN heads (no mask/keypoint branch)")
    if loss.kind == "original" and type(heads) is RoIHeads:
        return loss
    if type(heads) is RoIHeads:
        heads.__class__ = CustomLossRoIHeads  # this instance only; weights and state-dict keys stay the same
    heads.box_loss = loss
    return loss
