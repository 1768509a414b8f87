"""Synthetic-data throughput: images/s written by `generate_dataset` with 1 and 2 worker processes.

    python benchmarks/synth_throughput.py [--images 600] [--workers 1 2]

Wall time includes process start-up, glyph-cache warm-up in each worker, PNG writing and the JSON
files, i.e. what a user waits for; `ratio` is images/s relative to the first worker count. For one
worker (everything in this process) CPU ms/image is also shown: the cost of an image regardless of
other load. The 1-minute load average is printed because other processes on a small machine take
cores away from the workers, and the 2-worker figure means nothing without it.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from training.synth import generate_dataset


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(images: int, workers: int, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        generate_dataset(Path(tmp) / "DATA", {"train": images, "valid": 0, "test": 0}, seed=seed, workers=workers)
        return time.perf_counter() - t0, _cpu_seconds() - cpu0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    measure(20, 1, args.seed + 1)  # imports and the font probe, outside the timings
    rows = [(w, *measure(args.images, w, args.seed)) for w in args.workers]
    base = args.images / rows[0][1]
    print(f"{'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'cpu ms/img':>11} {'ratio':>6}")
    for w, wall, cpu in rows:
        rate = args.images / wall
        cpu_text = f"{cpu / args.images * 1e3:.2f}" if w == 1 else "-"  # workers are not our children
        print(f"{w:>7} {args.images:>7} {wall:>8.2f} {rate:>9.1f} {cpu_text:>11} {rate / base:>6.2f}")
    print(f"load average (1 min) after the runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
