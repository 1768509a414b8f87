"""Weight averaging ("model soup", Wortsman et al., ICML 2022): one checkpoint whose weights are the weighted mean
of several fine-tuned from the same start.

Runs fine-tuned from one checkpoint stay in one basin of the loss, so their mean is a model of the same cost that
is often better out of distribution than any of them (what this project is judged on); it needs no training.

  python -m training soup --out soup.safetensors runs/a/weights/best.safetensors runs/b/weights/best.safetensors
  python -m training soup --out soup.safetensors A.safetensors:0.7 B.safetensors:0.3      (weights per input)

The soup keeps the first input's metadata (config, thresholds) and records its recipe under training.soup;
calibrate its thresholds afterwards (`python -m detector calibrate`): a mean model's scores are not its parts'.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from detector.checkpoint import CheckpointError, read_state_dict, save_checkpoint
from detector.provenance import FINGERPRINT_KEY, merge_fingerprints


def parse_part(text: str) -> tuple[Path, float]:
    """'PATH' or 'PATH:WEIGHT' (a path may hold ':' itself; only a trailing number counts as the weight)."""
    path, sep, weight = text.rpartition(":")
    if sep:
        try:
            value = float(weight)
        except ValueError:
            return Path(text), 1.0
        if not value > 0:
            raise ValueError(f"{text}: a soup weight must be > 0, got {weight}")
        return Path(path), value
    return Path(text), 1.0


def make_soup(parts: Sequence[tuple[Path, float]], out: Path) -> Path:
    """Average the floating tensors of checkpoints of one architecture (integer buffers must agree)."""
    if len(parts) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    total = sum(weight for _, weight in parts)
    first_state, meta = read_state_dict(parts[0][0])
    trainings = [meta.training]
    soup = {k: v.float() * (parts[0][1] / total) if v.is_floating_point() else v for k, v in first_state.items()}
    for path, weight in parts[1:]:
        state, other = read_state_dict(path)
        trainings.append(other.training)
        if other.config != meta.config or state.keys() != soup.keys():
            raise CheckpointError(f"{path}: not the architecture of {parts[0][0]} (config or tensor names differ); "
                                  "only checkpoints of one model config can be averaged")
        for name, tensor in state.items():
            if tensor.shape != soup[name].shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, {parts[0][0]} has "
                                      f"{tuple(soup[name].shape)}")
            if tensor.is_floating_point():
                soup[name] += tensor.float() * (weight / total)
            elif not torch.equal(tensor, soup[name]):
                raise CheckpointError(f"{path}: integer tensor {name} differs from {parts[0][0]}'s; cannot average")
    meta.training = {"soup": [{"checkpoint": str(path), "weight": weight / total} for path, weight in parts],
                     "soup_of": [{k: v for k, v in t.items() if k != FINGERPRINT_KEY} for t in trainings]}
    if fingerprints := merge_fingerprints(t.get(FINGERPRINT_KEY) for t in trainings):
        meta.training[FINGERPRINT_KEY] = fingerprints  # the review warns on images any part trained on
    meta.metrics = {}  # the first input's validation figures are not the soup's
    meta.created = meta.code_version = ""
    return save_checkpoint(out, soup, meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training soup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the averaged checkpoint to write")
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT[:WEIGHT]", help="checkpoints (weight 1 by default)")
    args = parser.parse_args(argv)
    try:
        path = make_soup([parse_part(p) for p in args.checkpoints], args.out)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
