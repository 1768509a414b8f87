"""Presets build, checkpoints round-trip, and bad checkpoint files are refused with a clear message."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from detector.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    update_meta,
)
from detector.models import PRESETS, WeightsUnavailableError, build_model, get_preset
from detector.predictor import Predictor


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_faster_rcnn_that_trains_and_predicts(name: str) -> None:
    from torchvision.models.detection import FasterRCNN

    config = get_preset(name).replace(min_size=64, max_size=128)
    model = build_model(config)
    assert isinstance(model, FasterRCNN)
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    model.train()
    target = {"boxes": torch.tensor([[10.0, 5.0, 22.0, 40.0]]), "labels": torch.tensor([4])}
    losses = model([torch.rand(3, 47, 104)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 47, 104)])[0]
    assert out["boxes"].shape[1] == 4


def test_seed_preset_is_the_reference_recipe() -> None:
    model = build_model(get_preset("seed"))
    anchors = model.rpn.anchor_generator
    assert anchors.sizes == ((4,), (8,), (12,), (24,), (48,))
    assert anchors.aspect_ratios == ((0.5, 1.0, 1.5, 2.0),) * 5
    assert model.rpn.head.cls_logits.out_channels == 4
    assert model.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert model.roi_heads.box_roi_pool.output_size == (7, 7)
    assert model.roi_heads.box_roi_pool.sampling_ratio == 2
    assert model.roi_heads.fg_bg_sampler.positive_fraction == 0.25
    assert (model.transform.min_size, model.transform.max_size) == ((800,), 1333)


def test_pretrained_weights_unavailable_offline_say_where_to_put_the_file(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: nothing to find, no network either
    with pytest.raises(WeightsUnavailableError, match=r"put the file resnet18-.*\.pth .* at .*checkpoints"):
        build_model(get_preset("resnet18"), weights="imagenet")


def test_checkpoint_round_trip_preserves_weights_and_metadata(tiny_checkpoint: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    meta = loaded.meta
    assert meta.config.preset == "resnet18" and meta.config.min_size == 64
    assert meta.class_names == [str(d) for d in range(10)] and meta.code_version
    copy = tmp_path / "copy.safetensors"
    save_checkpoint(copy, loaded.model.state_dict(), meta)
    again = load_checkpoint(copy)
    for (k, a), (_, b) in zip(loaded.model.state_dict().items(), again.model.state_dict().items(), strict=False):
        assert torch.equal(a, b), k
    update_meta(copy, thresholds={"number_score": 0.42}, metrics={"AP": 0.5})
    assert read_meta(copy).thresholds.number_score == 0.42 and read_meta(copy).thresholds.nms_iou == 0.5
    assert read_meta(copy).metrics == {"AP": 0.5}


def test_update_meta_changes_only_prediction_settings_of_the_config(tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "fewer_proposals.safetensors"
    update_meta(tiny_checkpoint, to=copy, config={"rpn_post_nms_top_n_test": 7})
    model = load_checkpoint(copy).model
    assert model.rpn._post_nms_top_n["testing"] == 7  # the rebuilt model uses it
    assert read_meta(copy).config.min_size == read_meta(tiny_checkpoint).config.min_size
    with pytest.raises(ValueError, match="fpn_channels"):
        update_meta(copy, config={"fpn_channels": 8, "rpn_post_nms_top_n_test": 5})
    assert read_meta(copy).config.rpn_post_nms_top_n_test == 7  # a refused change writes nothing


def test_half_precision_checkpoint_loads_as_float32(tiny_checkpoint: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    half = tmp_path / "half.safetensors"
    save_checkpoint(half, loaded.model.state_dict(), loaded.meta, half=True)
    assert half.stat().st_size < tiny_checkpoint.stat().st_size * 0.6
    model = load_checkpoint(half).model
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {os.environ['EXPLOIT_MARKER']}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    for name, writer in (("raw.safetensors", lambda f: pickle.dump(_Exploit(), f)),
                         ("torch.pt", lambda f: torch.save({"model": _Exploit()}, f))):
        path = tmp_path / name
        with path.open("wb") as f:
            writer(f)
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)
        with pytest.raises(WeightsUnavailableError, match="refusing to unpickle"):
            build_model(get_preset("resnet18"), weights=str(path))
    assert not marker.exists()


def test_corrupt_truncated_foreign_and_mismatched_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_checkpoint(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    state = load_checkpoint(tiny_checkpoint).model.state_dict()
    state.pop(next(iter(state)))
    save_checkpoint(tmp_path / "mismatch.safetensors", state, CheckpointMeta(config=get_preset("resnet18")))
    with pytest.raises(CheckpointError, match="do not match a 'resnet18' model"):
        load_checkpoint(tmp_path / "mismatch.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_predictor_keeps_raw_candidates_in_original_pixels(tiny_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    images = [Image.new("RGB", (104, 47), (200, 200, 200)), Image.new("L", (300, 90), 30)]
    candidates = predictor.candidates(images)
    assert len(candidates) == 2
    for det, image in zip(candidates, images, strict=False):
        assert det.boxes.shape[1] == 4 and det.labels.dtype == torch.int64
        assert bool((det.scores >= predictor.score_floor).all())
        assert bool((det.boxes[:, 2] <= image.width + 1e-3).all() and (det.boxes[:, 3] <= image.height + 1e-3).all())
        assert bool(((det.labels >= 1) & (det.labels <= 10)).all())


def test_header_lengths_that_look_like_pickle_magic_still_load(tmp_path: Path) -> None:
    """A safetensors header length whose low byte is 0x80 starts the file like a pickle; it must still load."""
    seen_0x80 = False
    for pad in range(0, 320, 5):  # header lengths step by 8 bytes: 64 sizes cover every low byte
        path = tmp_path / f"{pad}.safetensors"
        save_checkpoint(path, {"w": torch.zeros(3)}, CheckpointMeta(config=get_preset("resnet18"),
                                                                    training={"pad": "x" * pad}))
        seen_0x80 |= path.read_bytes()[0] == 0x80
        assert read_meta(path).training["pad"] == "x" * pad
    assert seen_0x80  # the loop did cover the case


def test_pretrained_light_model_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    """Pretrained backbones freeze BatchNorm (no num_batches_tracked): the saved config must rebuild that net."""
    from detector.models import finalize_config

    config = finalize_config(get_preset("effnet_lite0"), "imagenet")
    assert config.norm == "frozen_bn"
    model = build_model(config, weights="imagenet")
    path = save_checkpoint(tmp_path / "e.safetensors", model.state_dict(), CheckpointMeta(config=config))
    loaded = load_checkpoint(path).model
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=False):
        assert torch.equal(a, b), k
    legacy = save_checkpoint(tmp_path / "legacy.safetensors", model.state_dict(),
                             CheckpointMeta(config=config.replace(norm="auto")))  # written before `norm` existed
    assert load_checkpoint(legacy).meta.config.norm == "frozen_bn"


def test_cpu_prediction_folds_batchnorm_and_runs_channels_last_with_the_same_detections() -> None:
    """The CPU speed-ups (BatchNorm folded into the convolutions, NHWC) must not change what the default finds."""
    from PIL import Image
    from torchvision.ops import FrozenBatchNorm2d

    from detector.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from detector.predictor import Predictor

    fast = Predictor.from_checkpoint(DEFAULT_CHECKPOINT, device="cpu")
    conv = next(m for m in fast.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert conv.bias is not None  # the stem's BatchNorm lives in it now
    assert not any(isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)) for m in fast.model.modules())
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in fast.model.modules())
    loaded = load_checkpoint(DEFAULT_CHECKPOINT, device=torch.device("cpu"))
    plain = Predictor(model=loaded.model, meta=loaded.meta, device=torch.device("cpu"))
    images = [Image.open(p).convert("RGB") for p in sorted((Path(__file__).parents[1] / "assets" / "valid").glob("*.png"))[:6]]
    for a, b in zip(fast.candidates(images, batch_size=1), plain.candidates(images, batch_size=1), strict=True):
        assert len(a) == len(b)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)
        assert torch.equal(a.labels, b.labels)


def test_fold_batchnorm_keeps_outputs_and_leaves_training_norms_alone() -> None:
    from torchvision.ops import FrozenBatchNorm2d

    from detector.predictor import fold_batchnorm

    torch.manual_seed(0)
    frozen = FrozenBatchNorm2d(8, eps=1e-3)
    frozen.weight.uniform_(0.5, 2)
    frozen.bias.normal_()
    frozen.running_mean.normal_()
    frozen.running_var.uniform_(0.5, 2)
    live = torch.nn.BatchNorm2d(8)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), frozen, torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), live))
    x = torch.randn(2, 3, 12, 12)
    net[3].train()  # a BatchNorm still training has no fixed affine map: never folded
    before = net[:3](x)
    assert fold_batchnorm(net) == 1
    assert isinstance(net[1], torch.nn.Identity) and net[3][1] is live
    torch.testing.assert_close(net[:3](x), before, atol=1e-5, rtol=1e-5)


def test_pointwise_as_linear_keeps_outputs_in_both_layouts_and_leaves_other_convolutions_alone() -> None:
    from detector.predictor import PointwiseAsLinear, pointwise_as_linear

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Conv2d(16, 4, 1, bias=False), torch.nn.Conv2d(4, 4, 1, stride=2),
                                                  torch.nn.Conv2d(4, 8, 1, groups=2)))
    x = torch.randn(2, 3, 13, 11)
    before = net(x)
    assert pointwise_as_linear(net) == 2  # the strided and the grouped 1x1 convolutions stay as they are
    assert isinstance(net[1], PointwiseAsLinear) and isinstance(net[3][0], PointwiseAsLinear) and net[3][0].bias is None
    assert isinstance(net[0], torch.nn.Conv2d) and isinstance(net[3][1], torch.nn.Conv2d)
    torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last)), before, atol=1e-5, rtol=1e-5)
