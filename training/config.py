"""The one place for training settings: every option, its default, its help text, and per-preset defaults.

A run's settings resolve in three layers, later ones winning:
  1. `TrainConfig`'s field defaults: the seed's recipe (AdamW lr 1e-4 wd 1e-4, batch 8, 15 epochs,
     CosineAnnealingLR(T_max=epochs, eta_min=1e-6) stepped per epoch, ColorJitter/GaussianBlur at p=0.3);
  2. `PRESET_TRAINING[preset]`: what a lighter preset changes, each with its reason;
  3. the user's `key=value` overrides on the command line.
Keys that name a scalar field of `detector.models.ModelConfig` (min_size, max_size, ...) change the model
instead (`imgsz` is Ultralytics' name for min_size). The resolved result is saved as the run's config.json.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from detector.coco_eval import BACKENDS as COCO_BACKENDS
from detector.models import PRESETS, WEIGHT_CHOICES, ModelConfig, get_preset
from detector.scoring import MAP_SCORE_FLOOR
from training.losses import LOSSES

AMP_CHOICES = ("none", "bf16", "fp16")
OPTIMIZERS = ("adamw", "sgd")
ALIASES = {"imgsz": "min_size", "batch_size": "batch", "wd": "weight_decay", "lr0": "lr", "extra_valid": "extra_val"}


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Every training option; the help texts are what `python -m training train --help` prints."""

    # data and model
    data: str = _opt("", "HW2-style data folder: DATA/{train,valid}/ and DATA/{train,valid}.json (required)")
    preset: str = _opt("seed", f"model preset: {', '.join(PRESETS)}", choices=tuple(PRESETS))
    weights: str = _opt("none", "initial weights: none | imagenet (backbone) | coco (seed only) | PATH to a state dict")
    extra_val: tuple[str, ...] = _opt((), "comma-separated extra validation sets evaluated every epoch: HW2 folders "
                                          "(their valid split) or COCO json files (images in a folder named like the json)")
    max_images: int = _opt(0, "use only the first N images of train and of each validation set (0 = all); for tiny runs")
    cache: bool = _opt(False, "decode every image once into RAM before training (HW2 images are small)")
    model: dict[str, Any] = _opt({}, "model config changes (filled from key=value overrides naming ModelConfig fields)")
    # optimisation
    epochs: int = _opt(15, "number of epochs")
    batch: int = _opt(8, "images per step per process (DDP: per GPU)")
    optimizer: str = _opt("adamw", "adamw | sgd (momentum 0.9)", choices=OPTIMIZERS)
    lr: float = _opt(1e-4, "base learning rate")
    weight_decay: float = _opt(1e-4, "weight decay")
    min_lr: float = _opt(1e-6, "eta_min of CosineAnnealingLR(T_max=epochs), stepped once per epoch")
    warmup_iters: int = _opt(0, "linear warm-up over the first N steps of epoch 1 (from lr/1000), as torchvision's references")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)")
    amp: str = _opt("none", "autocast on CUDA: none | bf16 | fp16 (fp16 adds a GradScaler); ignored on CPU",
                    choices=AMP_CHOICES)
    # loss
    loss: str = _opt("original", "original (CE + SmoothL1) | diou | ciou (the seed's: IoU loss added to the "
                                 "classification loss from iou_start_epoch) | giou_box | diou_box | ciou_box (IoU "
                                 "loss replaces SmoothL1 as the box regression loss)", choices=LOSSES)
    iou_start_epoch: int = _opt(6, "diou/ciou: first epoch (1-based) with the IoU term")
    iou_lambda: float = _opt(0.1, "diou/ciou: the IoU term's weight at iou_start_epoch")
    iou_lambda_step: float = _opt(0.05, "diou/ciou: weight added per epoch after iou_start_epoch")
    iou_lambda_max: float = _opt(0.5, "diou/ciou: cap of the IoU term's weight")
    box_loss_weight: float = _opt(1.0, "*_box losses: weight of the IoU box regression loss")
    # augmentation (photometric: the seed's; geometric: off in the seed, boxes follow via tv_tensors)
    color_p: float = _opt(0.3, "probability of ColorJitter")
    color_jitter: float = _opt(0.2, "ColorJitter brightness = contrast = saturation")
    blur_p: float = _opt(0.3, "probability of GaussianBlur")
    blur_kernel: int = _opt(3, "GaussianBlur kernel size")
    blur_sigma: tuple[float, float] = _opt((0.3, 0.8), "GaussianBlur sigma range min,max")
    affine_p: float = _opt(0.0, "probability of RandomAffine (degrees, translate, scale, shear below)")
    degrees: float = _opt(5.0, "RandomAffine rotation range +-degrees")
    translate: float = _opt(0.05, "RandomAffine translation as a fraction of the image size")
    scale: float = _opt(0.1, "RandomAffine scale range 1 +- scale")
    shear: float = _opt(0.0, "RandomAffine shear range +-degrees")
    perspective_p: float = _opt(0.0, "probability of RandomPerspective")
    perspective: float = _opt(0.15, "RandomPerspective distortion scale")
    train_sizes: tuple[int, ...] = _opt((), "multi-scale training: comma-separated short sides; each training image is "
                                             "resized to one of them or to the model's min_size, at random (evaluation "
                                             "and the checkpoint keep min_size)")
    # evaluation
    eval_every: int = _opt(1, "evaluate every N epochs (the last epoch always)")
    val_score: float = _opt(0.5, "the seed's validation score threshold: number accuracy and the *_at_val_score stats")
    map_score: float = _opt(MAP_SCORE_FLOOR, "score threshold for mAP (COCO evaluation wants low-score detections too)")
    val_nms: float = _opt(0.5, "NMS IoU threshold for validation")
    class_agnostic: bool = _opt(False, "class-agnostic NMS in validation")
    coco_backend: str = _opt("pycocotools", "pycocotools | faster_coco_eval (same numbers, faster)",
                             choices=COCO_BACKENDS)
    val_batch: int = _opt(0, "validation batch size (0 = 2 x batch)")
    # run
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N (DDP: one GPU per process, from LOCAL_RANK)")
    workers: int = _opt(4, "DataLoader worker processes per process (capped at the CPU count; 0 = load in the main process)")
    seed: int = _opt(0, "random seed (data order, augmentation, initialisation)")
    project: str = _opt("runs/train", "parent folder of run folders")
    name: str = _opt("", "run folder name (default: <preset>-<loss>); an existing one gets a number appended")
    exist_ok: bool = _opt(False, "reuse run folder `name` even when it exists")
    resume: str = _opt("", "RUN_DIR (or true = the newest run under project) to continue from its weights/last_state.pt")
    plots: bool = _opt(True, "write plots/*.png after every evaluated epoch")
    progress: bool = _opt(True, "tqdm progress bars")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> ModelConfig:
        return get_preset(self.preset).replace(**self.model)

    def validate(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name}={getattr(self, f.name)!r}: choose from {', '.join(choices)}")
        positive = ("epochs", "batch", "eval_every", "blur_kernel")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0 or self.weight_decay < 0:
            raise ConfigError(f"need lr > 0, min_lr >= 0, weight_decay >= 0 (got {self.lr}, {self.min_lr}, {self.weight_decay})")
        if any(not 16 <= size <= 2048 for size in self.train_sizes):
            raise ConfigError(f"train_sizes are short sides in pixels, 16-2048; got {','.join(map(str, self.train_sizes))}")
        if self.blur_kernel % 2 == 0:
            raise ConfigError(f"blur_kernel must be odd, got {self.blur_kernel}")
        for name in ("color_p", "blur_p", "affine_p", "perspective_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a probability, got {getattr(self, name)}")
        if self.weights not in WEIGHT_CHOICES and not Path(self.weights).is_file():
            raise ConfigError(f"weights={self.weights!r}: choose none, imagenet, coco or an existing file")
        self.model_config()  # ModelConfig.validate names a bad model override


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


