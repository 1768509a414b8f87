"""One factory for every detector: a small, JSON-serialisable ModelConfig in, a torchvision FasterRCNN out.

The config is stored inside each checkpoint, so a checkpoint rebuilds its own architecture and nothing about a
model lives only in code. Every preset is a Faster R-CNN (the task's rule); they differ in backbone, input
scale and anchors.

- `seed`: the reference recipe exactly: fasterrcnn_resnet50_fpn_v2, anchors (4,8,12,24,48) x (0.5,1,1.5,2)
  with a new RPNHead (4 anchors per location), MultiScaleRoIAlign('0'..'3', 7, 2), 11 classes,
  positive_fraction 0.25, torchvision's 800/1333 input size.
- `fast`: the same network at an input scale chosen from digit sizes (HW2 images are ~100x50 px; the seed
  upsamples them 17x), anchors fitted to the boxes at that scale, proposal counts for a handful of digits.
- `resnet18` / `mobilenet_v3` / `effnet_lite0`: light backbones for CPU use; `effnet_lite0` has ImageNet
  weights that install with pip, our best lever for reading real photos after synthetic training.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _mobilenet_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from detector.categories import NUM_CLASSES
from detector.fileio import TensorFileError, load_state_dict_file, tensor_file_kind
from detector.jsonsafe import is_number

BACKBONES = ("resnet50_fpn_v2", "resnet18_fpn", "mobilenet_v3_fpn", "efficientnet_lite0_fpn")
WEIGHT_CHOICES = ("none", "imagenet", "coco")  # or a path to a state-dict file
NORMS = ("auto", "bn", "frozen_bn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but are not on this machine (and cannot be downloaded)."""


