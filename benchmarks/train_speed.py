"""Training speed and accuracy of presets side by side (default: seed vs fast) on the same synthetic data.

Each preset trains with its own defaults from training/config.py (the seed: its published recipe; fast:
160 px input, fitted anchors, batch 16, bf16 on GPU) through `training.train.train`, one after the other,
in this process. Printed per preset: training images/s, training / evaluation / wall minutes (on a GPU:
GPU minutes), best valid mAP, AP50, number accuracy, and how long it took to reach the first preset's
best mAP; then ratios to the first preset. Results are also written to OUT/train_speed.json.

GPU (when one is lent):
    python benchmarks/train_speed.py --device cuda --train 3000 --valid 300 --epochs 15
CPU smoke test (a few minutes on a 2-core machine; the numbers only show the pipeline runs):
    python benchmarks/train_speed.py --device cpu --tiny
Extra key=value arguments go to every preset (e.g. coco_backend=faster_coco_eval workers=8).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from training.config import parse_overrides, resolve
from training.plots import read_metrics
from training.train import train


def make_data(out: Path, train_images: int, valid_images: int, seed: int) -> Path:
    from training.synth import generate_dataset

    if (out / "train.json").is_file() and (out / "valid.json").is_file():
        meta = json.loads((out / "synth_meta.json").read_text()) if (out / "synth_meta.json").is_file() else {}
        if meta.get("generator", {}).get("counts", {}).get("train") == train_images and \
                meta["generator"]["counts"].get("valid") == valid_images and meta["generator"].get("seed") == seed:
            return out  # same data as last time: skip rendering
    return generate_dataset(out, {"train": train_images, "valid": valid_images, "test": 0}, seed=seed, overwrite=True)


def summarise(run_dir: Path, wall_s: float) -> dict:
    records = read_metrics(run_dir)
    evaluated = [r for r in records if "valid" in r]
    best = max(evaluated, key=lambda r: r["valid"]["AP"])
    elapsed, timeline = 0.0, []
    for r in records:
        elapsed += r["time_s"] + r["eval_s"]
        if "valid" in r:
            timeline.append((r["epoch"], elapsed, r["valid"]["AP"]))
    return {
        "run": str(run_dir), "epochs": records[-1]["epoch"],
        "images_per_s": sum(r["images_per_s"] for r in records) / len(records),
        "train_min": sum(r["time_s"] for r in records) / 60, "eval_min": sum(r["eval_s"] for r in records) / 60,
        "wall_min": wall_s / 60, "best_epoch": best["epoch"], "AP": best["valid"]["AP"], "AP50": best["valid"]["AP50"],
        "number_accuracy": best["valid"]["number_accuracy"], "timeline": timeline,
    }


def minutes_to_reach(summary: dict, target_ap: float) -> float | None:
    """Training + evaluation minutes until the first epoch whose valid mAP reaches target_ap."""
    for _, elapsed, ap in summary["timeline"]:
        if ap >= target_ap:
            return elapsed / 60
    return None


def print_table(results: dict[str, dict]) -> None:
    names = list(results)
    ref_name, ref = names[0], results[names[0]]
    rows = [("images/s (train)", "images_per_s", "{:.2f}"), ("train minutes", "train_min", "{:.2f}"),
            ("eval minutes", "eval_min", "{:.2f}"), ("wall minutes", "wall_min", "{:.2f}"),
            ("best epoch", "best_epoch", "{}"), ("valid mAP", "AP", "{:.4f}"), ("valid AP50", "AP50", "{:.4f}"),
            ("number accuracy", "number_accuracy", "{:.4f}")]
    width = max(14, *(len(n) for n in names))
    print(f"{'':<24}" + "".join(f"{n:>{width}}" for n in names))
    for label, key, fmt in rows:
        print(f"{label:<24}" + "".join(f"{fmt.format(results[n][key]):>{width}}" for n in names))
    reach = {n: minutes_to_reach(results[n], ref["AP"]) for n in names}
    print(f"{f'min to {ref_name} best mAP':<24}" + "".join(
        f"{f'{reach[n]:.2f}' if reach[n] is not None else 'not reached':>{width}}" for n in names))
    for n in names[1:]:
        r = results[n]
        print(f"\n{n} vs {ref_name}: {r['images_per_s'] / max(ref['images_per_s'], 1e-9):.2f}x images/s, "
              f"{r['wall_min'] / max(ref['wall_min'], 1e-9):.2f}x wall time, "
              f"mAP {r['AP'] - ref['AP']:+.4f} ({r['AP']:.4f} vs {ref['AP']:.4f})"
              + (f", reached {ref_name}'s best mAP in {reach[n] / max(reach[ref_name], 1e-9):.2f}x its time"
                 if reach[n] is not None and reach[ref_name] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["seed", "fast"], help="presets to train; the first is the reference")
    parser.add_argument("--data", help="an existing HW2 data folder (default: synthetic data under OUT/data)")
    parser.add_argument("--train", type=int, default=2000, help="synthetic train images [2000]")
    parser.add_argument("--valid", type=int, default=300, help="synthetic valid images [300]")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per preset [15]")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda [auto]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench", help="folder for data, runs and train_speed.json [runs/bench]")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke size: 4 train / 2 valid images, 1 epoch, batch 2")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="training options for every preset")
    args = parser.parse_args()
    out = Path(args.out)
    if args.tiny:
        args.train, args.valid, args.epochs = 4, 2, 1
        args.overrides = ["batch=2", "workers=0", *args.overrides]
    data = Path(args.data) if args.data else make_data(out / "data", args.train, args.valid, args.seed)
    common, model_common = parse_overrides(args.overrides)
    results: dict[str, dict] = {}
    for preset in args.presets:
        config = resolve({"data": str(data), "preset": preset, "epochs": args.epochs, "device": args.device,
                          "seed": args.seed, "project": str(out / "runs"), "name": preset, "exist_ok": True,
                          **common}, model_common)
        print(f"\n=== {preset}: batch {config.batch}, lr {config.lr}, amp {config.amp}, "
              f"input {config.model_config().min_size}-{config.model_config().max_size} px", flush=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        run_dir = train(config, command=" ".join(sys.argv))
        results[preset] = summarise(run_dir, time.perf_counter() - started)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(f"\n{len(results)} presets, {args.epochs} epochs, data {data} ({args.train} train / {args.valid} valid), {device}")
    print_table(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps({"device": device, "epochs": args.epochs, "data": str(data),
                                                      "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