# Per-preset training defaults. The seed keeps TrainConfig's defaults exactly (its published recipe).
# The light presets train from scratch at ~1/25 of the seed's pixels per image, so a step is cheap and the
# GPU is underused at batch 8: they double the batch and scale the lr with it (linear scaling rule, Goyal
# et al. 2017), and a short warm-up keeps the larger from-scratch lr from blowing up the first steps.
# bf16 autocast (CUDA only; ignored on CPU) halves activation traffic at no accuracy cost on Ampere+.
_LIGHT = dict(batch=16, lr=2e-4, warmup_iters=200, amp="bf16", workers=8)
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "seed": {},
    "fast": dict(_LIGHT),
    "resnet18": dict(_LIGHT, lr=4e-4),  # smaller nets tolerate (and need) a larger step from scratch
    "mobilenet_v3": dict(_LIGHT, lr=4e-4),
    "effnet_lite0": dict(_LIGHT, lr=4e-4),
}

_FIELDS = {f.name: f for f in fields(TrainConfig)}
_MODEL_SCALARS = {f.name: f for f in fields(ModelConfig)
                  if f.name not in ("preset", "extra", "backbone", "num_classes") and f.type in ("int", "float", "str", "bool")}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _convert(kind: str, text: str) -> Any:
    if kind == "bool":
        return _parse_bool(text)
    if kind == "int":
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if kind == "float":
        return float(text)
    if kind.startswith("tuple[int"):
        return tuple(_convert("int", v) for v in text.split(",") if v.strip())
    if kind.startswith("tuple[float"):
        return tuple(float(v) for v in text.split(","))
    if kind.startswith("tuple[str"):
        return tuple(v.strip() for v in text.split(",") if v.strip())
    return text


