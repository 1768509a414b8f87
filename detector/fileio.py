"""Atomic file writes: readers see the old file or the new one, never half of one (checkpoints, pred files,
run metrics, review exports all go through here)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp_path) for a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


class TensorFileError(ValueError):
    """A weights file that is not a plain tensor state dict; the message names the file and why."""


MAX_SAFETENSORS_HEADER = 100_000_000


def tensor_file_kind(path: str | Path) -> str:
    """'safetensors', 'pickle' (raw), 'torch_zip' (torch.save) or 'unknown', from the first bytes.

    A safetensors file starts with an 8-byte little-endian header length and then '{'. That length's low byte
    can be 0x80, pickle's magic, so the JSON brace is looked for first.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) == 9 and head[8:9] == b"{" and 0 < header_len <= MAX_SAFETENSORS_HEADER:
        return "safetensors"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.startswith(b"PK\x03\x04"):
        return "torch_zip"
    return "unknown"


def read_tensor_file(path: str | Path) -> dict:
    """A tensor-only file as {name: tensor}: safetensors, or torch.save read with weights_only=True, whose
    restricted unpickler refuses anything but tensors and plain containers (a crafted pickle never runs).

    The result may still be nested ({'model': {...}}); callers unwrap the layouts they know.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise TensorFileError(f"weights file not found: {path}")
    if tensor_file_kind(path) in ("pickle", "torch_zip"):  # legacy or zip torch.save: restricted unpickler only
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # weights_only refusals, truncated archives
            raise TensorFileError(f"{path}: not a tensor-only weights file ({type(err).__name__}: "
                                  f"{str(err)[:200]}); refusing to unpickle it") from err
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        what = ("a truncated or damaged safetensors file" if tensor_file_kind(path) == "safetensors"
                else "neither a safetensors nor a torch weights file")
        raise TensorFileError(f"{path}: {what} ({err})") from err


STATE_DICT_KEYS = ("model", "state_dict", "model_state")  # where training scripts nest the weights


def load_state_dict_file(path: str | Path) -> dict:
    """A weights file as a flat {name: tensor} state dict (the one reader for models and backbones).

    Unwraps the usual nestings ({'model' | 'state_dict' | 'model_state': {...}}) and refuses NaN or Inf
    weights, which come from a diverged run and would predict nothing; TensorFileError says why.
    """
    import torch

    obj = read_tensor_file(path)
    for key in STATE_DICT_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TensorFileError(f"{path}: expected a flat name -> tensor state dict")
    bad = nonfinite_tensors(obj)
    if bad:
        raise TensorFileError(f"{path}: {len(bad)} of {len(obj)} tensors hold NaN or Inf values "
                              f"(e.g. {bad[:3]}); these weights come from a diverged run")
    return dict(obj)


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating tensors holding NaN or Inf: weights a diverged run wrote, which predict nothing."""
    import torch

    return [name for name, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
