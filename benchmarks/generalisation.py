"""Generalisation to unseen styles: train models with the same data and budget, then score each on in-style
validation and on validation drawn only from held-out styles (typefaces, textures, colour schemes, plaques the
training set never contains). Prints one table: mAP@[.5:.95], AP50 and number accuracy on both, and the gap.

    python benchmarks/generalisation.py --train 1500 --epochs 2                      # CPU: light preset, imagenet vs none
    python benchmarks/generalisation.py --models effnet_lite0:imagenet,effnet_lite0:none,seed:none --device cuda

A model is PRESET:WEIGHTS. Each is trained by the project's own training command (training.train), then its
best checkpoint is scored by detector.scoring at the thresholds it calibrated on in-style validation.
Existing run folders are scored again instead of retrained (--retrain to force).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from detector.hw2 import load_split
from detector.predictor import Predictor
from detector.scoring import score_split
from training.config import resolve
from training.synth import generate_dataset
from training.train import train

STATS = ("AP", "AP50", "number_accuracy")


def make_data(root: Path, n_train: int, n_valid: int, seed: int) -> tuple[Path, Path]:
    in_style, held_out = root / "in_style", root / "held_out"
    if not (in_style / "valid.json").exists():
        generate_dataset(in_style, {"train": n_train, "valid": n_valid, "test": 0}, seed=seed, styles="train")
    if not (held_out / "valid.json").exists():
        generate_dataset(held_out, {"train": 0, "valid": n_valid, "test": 0}, seed=seed + 1, styles="heldout")
    return in_style, held_out


def train_model(spec: str, data: Path, held_out: Path, args: argparse.Namespace) -> tuple[Path, float]:
    preset, weights = spec.split(":")
    name = f"{preset}-{weights}"
    run_dir = args.out / "runs" / name
    best = run_dir / "weights" / "best.safetensors"
    if best.exists() and not args.retrain:
        return best, float("nan")
    overrides = {"data": str(data), "preset": preset, "weights": weights, "epochs": args.epochs, "device": args.device,
                 "extra_val": [str(held_out)], "project": str(args.out / "runs"), "name": name, "exist_ok": True,
                 "seed": args.seed, "workers": args.workers, "cache": True, "progress": False,
                 "coco_backend": "faster_coco_eval"}
    if args.batch:
        overrides["batch"] = args.batch
    start = time.perf_counter()
    train(resolve(overrides), command=f"benchmarks/generalisation.py model {spec}")
    return best, (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="effnet_lite0:imagenet,effnet_lite0:none")
    parser.add_argument("--train", type=int, default=1500, help="training images (in-style)")
    parser.add_argument("--valid", type=int, default=300, help="validation images per style share")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=0, help="0 = the preset's default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/generalisation"))
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()

    in_style, held_out = make_data(args.out / "data", args.train, args.valid, args.seed)
    splits = {"in-style": load_split(in_style, "valid"), "held-out": load_split(held_out, "valid")}
    rows = []
    for spec in args.models.split(","):
        best, minutes = train_model(spec, in_style, held_out, args)
        predictor = Predictor.from_checkpoint(best, device=args.device)
        scores = {name: score_split(predictor, split, backend="faster_coco_eval", progress=False).row()
                  for name, split in splits.items()}
        rows.append({"model": spec, "train_minutes": minutes, **{f"{k} {s}": v[s] for k, v in scores.items() for s in STATS}})
    (args.out / "table.json").write_text(json.dumps(rows, indent=2))

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else \
        f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"# held-out-style generalisation: {args.train} train images, {args.epochs} epochs, "
          f"{args.valid} validation images per share; {device}, torch {torch.__version__}")
    print("| model | train min | in-style mAP | in-style AP50 | in-style acc | held-out mAP | held-out AP50 "
          "| held-out acc | mAP gap | acc gap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gap_map = r["in-style AP"] - r["held-out AP"]
        gap_acc = r["in-style number_accuracy"] - r["held-out number_accuracy"]
        print(f"| {r['model']} | {r['train_minutes']:.1f} | {r['in-style AP']:.3f} | {r['in-style AP50']:.3f} | "
              f"{r['in-style number_accuracy']:.3f} | {r['held-out AP']:.3f} | {r['held-out AP50']:.3f} | "
              f"{r['held-out number_accuracy']:.3f} | {gap_map:+.3f} | {gap_acc:+.3f} |")


if __name__ == "__main__":
    main()
