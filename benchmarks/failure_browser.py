"""How long the failure browser takes to recompute everything after a threshold change.

A synthetic validation set the size of HW2's (3,340 images, 1-4 digits each) with cached raw candidates
like a trained model's at score floor 0.01 with NMS off (a jittered true box per digit, near-duplicates,
some wrong-class and background candidates, ~60 per image). For each COCO backend it times
`studio.failures.build_report` (re-filter + match + confusion + COCO eval + number accuracy) and the
gallery selection, prints a table, then times the threshold sweep on the app's two grids. The model is never
involved: this is exactly the work a slider release triggers.

    python benchmarks/failure_browser.py [--images 3340] [--repeats 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from detector.coco_eval import BACKENDS, sweep_score_threshold
from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.thresholds import Thresholds
from studio.failures import build_report
from studio.validation import MAP_SWEEP_THRESHOLDS, SWEEP_THRESHOLDS


def _jitter(rng: np.random.Generator, box: np.ndarray, amount: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + rng.normal(0, amount, 4) * np.array([w, h, w, h])


def synthetic_set(n_images: int, seed: int = 0) -> tuple[list[ImageRecord], dict[int, Detections]]:
    rng = np.random.default_rng(seed)
    records, candidates = [], {}
    for image_id in range(1, n_images + 1):
        width, height = int(rng.integers(60, 220)), int(rng.integers(30, 110))
        n = int(rng.integers(1, 5))
        digit_w = width / (n + 1)
        boxes, labels = [], []
        for k in range(n):
            x1 = 0.5 * digit_w + k * digit_w + rng.uniform(-2, 2)
            y1 = height * rng.uniform(0.05, 0.25)
            boxes.append([x1, y1, x1 + digit_w * 0.8, height * rng.uniform(0.75, 0.95)])
            labels.append(int(rng.integers(1, 11)))
        gt = np.asarray(boxes, dtype=np.float32)
        records.append(ImageRecord(image_id, f"{image_id}.png", width, height, Path(f"synthetic/{image_id}.png"),
                                   gt, np.asarray(labels, dtype=np.int64)))
        c_boxes, c_scores, c_labels = [], [], []
        for box, label in zip(gt, labels, strict=False):
            found = rng.random() < 0.93
            c_boxes.append(_jitter(rng, box, 0.05 if found else 0.25))
            c_scores.append(rng.beta(8, 1.5) if found else rng.beta(2, 5))
            c_labels.append(label if rng.random() < 0.95 else int(rng.integers(1, 11)))
            for _ in range(int(rng.integers(5, 15))):  # near-duplicates and confusions NMS has to sort out
                c_boxes.append(_jitter(rng, box, 0.12))
                c_scores.append(rng.beta(1.5, 6))
                c_labels.append(label if rng.random() < 0.6 else int(rng.integers(1, 11)))
        for _ in range(int(rng.integers(10, 40))):  # background clutter
            x, y = rng.uniform(0, width - 8), rng.uniform(0, height - 12)
            c_boxes.append([x, y, x + rng.uniform(4, 30), y + rng.uniform(8, 40)])
            c_scores.append(rng.beta(1, 12))
            c_labels.append(int(rng.integers(1, 11)))
        b = np.clip(np.asarray(c_boxes), 0, [width, height, width, height]).astype(np.float32)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        s = np.clip(np.asarray(c_scores), 0.01, 1.0).astype(np.float32)
        candidates[image_id] = Detections(torch.from_numpy(b), torch.from_numpy(s),
                                          torch.tensor(c_labels, dtype=torch.int64))
    return records, candidates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=3340)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the app runs on small machines)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    records, candidates = synthetic_set(args.images, args.seed)
    n_cand = sum(len(d) for d in candidates.values())
    print(f"synthetic set: {len(records)} images, {sum(len(r.category_ids) for r in records)} digits, "
          f"{n_cand} cached candidates ({n_cand / len(records):.0f}/image); "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    settings = [Thresholds(0.5, 0.5, 0.7, False), Thresholds(0.3, 0.6, 0.7, False), Thresholds(0.5, 0.5, 0.7, True)]

    rows = []
    for backend in BACKENDS:
        for th in settings:
            times, parts = [], []
            for _ in range(args.repeats):
                report = build_report(records, candidates, th, backend=backend)
                times.append(report.seconds["total"])
                parts.append(report.seconds)
            start = time.perf_counter()
            report.select("any error")
            select_s = time.perf_counter() - start
            best = min(range(len(times)), key=times.__getitem__)
            rows.append((backend, f"s={th.score} nms={th.nms_iou}{' agn' if th.class_agnostic else ''}",
                         parts[best]["refilter"], parts[best]["match"], parts[best]["coco"], min(times), select_s,
                         report.metrics["AP"], report.number_accuracy))
    header = ("backend", "thresholds", "refilter s", "match s", "coco s", "total s", "gallery s", "mAP", "num acc")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | **{r[5]:.2f}** | {r[6]:.3f} | "
              f"{r[7]:.4f} | {r[8]:.4f} |")

    print()
    start = time.perf_counter()
    sweep = sweep_score_threshold(records, candidates, SWEEP_THRESHOLDS, 0.5)
    print(f"threshold sweep, number accuracy at {len(SWEEP_THRESHOLDS)} thresholds: {time.perf_counter() - start:.2f} s "
          f"(best number score {sweep.best_threshold:.2f}, accuracy {sweep.best_accuracy:.4f})")
    for backend in BACKENDS:
        start = time.perf_counter()
        sweep_score_threshold(records, candidates, MAP_SWEEP_THRESHOLDS, 0.5, with_map=True, backend=backend)
        print(f"threshold sweep, mAP at {len(MAP_SWEEP_THRESHOLDS)} thresholds ({backend}): "
              f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
