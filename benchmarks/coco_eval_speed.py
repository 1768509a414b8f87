"""pycocotools vs faster-coco-eval on a validation-sized set, through detector.coco_eval.evaluate_coco.

3,340 synthetic images (no pixels: numpy boxes shaped like house numbers — 1-5 digits in a row, image
sizes and digit heights in SVHN's range) and predictions with the usual mistakes: jittered true boxes,
missed digits, wrong classes, duplicates and low-score clutter. Prints each backend's time, the ratio,
and the largest difference over the 12 standard numbers and the per-class APs (they should agree).

Run: python benchmarks/coco_eval_speed.py [--images 3340] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from detector.categories import CATEGORY_IDS
from detector.coco_eval import BACKENDS, STAT_NAMES, evaluate_coco
from detector.coco_format import coco_dict


def synthetic_set(images: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    gt_images, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        height = float(np.clip(rng.lognormal(np.log(47), 0.5), 12, 501))
        digits = int(rng.choice([1, 2, 3, 4, 5], p=[0.15, 0.45, 0.3, 0.08, 0.02]))
        digit_h = height * rng.uniform(0.5, 0.9)
        digit_w = digit_h * rng.uniform(0.35, 0.6, size=digits)
        gaps = digit_w * rng.uniform(0.9, 1.3, size=digits)
        x0 = float(rng.uniform(0.1, 0.4)) * digit_h * 3
        xs = x0 + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        y = (height - digit_h) * rng.uniform(0.2, 0.8)
        width = float(xs[-1] + digit_w[-1] + x0)
        gt_images.append({"id": image_id, "file_name": f"{image_id}.png", "width": round(width), "height": round(height)})
        labels = rng.choice(CATEGORY_IDS, size=digits)
        for x, w, c in zip(xs, digit_w, labels, strict=False):
            box = [float(x), float(y), float(w), float(digit_h)]
            annotations.append((image_id, box, int(c)))
            if rng.random() < 0.08:  # missed digit
                continue
            jitter = rng.normal(0, 0.08, size=4) * [w, digit_h, w, digit_h]
            pred = [box[0] + jitter[0], box[1] + jitter[1], max(1.0, w + jitter[2]), max(1.0, digit_h + jitter[3])]
            cls = int(c) if rng.random() > 0.05 else int(rng.choice(CATEGORY_IDS))
            results.append({"image_id": image_id, "bbox": pred, "score": float(rng.uniform(0.5, 1.0)), "category_id": cls})
            if rng.random() < 0.1:  # duplicate
                results.append({"image_id": image_id, "bbox": [v + 1.0 for v in pred],
                                "score": float(rng.uniform(0.05, 0.6)), "category_id": cls})
        for _ in range(int(rng.integers(0, 15))):  # low-score clutter anywhere in the image
            w, h = digit_h * rng.uniform(0.2, 0.7), digit_h * rng.uniform(0.5, 1.2)
            results.append({"image_id": image_id, "bbox": [rng.uniform(0, width - w), rng.uniform(0, max(1.0, height - h)), w, h],
                            "score": float(rng.uniform(0.01, 0.4)), "category_id": int(rng.choice(CATEGORY_IDS))})
    for r in results:
        r["bbox"] = [round(float(v), 2) for v in r["bbox"]]
        r["score"] = round(r["score"], 5)
    return coco_dict(gt_images, annotations, decimals=None), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3340)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gt, results = synthetic_set(args.images)
    print(f"{args.images} images, {len(gt['annotations'])} GT boxes, {len(results)} predictions")
    metrics, seconds = {}, {}
    for backend in BACKENDS:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            metrics[backend] = evaluate_coco(gt, results, backend=backend)
            times.append(time.perf_counter() - t0)
        seconds[backend] = min(times)
    ref, fast = metrics["pycocotools"], metrics["faster_coco_eval"]
    print(f"\n{'backend':18s} {'best s':>8s} {'speed-up':>9s}   (best of {args.repeats}, evaluate_coco end to end)")
    for backend, s in seconds.items():
        print(f"{backend:18s} {s:8.2f} {seconds['pycocotools'] / s:8.1f}x")
    print(f"\n{'stat':10s} {'pycocotools':>12s} {'faster':>12s}")
    for name in STAT_NAMES:
        print(f"{name:10s} {ref[name]:12.6f} {fast[name]:12.6f}")
    stat_diff = max(abs(ref[n] - fast[n]) for n in STAT_NAMES)
    class_diff = max(abs(ref.per_class_ap[c] - fast.per_class_ap[c]) for c in ref.per_class_ap)
    curve_diff = float(np.abs(ref.precision_mean - fast.precision_mean).max())
    print(f"\nmax |diff|: 12 stats {stat_diff:.2e}, per-class AP {class_diff:.2e}, mean PR curve {curve_diff:.2e}")


if __name__ == "__main__":
    main()
