"""The box-head loss variants: the seed's lambda schedule, IoU losses on decoded boxes, local installation."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss

from detector.models import build_model, get_preset
from training.losses import BoxHeadLoss, CustomLossRoIHeads, install_box_loss, iou_mix_weight

NUM_CLASSES = 11
CODER = BoxCoder((10.0, 10.0, 5.0, 5.0))  # torchvision's RoIHeads weights


def _batch(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, proposals: torch.Tensor, labels: torch.Tensor,
           seed: int = 0):
    """Head outputs whose regression for each RoI's label decodes exactly to `pred_boxes`."""
    generator = torch.Generator().manual_seed(seed)
    n = len(proposals)
    class_logits = torch.randn(n, NUM_CLASSES, generator=generator)
    box_regression = torch.randn(n, NUM_CLASSES * 4, generator=generator)
    codes = CODER.encode_single(pred_boxes, proposals)
    per_class = box_regression.view(n, NUM_CLASSES, 4)
    per_class[torch.arange(n), labels] = codes
    targets = CODER.encode_single(gt_boxes, proposals)
    return class_logits, box_regression.requires_grad_(), [labels], [targets], [proposals]


# Two positives with hand-computed IoU terms, and one background RoI.
PRED = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 5.0]])
GT = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 5.0]])
PROPOSALS = torch.tensor([[1.0, 1.0, 12.0, 11.0], [19.0, 21.0, 31.0, 38.0], [0.0, 0.0, 6.0, 6.0]])
LABELS = torch.tensor([3, 7, 0])
# box 1: IoU 50/150 = 1/3; enclosing box = union (15 x 10), so GIoU = IoU; centres 5 px apart, diagonal^2 = 325;
# same aspect ratio, so CIoU's v term is 0. Box 2 is a perfect prediction (loss 0).
IOU_1 = 1 / 3
EXPECTED_PER_BOX = {"giou": 1 - IOU_1, "diou": 1 - IOU_1 + 25 / 325, "ciou": 1 - IOU_1 + 25 / 325}


def test_seed_lambda_schedule():
    assert [iou_mix_weight(e) for e in range(1, 6)] == [0.0] * 5  # before epoch 6 (1-based): no IoU term
    assert iou_mix_weight(6) == pytest.approx(0.1)
    assert iou_mix_weight(7) == pytest.approx(0.15)
    assert iou_mix_weight(10) == pytest.approx(0.3)
    assert iou_mix_weight(14) == pytest.approx(0.5)
    assert iou_mix_weight(15) == pytest.approx(0.5)  # capped


def test_original_is_torchvision_fastrcnn_loss():
    inputs = _batch(PRED, GT, PROPOSALS, LABELS)
    ours = BoxHeadLoss("original")(*inputs, CODER)
    theirs = fastrcnn_loss(*inputs[:4])
    assert set(ours) == {"loss_classifier", "loss_box_reg"}
    assert torch.equal(ours["loss_classifier"], theirs[0]) and torch.equal(ours["loss_box_reg"], theirs[1])


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_box_variants_replace_smooth_l1_with_iou_loss_of_decoded_boxes(kind):
    inputs = _batch(PRED, GT, PROPOSALS, LABELS)
    losses = BoxHeadLoss(f"{kind}_box")(*inputs, CODER)
    # sum over the positives, divided by all sampled RoIs (torchvision's normalisation)
    assert losses["loss_box_reg"].item() == pytest.approx(EXPECTED_PER_BOX[kind] / 3, abs=1e-5)
    assert losses["loss_classifier"].item() == pytest.approx(fastrcnn_loss(*inputs[:4])[0].item())
    losses["loss_box_reg"].backward()
    grad = inputs[1].grad.view(3, NUM_CLASSES, 4)
    assert grad[0, 3].abs().sum() > 0  # the imperfect positive's regression for its own class learns
    assert grad[2].abs().sum() == 0  # background RoIs have no box loss


def test_box_weight_scales_the_box_loss():
    inputs = _batch(PRED, GT, PROPOSALS, LABELS)
    plain = BoxHeadLoss("diou_box")(*inputs, CODER)["loss_box_reg"]
    double = BoxHeadLoss("diou_box", box_loss_weight=2.0)(*inputs, CODER)["loss_box_reg"]
    assert double.item() == pytest.approx(2 * plain.item())


@pytest.mark.parametrize("kind", ["diou", "ciou"])
def test_seed_variant_adds_weighted_iou_term_from_epoch_6(kind):
    inputs = _batch(PRED, GT, PROPOSALS, LABELS)
    original = fastrcnn_loss(*inputs[:4])
    loss = BoxHeadLoss(kind, epoch=5)
    before = loss(*inputs, CODER)
    assert "loss_iou" not in before
    assert torch.equal(before["loss_classifier"], original[0]) and torch.equal(before["loss_box_reg"], original[1])
    loss.epoch = 8  # lambda = 0.1 + 2 * 0.05
    after = loss(*inputs, CODER)
    mean_iou_loss = EXPECTED_PER_BOX[kind] / 2  # mean over the two positives, the second one perfect
    assert after["loss_iou"].item() == pytest.approx(0.2 * mean_iou_loss, abs=1e-5)
    assert torch.equal(after["loss_box_reg"], original[1])  # SmoothL1 stays the box regression loss


def test_no_positive_roi_gives_finite_zero_iou_terms():
    labels = torch.zeros(3, dtype=torch.int64)
    inputs = _batch(PRED, GT, PROPOSALS, labels)
    mixed = BoxHeadLoss("ciou", epoch=10)(*inputs, CODER)
    box = BoxHeadLoss("giou_box")(*inputs, CODER)
    assert mixed["loss_iou"].item() == 0.0 and box["loss_box_reg"].item() == 0.0
    (mixed["loss_iou"] + box["loss_box_reg"]).backward()  # still part of the graph (DDP needs that)
    assert all(math.isfinite(v.item()) for v in (*mixed.values(), *box.values()))


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown loss"):
        BoxHeadLoss("smooth_iou")


def test_install_changes_only_that_model_and_keeps_its_weights():
    config = get_preset("resnet18").replace(min_size=64, max_size=128, box_batch_size_per_image=32)
    torch.manual_seed(0)
    a = build_model(config)
    b = build_model(config)
    keys_before = list(a.state_dict())
    install_box_loss(a, BoxHeadLoss("ciou", epoch=6))
    assert type(a.roi_heads) is CustomLossRoIHeads
    assert type(b.roi_heads) is RoIHeads  # the other model, and torchvision itself, are untouched
    assert list(a.state_dict()) == keys_before
    images = [torch.rand(3, 48, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 8.0, 30.0, 40.0]]), "labels": torch.tensor([4])}]
    torch.manual_seed(1)
    losses_a = a.train()(images, targets)
    torch.manual_seed(1)
    losses_b = b.train()(images, targets)
    assert "loss_iou" in losses_a and "loss_iou" not in losses_b
    a.eval()
    with torch.no_grad():
        assert set(a(images)[0]) == {"boxes", "scores", "labels"}  # inference path unchanged


def test_install_original_leaves_torchvision_heads():
    model = build_model(get_preset("resnet18").replace(min_size=64, max_size=128))
    install_box_loss(model, BoxHeadLoss("original"))
    assert type(model.roi_heads) is RoIHeads