# Config keys that act only when predicting: changing them in a trained checkpoint leaves its weights valid
# (detector.checkpoint.update_meta may rewrite them; every other key shapes the weights or the training).
PREDICTION_ONLY_KEYS = ("rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "box_detections_per_img")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a detector's architecture; saved as JSON in each checkpoint."""

    preset: str
    backbone: str = "resnet50_fpn_v2"
    num_classes: int = NUM_CLASSES
    min_size: int = 800
    max_size: int = 1333
    # one size tuple per feature level (torchvision's AnchorGenerator); aspect ratios are h / w
    anchor_sizes: tuple[tuple[int, ...], ...] = ((4,), (8,), (12,), (24,), (48,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    roi_featmap_names: tuple[str, ...] = ("0", "1", "2", "3")
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    box_detections_per_img: int = 100
    trainable_backbone_layers: int = 5
    fpn_channels: int = 256
    # light backbones: "frozen_bn" (pretrained statistics kept) or "bn"; "auto" = frozen_bn with pretrained weights.
    # It changes the state dict (BatchNorm has num_batches_tracked), so checkpoints store the resolved value.
    norm: str = "auto"
    box_head: str = "conv4fc1"  # torchvision v2's FastRCNNConvFCHead, or "mlp2" (TwoMLPHead, lighter)
    representation_size: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """A config from untrusted JSON (a checkpoint's header): every type and size is checked before use."""
        if not isinstance(data, dict):
            raise ValueError(f"model config should be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s) {_short(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "anchor_sizes" in values:
            levels = _sequence("anchor_sizes", values["anchor_sizes"], MAX_FEATURE_LEVELS)
            values["anchor_sizes"] = tuple(
                tuple(_whole(s) for s in _sequence(f"anchor_sizes[{i}]", level, MAX_ANCHOR_SIZES))
                for i, level in enumerate(levels))
        if "aspect_ratios" in values:
            values["aspect_ratios"] = tuple(_sequence("aspect_ratios", values["aspect_ratios"], MAX_ASPECT_RATIOS))
        if "roi_featmap_names" in values:
            values["roi_featmap_names"] = tuple(_sequence("roi_featmap_names", values["roi_featmap_names"],
                                                          MAX_FEATURE_LEVELS))
        config = cls(**values)
        config.validate()
        return config

    def replace(self, **changes: Any) -> ModelConfig:
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        """Types and sizes, all bounded well above every preset, so no config can make a model allocate gigabytes."""
        if not (isinstance(self.preset, str) and 0 < len(self.preset) <= 100):
            raise ValueError(f"preset must be a name of 1..100 characters, got {_short(self.preset)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {_short(self.backbone)}; choose from {BACKBONES}")
        if not (isinstance(self.num_classes, int) and not isinstance(self.num_classes, bool)
                and self.num_classes == NUM_CLASSES):
            raise ValueError(f"num_classes must be {NUM_CLASSES} (background + 10 digits), got {_short(self.num_classes)}")
        for name, (lo, hi) in _INT_RANGES.items():
            _check_int(name, getattr(self, name), lo, hi)
        if self.max_size < self.min_size:
            raise ValueError(f"need 16 <= min_size <= max_size, got {self.min_size}/{self.max_size}")
        if not (is_number(self.box_positive_fraction) and 0 < self.box_positive_fraction <= 1):
            raise ValueError(f"box_positive_fraction must be a number in (0, 1], got {_short(self.box_positive_fraction)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {_short(self.norm)}")
        if self.box_head not in BOX_HEADS:
            raise ValueError(f"unknown box_head {_short(self.box_head)}; choose from {BOX_HEADS}")
        self._validate_extra()
        self._validate_anchors_and_levels()
        head_in = (256 if self.box_head == "conv4fc1" else self.fpn_channels) * self.roi_output_size ** 2
        if head_in * self.representation_size > MAX_BOX_HEAD_WEIGHTS:
            raise ValueError(
                f"box head too large: its first layer would have {head_in * self.representation_size:,} weights "
                f"(roi_output_size^2 x channels x representation_size), over the limit of {MAX_BOX_HEAD_WEIGHTS:,}")

    def _validate_extra(self) -> None:
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be an object, got {_short(self.extra)}")
        kwargs = self.extra.get("backbone_kwargs", {})
        if not isinstance(kwargs, dict):
            raise ValueError(f"extra.backbone_kwargs must be an object, got {_short(kwargs)}")
        if kwargs and self.backbone != "efficientnet_lite0_fpn":
            raise ValueError(f"extra.backbone_kwargs only apply to efficientnet_lite0_fpn, not {self.backbone}")
        unknown = sorted(set(kwargs) - set(EFFNET_BACKBONE_KWARGS))
        if unknown:
            raise ValueError(f"unknown extra.backbone_kwargs {_short(unknown)}; allowed: {sorted(EFFNET_BACKBONE_KWARGS)}")
        for key, value in kwargs.items():
            if not EFFNET_BACKBONE_KWARGS[key](value):
                raise ValueError(f"extra.backbone_kwargs.{key} has a bad value {_short(value)}")

    def _validate_anchors_and_levels(self) -> None:
        levels = _sequence("anchor_sizes", self.anchor_sizes, MAX_FEATURE_LEVELS)
        per_level = [_sequence(f"anchor_sizes[{i}]", level, MAX_ANCHOR_SIZES) for i, level in enumerate(levels)]
        for i, sizes in enumerate(per_level):
            for size in sizes:
                _check_int(f"anchor_sizes[{i}]", size, 1, MAX_INPUT_SIZE)
        if len({len(sizes) for sizes in per_level}) != 1:
            raise ValueError(f"every anchor_sizes level needs the same number of sizes (one RPN head serves all "
                             f"levels), got {[len(sizes) for sizes in per_level]}")
        ratios = _sequence("aspect_ratios", self.aspect_ratios, MAX_ASPECT_RATIOS)
        if not all(is_number(r) and 0.01 <= r <= 100 for r in ratios):
            raise ValueError(f"aspect ratios must be numbers in 0.01..100, got {_short(ratios)}")
        if len(per_level[0]) * len(ratios) > MAX_ANCHORS_PER_LOCATION:
            raise ValueError(f"{len(per_level[0])} sizes x {len(ratios)} aspect ratios = "
                             f"{len(per_level[0]) * len(ratios)} anchors per location, over {MAX_ANCHORS_PER_LOCATION}")
        names = feature_level_names(self)
        if len(levels) != len(names):
            raise ValueError(f"anchor_sizes has {len(levels)} levels but {self.backbone} gives {len(names)} feature "
                             f"maps {list(names)}: one size tuple per map")
        featmaps = _sequence("roi_featmap_names", self.roi_featmap_names, MAX_FEATURE_LEVELS)
        if not all(isinstance(n, str) for n in featmaps) or not set(featmaps) <= set(names) \
                or len(set(featmaps)) != len(featmaps):
            raise ValueError(f"roi_featmap_names must be distinct names among {list(names)}, got {_short(featmaps)}")


# Bounds on every size a config sets: far above every preset, far below what would exhaust a machine's memory.
MAX_INPUT_SIZE = 4096  # px (presets: 128..1333)
MAX_COUNT = 20_000  # proposals, sampled RoIs, detections per image (presets: at most 2000)
MAX_FEATURE_LEVELS = 8
MAX_ANCHOR_SIZES = 16  # per level
MAX_ASPECT_RATIOS = 16
MAX_ANCHORS_PER_LOCATION = 32  # presets: 4..8
MAX_BOX_HEAD_WEIGHTS = 2**26  # the box head's first FC layer (the seed's: 12,845,056)
BOX_HEADS = ("conv4fc1", "mlp2")
_INT_RANGES: dict[str, tuple[int, int]] = {
    "min_size": (16, MAX_INPUT_SIZE), "max_size": (16, MAX_INPUT_SIZE),
    "roi_output_size": (1, 32), "roi_sampling_ratio": (-1, 16),
    "rpn_pre_nms_top_n_train": (1, MAX_COUNT), "rpn_post_nms_top_n_train": (1, MAX_COUNT),
    "rpn_pre_nms_top_n_test": (1, MAX_COUNT), "rpn_post_nms_top_n_test": (1, MAX_COUNT),
    "rpn_batch_size_per_image": (1, MAX_COUNT), "box_batch_size_per_image": (1, MAX_COUNT),
    "box_detections_per_img": (1, MAX_COUNT), "trainable_backbone_layers": (0, 6),
    "fpn_channels": (1, 1024), "representation_size": (1, 4096),
}
EFFNET_BACKBONE_KWARGS: dict[str, Any] = {  # efficientnet_lite_fpn options a config may set, with their checks
    "include_stride4": lambda v: isinstance(v, bool),
    "extra_pool_level": lambda v: isinstance(v, bool),
    "drop_path_rate": lambda v: is_number(v) and 0 <= v < 1,
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer, got {_short(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {_short(value)}")


def _whole(value: Any) -> Any:
    """JSON may spell an integer as 32.0; anything else is left for validate() to refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _sequence(name: str, value: Any, max_len: int) -> tuple:
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= max_len:
        raise ValueError(f"{name} must be a list of 1..{max_len} items, got {_short(value)}")
    return tuple(value)


def feature_level_names(config: ModelConfig) -> tuple[str, ...]:
    """The names of the feature maps the config's backbone gives, in order (one anchor size tuple each)."""
    if config.backbone in ("resnet50_fpn_v2", "resnet18_fpn"):
        return ("0", "1", "2", "3", "pool")
    if config.backbone == "mobilenet_v3_fpn":
        return ("0", "1", "pool")
    from detector.backbones.efficientnet_lite import backbone_feature_strides

    kwargs = config.extra.get("backbone_kwargs", {})
    return tuple(backbone_feature_strides(kwargs.get("include_stride4", False), kwargs.get("extra_pool_level", True)))


_SMALL_PROPOSALS: dict[str, Any] = dict(
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
    rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
    rpn_batch_size_per_image=128, box_batch_size_per_image=128,
)
# Anchors fitted with `python -m training.stats --layouts <SVHN layouts>` on the real digit boxes at each input
# scale (grid-exact recall: the share of boxes whose best anchor reaches IoU 0.5 / 0.7). The seed's anchors reach
# 0.0% / 0.0% at its 800 px input, 24.9% / 3.6% at 128 px: its digits are ~377 px tall at 800 px. Ratios are h/w.
_RESNET_FPN_128: dict[str, Any] = dict(  # 98.1/78.4
    anchor_sizes=((32,), (48,), (64,), (96,), (128,)), aspect_ratios=(1.3, 1.7, 2.5, 3.9))
_RESNET_FPN_160: dict[str, Any] = dict(  # 98.2/84.9
    anchor_sizes=((40,), (60,), (80,), (120,), (160,)), aspect_ratios=(1.3, 1.7, 2.5, 3.9))
# EfficientNet-Lite FPN levels have strides 8/16/32/64; two sizes per level: 98.1% / 77.6% at 128 px
_EFFNET_128: dict[str, Any] = dict(anchor_sizes=((32, 48), (64, 96), (128, 192), (256, 384)), aspect_ratios=(1.3, 1.8, 2.5, 3.5))

PRESETS: dict[str, ModelConfig] = {
    "seed": ModelConfig(preset="seed"),
    "fast": ModelConfig(
        preset="fast", min_size=160, max_size=640, box_detections_per_img=30, **_SMALL_PROPOSALS, **_RESNET_FPN_160,
    ),
    "resnet18": ModelConfig(
        preset="resnet18", backbone="resnet18_fpn", min_size=128, max_size=512, fpn_channels=128,
        box_head="mlp2", representation_size=256, box_detections_per_img=30, **_SMALL_PROPOSALS, **_RESNET_FPN_128,
    ),
    "mobilenet_v3": ModelConfig(
        # its FPN levels have strides 32/32/64, too coarse for small inputs: 256 px, anchors refined by training.stats
        preset="mobilenet_v3", backbone="mobilenet_v3_fpn", min_size=256, max_size=1024, fpn_channels=256,
        anchor_sizes=((91,), (123,), (163,)), aspect_ratios=(1.58, 2.22, 2.95),
        roi_featmap_names=("0", "1"), box_head="mlp2", representation_size=256, box_detections_per_img=30,
        trainable_backbone_layers=6, **_SMALL_PROPOSALS,
    ),
    "effnet_lite0": ModelConfig(
        preset="effnet_lite0", backbone="efficientnet_lite0_fpn", min_size=128, max_size=512, fpn_channels=96,
        roi_featmap_names=("0", "1", "2"), **_EFFNET_128, box_head="mlp2", representation_size=256, box_detections_per_img=30,
        **_SMALL_PROPOSALS,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


# ----------------------------------------------------------------------------------------------- weights
def _hub_file_hint(enum_value: Any) -> str:
    url = enum_value.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return f"put the file {url.rsplit('/', 1)[-1]} (from {url}) at {target}"


def fetch_torchvision_state_dict(enum_value: Any) -> dict[str, torch.Tensor]:
    """torchvision weight enums read torch's hub cache first, so this works offline when the file is there."""
    try:
        return enum_value.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # URLError, HTTPError, socket errors: all mean "not available here"
        raise WeightsUnavailableError(
            f"pretrained weights {enum_value} are not in torch's hub cache and cannot be downloaded "
            f"({type(err).__name__}: {err}); {_hub_file_hint(enum_value)}, or use weights=none"
        ) from err


def _weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A user-supplied weights= PATH, read by detector.fileio's one state-dict reader."""
    try:
        return load_state_dict_file(path)
    except TensorFileError as err:
        hint = "" if Path(path).is_file() else " (weights= takes none, imagenet, coco or a path)"
        raise WeightsUnavailableError(f"{err}{hint}") from err


def resolve_norm(config: ModelConfig, weights: str) -> str:
    """Pretrained statistics are frozen (tiny batches would ruin them); from scratch, BatchNorm must learn them."""
    if config.norm != "auto":
        return config.norm
    if weights not in WEIGHT_CHOICES and tensor_file_kind(weights) == "safetensors":  # fine-tuning a file
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                return norm_from_keys(f.keys())
        except (SafetensorError, OSError) as err:
            raise WeightsUnavailableError(f"{weights}: not a readable safetensors weights file, truncated or damaged "
                                          f"({err}); copy it again") from None
    return "frozen_bn" if weights in ("imagenet", "coco") else "bn"


def norm_from_keys(keys: Iterable[str]) -> str:
    """BatchNorm has num_batches_tracked, FrozenBatchNorm2d does not: a state dict tells which one it came from."""
    tracked = any(k.endswith("num_batches_tracked") and k.startswith("backbone.body.") for k in keys)
    return "bn" if tracked else "frozen_bn"


def finalize_config(config: ModelConfig, weights: str) -> ModelConfig:
    """The config to save with a model built with `weights`: rebuilding it from the file alone gives the same net."""
    return config.replace(norm=resolve_norm(config, weights))


def _norm_layer(norm: str) -> type[nn.Module]:
    return misc_nn_ops.FrozenBatchNorm2d if norm == "frozen_bn" else nn.BatchNorm2d


def _build_backbone(config: ModelConfig, weights: str) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    from torchvision.models import (
        MobileNet_V3_Large_Weights,
        ResNet18_Weights,
        ResNet50_Weights,
        mobilenet_v3_large,
        resnet18,
        resnet50,
    )

    imagenet = weights == "imagenet"
    norm = resolve_norm(config, weights)
    trainable = config.trainable_backbone_layers
    if config.backbone == "efficientnet_lite0_fpn":
        from detector.backbones.efficientnet_lite import efficientnet_lite_fpn, preprocessing

        backbone = efficientnet_lite_fpn(
            variant="lite0", weights="imagenet" if imagenet else "none", fpn_channels=config.fpn_channels,
            norm_layer=_norm_layer(norm), **config.extra.get("backbone_kwargs", {}),
        )
        mean, std = preprocessing("lite0")
        return backbone, tuple(mean), tuple(std)
    if config.backbone in ("resnet50_fpn_v2", "resnet18_fpn"):
        is_50 = config.backbone == "resnet50_fpn_v2"
        enum = ResNet50_Weights.IMAGENET1K_V1 if is_50 else ResNet18_Weights.IMAGENET1K_V1
        # torchvision's resnet50_fpn_v2 uses plain BatchNorm even when pretrained; keep that for the seed.
        net = (resnet50 if is_50 else resnet18)(weights=None, norm_layer=nn.BatchNorm2d if is_50 else _norm_layer(norm))
        if imagenet:
            net.load_state_dict(fetch_torchvision_state_dict(enum))
        return _resnet_fpn(net, trainable, config.fpn_channels, fpn_norm=nn.BatchNorm2d if is_50 else None), \
            IMAGENET_MEAN, IMAGENET_STD
    if config.backbone == "mobilenet_v3_fpn":
        net = mobilenet_v3_large(weights=None, norm_layer=_norm_layer(norm))
        if imagenet:
            net.load_state_dict(fetch_torchvision_state_dict(MobileNet_V3_Large_Weights.IMAGENET1K_V1))
        return _mobilenet_extractor(net, True, min(trainable, 6)), IMAGENET_MEAN, IMAGENET_STD
    raise ValueError(f"unknown backbone {config.backbone!r}")


def _resnet_fpn(net: nn.Module, trainable_layers: int, out_channels: int, fpn_norm: Any) -> BackboneWithFPN:
    """torchvision's _resnet_fpn_extractor with a configurable FPN width (light presets use 128, not 256)."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5 for ResNets, got {trainable_layers}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in net.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    stage_channels = [cast(int, net.inplanes) // 8 * 2**i for i in range(4)]  # inplanes is layer4's width after building
    return BackboneWithFPN(
        net, {f"layer{i + 1}": str(i) for i in range(4)}, stage_channels, out_channels,
        extra_blocks=LastLevelMaxPool(), norm_layer=fpn_norm,
    )


def _coco_state_dict(config: ModelConfig) -> dict[str, torch.Tensor]:
    if config.backbone != "resnet50_fpn_v2":
        raise WeightsUnavailableError(f"weights=coco exists only for resnet50_fpn_v2 presets, not {config.backbone}")
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    state = fetch_torchvision_state_dict(FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1)
    # the RPN head (4 anchors per location, not 3) and the 11-class predictor are new
    return {k: v for k, v in state.items() if not k.startswith(("rpn.head.", "roi_heads.box_predictor."))}


def build_model(config: ModelConfig, weights: str = "none") -> FasterRCNN:
    """Build the detector for `config`; `weights` is none | imagenet (backbone) | coco (whole net) | a file path."""
    config.validate()
    is_path = weights not in WEIGHT_CHOICES
    backbone, mean, std = _build_backbone(config, weights if weights in WEIGHT_CHOICES else "none")
    anchor_generator = AnchorGenerator(config.anchor_sizes, (config.aspect_ratios,) * len(config.anchor_sizes))
    rpn_head = RPNHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0])
    roi_pool = MultiScaleRoIAlign(list(config.roi_featmap_names), config.roi_output_size, config.roi_sampling_ratio)
    resolution = config.roi_output_size
    if config.box_head == "conv4fc1":
        box_head: nn.Module = FastRCNNConvFCHead(
            (backbone.out_channels, resolution, resolution), [256, 256, 256, 256], [config.representation_size],
            norm_layer=nn.BatchNorm2d,
        )
    elif config.box_head == "mlp2":
        box_head = TwoMLPHead(cast(int, backbone.out_channels) * resolution**2, config.representation_size)
    else:
        raise ValueError(f"unknown box_head {config.box_head!r}; choose conv4fc1 or mlp2")
    model = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=list(mean),
        image_std=list(std),
        rpn_anchor_generator=anchor_generator,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=config.rpn_batch_size_per_image,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(config.representation_size, config.num_classes),
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_positive_fraction=config.box_positive_fraction,
        box_detections_per_img=config.box_detections_per_img,
    )
    if weights == "coco":
        model.load_state_dict(_coco_state_dict(config), strict=False)
    elif is_path:
        state = _weights_file(weights)
        expected = model.state_dict()
        wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
        if wrong:
            k = wrong[0]
            raise WeightsUnavailableError(
                f"{weights}: {len(wrong)} tensor(s) have the wrong shape for a {config.preset} model (e.g. {k}: "
                f"{tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model); were these weights "
                "trained with another preset or model settings?")
        result = model.load_state_dict(state, strict=False)
        if len(result.missing_keys) == len(model.state_dict()):
            raise WeightsUnavailableError(f"{weights}: none of its tensors match a {config.preset} model")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "ModelConfig", "PRESETS", "get_preset", "build_model", "finalize_config", "resolve_norm", "norm_from_keys",
    "WeightsUnavailableError", "count_parameters",
]
