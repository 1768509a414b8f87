"""CPU inference latency per image: the shipped default (and any other checkpoints) against the seed preset,
on the same images, in one run. Prints a table with median / p90 ms and the ratio to the seed.

    python benchmarks/inference_latency.py [--checkpoint assets/default.safetensors ...] [--images DIR] [--n 30]

The seed is built untrained from its preset (latency does not depend on the weights' values: the seed keeps a
fixed number of proposals). Images default to the shipped validation set (assets/valid).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from detector.checkpoint import DEFAULT_CHECKPOINT, CheckpointMeta, load_checkpoint
from detector.hw2 import list_images
from detector.images import load_rgb
from detector.models import build_model, get_preset
from detector.predictor import Predictor, resolve_device

ROOT = Path(__file__).resolve().parent.parent


def time_predictor(predictor: Predictor, images: list, warmup: int = 3) -> list[float]:
    for image in images[:warmup]:
        predictor.candidates([image])
    times = []
    for image in images:
        start = time.perf_counter()
        predictor.candidates([image])
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_interleaved(predictors: list[Predictor], images: list, warmup: int = 3) -> list[list[float]]:
    """Each image through every predictor in turn, so a busy shared machine slows them all alike."""
    for image in images[:warmup]:
        for predictor in predictors:
            predictor.candidates([image])
    times: list[list[float]] = [[] for _ in predictors]
    for image in images:
        for predictor, row in zip(predictors, times, strict=True):
            start = time.perf_counter()
            predictor.candidates([image])
            row.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, action="append", default=None)
    parser.add_argument("--images", type=Path, default=ROOT / "assets" / "valid")
    parser.add_argument("--n", type=int, default=30, help="images timed per model")
    parser.add_argument("--seed-n", type=int, default=8, help="images timed for the (slow) seed preset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--plain", action="store_true",
                        help="also time each checkpoint without the CPU speed-ups of Predictor.from_checkpoint "
                             "(BatchNorm folding, channels-last, 1x1 convolutions as matmuls), image by image in turn "
                             "with the fast one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    paths = [p for _, p in list_images(args.images)][: args.n]
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    images = [load_rgb(p) for p in paths]
    sizes = sorted(im.width * im.height for im in images)
    median_image = images[[im.width * im.height for im in images].index(sizes[len(sizes) // 2])]

    rows: list[tuple[str, list[float], list[float] | None]] = []
    seed_config = get_preset("seed")
    seed = Predictor(build_model(seed_config).eval(), CheckpointMeta(config=seed_config), device)
    rows.append(("seed (untrained, 800 px)", time_predictor(seed, images[: args.seed_n], warmup=1), None))
    for path in args.checkpoint or [DEFAULT_CHECKPOINT]:
        predictor = Predictor.from_checkpoint(path, device=str(device))
        label = f"{path.name} ({predictor.meta.config.preset}, {predictor.meta.config.min_size} px)"
        if not args.plain:
            rows.append((label, time_predictor(predictor, images), None))
            continue
        loaded = load_checkpoint(path, device=device)
        plain = Predictor(model=loaded.model, meta=loaded.meta, device=device)
        fast_times, plain_times = time_interleaved([predictor, plain], images)
        rows += [(label, fast_times, None),
                 ("  the same, plain (no BatchNorm fold, NCHW, 1x1 convolutions)", plain_times, fast_times)]

    print(f"# CPU inference latency, batch 1, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}; images from {args.images} (median size {median_image.width}x{median_image.height})")
    seed_median = statistics.median(rows[0][1])
    print(f"{'model':<48} {'n':>3} {'median ms':>10} {'p90 ms':>8} {'vs seed':>8}")
    for label, times, fast_one in rows:
        times = sorted(times)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        median = statistics.median(times)
        extra = f"  (fast one: {median / statistics.median(fast_one):.2f}x faster)" if fast_one else ""
        print(f"{label:<48} {len(times):>3} {median:>10.1f} {p90:>8.1f} {seed_median / median:>7.1f}x{extra}")


if __name__ == "__main__":
    main()
