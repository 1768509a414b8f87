"""The one checkpoint format: a safetensors file whose header holds the model config and JSON metadata.

Why safetensors: loading a checkpoint never unpickles anything, so a file from an untrusted source can at
worst fail to load. Metadata (preset and config, class names, thresholds chosen on validation, training data,
metrics, code version) travels in the same file, so a checkpoint is self-describing and the app and the CLI
rebuild the right architecture from it alone. Writes are atomic (temp file + rename): an interrupted save
never leaves a half-written checkpoint where a good one was.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from detector.categories import CLASS_NAMES
from detector.fileio import atomic_write, nonfinite_tensors, tensor_file_kind
from detector.jsonsafe import loads
from detector.models import PREDICTION_ONLY_KEYS, ModelConfig, build_model, norm_from_keys
from detector.thresholds import Thresholds

FORMAT_ID = "hw2-digit-detector/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default.safetensors"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project; the message says what it is instead."""


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself, beside its weights."""

    config: ModelConfig
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    thresholds: Thresholds = field(default_factory=Thresholds)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created: str = ""

    def to_header(self) -> dict[str, str]:
        return {
            "format": FORMAT_ID,
            "config": self.config.to_json(),
            "meta": json.dumps(
                {"class_names": self.class_names, "thresholds": self.thresholds.to_dict(), "training": self.training,
                 "metrics": self.metrics, "code_version": self.code_version, "created": self.created},
                sort_keys=True,
            ),
        }

    @classmethod
    def from_header(cls, header: dict[str, str], source: str) -> CheckpointMeta:
        """Metadata from a header anyone may have written: every field's type and range is checked."""
        if header.get("format") != FORMAT_ID:
            found = header.get("format", "no 'format' entry")
            raise CheckpointError(
                f"{source}: a safetensors file, but not a checkpoint of this project (format: {found}; "
                f"expected {FORMAT_ID}). Train one with `python -m training train`."
            )
        if "config" not in header:
            raise CheckpointError(f"{source}: checkpoint metadata is damaged (no 'config' entry)")
        try:
            config = ModelConfig.from_dict(loads(header["config"], "config"))
            return cls(config=config, **_checked_meta(loads(header.get("meta", "{}"), "meta")))
        except (ValueError, TypeError) as err:  # JSONInputError is a ValueError
            raise CheckpointError(f"{source}: checkpoint metadata is damaged ({err})") from None


def _checked_meta(meta: Any) -> dict[str, Any]:
    """CheckpointMeta's fields besides config, from the header's 'meta' JSON; ValueError names a bad one."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta should be an object, got {type(meta).__name__}")
    thresholds = Thresholds.from_dict(meta.get("thresholds", {}))
    class_names = meta.get("class_names", list(CLASS_NAMES))
    if not (isinstance(class_names, list) and len(class_names) == len(CLASS_NAMES)
            and all(isinstance(n, str) for n in class_names)):
        raise ValueError(f"class_names should be a list of {len(CLASS_NAMES)} names, got {str(class_names)[:60]}")
    out: dict[str, Any] = {"class_names": class_names, "thresholds": thresholds}
    for key, kind, default in (("training", dict, {}), ("metrics", dict, {}), ("code_version", str, ""),
                               ("created", str, "")):
        value = meta.get(key, default)
        if not isinstance(value, kind):
            raise ValueError(f"{key} should be {'an object' if kind is dict else 'a string'}, got {type(value).__name__}")
        out[key] = value
    return out


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    meta: CheckpointMeta
    path: Path


def code_version() -> str:
    """The git commit of the code that wrote a checkpoint (with '+dirty'), or 'unknown' outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: CheckpointMeta,
                    *, half: bool = False) -> Path:
    """Write weights + metadata; `half` stores floating tensors as fp16 (halves the file; loads back as fp32)."""
    path = Path(path)
    meta.created = meta.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta.code_version = meta.code_version or code_version()
    tensors = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu")
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name] = t.contiguous()
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta.to_header()))
    return path


def _sniff(path: Path) -> None:
    """Say what a file is before handing it to safetensors."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    size = path.stat().st_size
    kind = tensor_file_kind(path)
    if kind == "safetensors":
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
        if header_len > size - 8:
            raise CheckpointError(f"{path}: truncated checkpoint (header says {header_len:,} bytes, file has {size:,})")
        return
    if kind in ("pickle", "torch_zip"):
        raise CheckpointError(
            f"{path}: a pickle/torch.save file, not a safetensors checkpoint. Pickles can run code when "
            "loaded, so this project refuses them; convert trusted weights with "
            "`python -m detector convert` or pass them as weights=PATH to training (loaded tensors-only)."
        )
    if size < 16:
        raise CheckpointError(f"{path}: only {size} bytes; not a checkpoint (truncated?)")
    raise CheckpointError(f"{path}: not a safetensors file (bad header); expected a {FORMAT_ID} checkpoint")


def read_meta(path: str | Path) -> CheckpointMeta:
    """Read only the metadata (cheap: the weights are not touched)."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from err
    return CheckpointMeta.from_header(header, str(path))


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    path = Path(path)
    meta = read_meta(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from err
    return state, meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the checkpoint's own config and load its weights strictly (eval mode)."""
    path = Path(path)
    state, meta = read_state_dict(path)
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of {len(state)} weight tensors hold NaN or Inf values (e.g. {bad[:3]}); the training "
            "run that wrote it diverged: use an earlier checkpoint of the run or train again")
    if meta.config.norm == "auto":  # written before the config recorded it: the tensors tell
        meta.config = meta.config.replace(norm=norm_from_keys(state))
    model = build_model(meta.config, weights="none")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match a '{meta.config.preset}' model "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    wrong_shape = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise CheckpointError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, "
                              f"the '{meta.config.preset}' model expects {tuple(expected[k].shape)}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return LoadedCheckpoint(model=model.to(device).eval(), meta=meta, path=path)


def update_meta(path: str | Path, *, to: str | Path | None = None, **changes: Any) -> CheckpointMeta:
    """Rewrite a checkpoint with some metadata fields changed (e.g. thresholds saved from the app); atomic.
    With `to`, the changed checkpoint is written there and `path` is left as it was (a calibrated copy).

    Object fields are merged: `thresholds` takes a Thresholds or some of its keys ({"number_score": 0.6});
    `config` takes only models.PREDICTION_ONLY_KEYS ({"rpn_post_nms_top_n_test": 30}), which leave the weights valid.
    """
    path = Path(path)
    state, meta = read_state_dict(path)
    for key, value in changes.items():
        if key == "config":
            refused = sorted(set(value) - set(PREDICTION_ONLY_KEYS))
            if refused:
                raise ValueError(f"cannot update config key(s) {refused} of a trained checkpoint: they shape its "
                                 f"weights or its training; only {list(PREDICTION_ONLY_KEYS)} can change")
            meta.config = meta.config.replace(**value)
            continue
        if not hasattr(meta, key):
            raise ValueError(f"cannot update checkpoint field {key!r}")
        current = getattr(meta, key)
        if isinstance(current, Thresholds) and not isinstance(value, Thresholds):
            value = Thresholds.from_dict({**current.to_dict(), **value})
        setattr(meta, key, {**current, **value} if isinstance(current, dict) else value)
    atomic_write(path if to is None else to, lambda tmp: save_file(state, str(tmp), metadata=meta.to_header()))
    return meta