def parse_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`key=value` strings -> (training changes, model changes); unknown keys and bad values are errors."""
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = ALIASES.get(key.strip().lstrip("-").replace("-", "_"), key.strip().lstrip("-").replace("-", "_"))
        if not sep or not key:
            raise ConfigError(f"{item!r}: overrides are key=value (e.g. epochs=3 lr=1e-4); see --help")
        if key in _FIELDS and key != "model":
            target, kind = train, str(_FIELDS[key].type)
        elif key in _MODEL_SCALARS:
            target, kind = model, str(_MODEL_SCALARS[key].type)
        else:
            known = [k for k in _FIELDS if k != "model"] + list(_MODEL_SCALARS)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown option {key!r}; {hint}training options: "
                              f"{', '.join(k for k in _FIELDS if k != 'model')}; model options: {', '.join(_MODEL_SCALARS)}")
        try:
            target[key] = _convert(kind, text)
        except ValueError as err:
            raise ConfigError(f"{key}={text!r}: {err}") from None
    return train, model


def resolve(overrides: dict[str, Any], model_overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Layer defaults, the preset's training defaults and the user's overrides into one validated config."""
    preset = overrides.get("preset", TrainConfig.preset)
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r}: choose from {', '.join(PRESETS)}")
    values = {**PRESET_TRAINING.get(preset, {}), **overrides}
    model = dict(model_overrides or {})
    if "min_size" in model and "max_size" not in model:
        # keep torchvision's max_size >= min_size (imgsz=640 on a preset with max_size 512 must still work)
        model["max_size"] = max(get_preset(preset).max_size, model["min_size"])
    values["model"] = {**values.get("model", {}), **model}
    config = TrainConfig(**values)
    config.validate()
    return config


def from_json(path: str | Path) -> TrainConfig:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {unknown}")
    for name in ("extra_val", "blur_sigma", "train_sizes"):
        if name in data:
            data[name] = tuple(data[name])
    return TrainConfig(**data)


def effective_workers(requested: int) -> int:
    return max(0, min(requested, os.cpu_count() or 1))


def help_text() -> str:
    """Every option with its default, for --help."""
    lines = ["training options (key=value), default in brackets; preset-specific defaults marked *:"]
    preset_keys = {k for d in PRESET_TRAINING.values() for k in d}
    for f in fields(TrainConfig):
        if f.name == "model":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        star = "*" if f.name in preset_keys else ""
        lines.append(f"  {f.name:<16} [{default}]{star}  {f.metadata['help']}")
    lines.append("  * per preset: " + "; ".join(
        f"{p}: " + (", ".join(f"{k}={v}" for k, v in d.items()) or "the defaults") for p, d in PRESET_TRAINING.items()))
    lines.append("model options (change the preset's architecture; saved in the checkpoint):")
    base = PRESETS["seed"]
    for name in _MODEL_SCALARS:
        lines.append(f"  {name:<28} [seed: {getattr(base, name)}]")
    lines.append("aliases: " + ", ".join(f"{a} -> {b}" for a, b in ALIASES.items()))
    return "\n".join(lines)
