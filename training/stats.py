"""Dataset geometry and anchor fit: what the boxes look like, and how well a detector's anchors can cover them.

The figures of the boxes are here; the anchor check and fit (at the model's input scale, on the real anchor grid)
are training/anchors.py, the histograms training/plots.py.

    python -m training.stats DATA [--split train] [--preset NAME] [--anchors 4,8,12,24,48] [--ratios 0.5,1,1.5,2]
                                  [--min-size 800 --max-size 1333] [--propose K] [--out DIR]
    python -m training.stats --layouts train_layouts.json.gz --min-size 128,160,800 --max-size 512,640,1333 \
                             --propose 5 --refine

`--anchors` takes one entry per feature level; several sizes on one level are joined with '/' ("4/6,8,16,32,64").
`--min-size/--max-size` take comma lists to evaluate several input scales in one run. `--propose K` adds a
1-IoU k-means proposal at each scale and `--refine` tunes it on the real grid (see training.anchors.refine_anchors).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detector.hw2 import AnnotationError, ImageRecord, load_split, parse_coco
from training.anchors import (
    RESNET_FPN_STRIDES,
    SEED_ANCHOR_SIZES,
    SEED_ASPECT_RATIOS,
    SEED_MAX_SIZE,
    SEED_MIN_SIZE,
    box_wh,
    fit_anchors,
    gather_boxes,
    preset_anchor_config,
    quantiles,
    recall_label,
    recall_summary,
    refine_anchors,
    scale_boxes,
)


# ----------------------------------------------------------------------------------------- dataset figures
def dataset_stats(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Image and box sizes, box shapes and digits per image, in original pixels (stats.json's top level)."""
    boxes, wh = gather_boxes(records)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    counts = np.array([len(r.boxes) for r in records], dtype=np.int64)
    per_image = {str(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True), strict=False)}
    return {
        "images": len(records),
        "boxes": int(len(boxes)),
        "image_width": quantiles([r.width for r in records]),
        "image_height": quantiles([r.height for r in records]),
        "box_width": quantiles(w),
        "box_height": quantiles(h),
        "box_w_over_h": quantiles(w / h),
        "box_h_over_w": quantiles(h / w),
        "box_height_over_image_height": quantiles(h / wh[:, 1]),
        "digits_per_image": per_image,
    }


# ------------------------------------------------------------------------------------------------ loading
def load_layouts(path: str | Path) -> list[ImageRecord]:
    """Records from any COCO file in HW2's shape, gzipped or not, without needing its pixels."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            coco = json.load(fh)
    except FileNotFoundError as err:
        raise AnnotationError(f"{path}: layouts file not found") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AnnotationError(f"{path}: not a readable (optionally gzipped) COCO JSON file ({err})") from err
    records, report = parse_coco(coco, str(path), path.parent, require_files=False)
    for warning in report.warnings:
        print(f"warning: {path}: {warning}", file=sys.stderr)
    return records


# ---------------------------------------------------------------------------------------------------- CLI
def parse_anchor_sizes(text: str) -> tuple[tuple[int, ...], ...]:
    """'4,8,12,24,48' -> ((4,), (8,), ...): one entry per level, '/' joins several sizes on a level."""
    try:
        levels = tuple(tuple(int(float(s)) for s in part.split("/")) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise ValueError(f"--anchors: expected sizes like '4,8,12,24,48' or '4/6,8,16', got {text!r}") from err
    if not levels or any(s <= 0 for level in levels for s in level):
        raise ValueError(f"--anchors: sizes must be positive numbers, got {text!r}")
    return levels


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as err:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from err
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{name}: expected positive numbers, got {text!r}")
    return values


def _scale_pairs(min_text: str | None, max_text: str | None, default: tuple[int, int]) -> list[tuple[int, int]]:
    if min_text is None:
        if max_text is not None:
            raise ValueError("--max-size needs --min-size")
        return [default]
    mins = [int(v) for v in parse_floats(min_text, "--min-size")]
    if max_text is None:  # torchvision's default max/min ratio
        maxs = [max(m, round(m * SEED_MAX_SIZE / SEED_MIN_SIZE)) for m in mins]
    else:
        maxs = [int(v) for v in parse_floats(max_text, "--max-size")]
        if len(maxs) == 1:
            maxs = maxs * len(mins)
        if len(maxs) != len(mins):
            raise ValueError(f"--max-size: give one value or one per --min-size ({len(mins)}), got {max_text!r}")
    return list(zip(mins, maxs, strict=False))


def _print_recall(tag: str, result: dict[str, Any]) -> None:
    print(f"  {tag:<11} {recall_label(result)}; mean best IoU {result['mean_best_iou']:.3f}; "
          f"best level share {[round(s, 3) for s in result['best_level_share']]}")


def _configuration(args: argparse.Namespace) -> tuple[tuple, tuple, tuple, list[tuple[int, int]]]:
    explicit_strides = tuple(int(v) for v in parse_floats(args.strides, "--strides")) if args.strides else None
    preset = preset_anchor_config(args.preset, explicit_strides) if args.preset else None
    sizes = parse_anchor_sizes(args.anchors) if args.anchors else (
        preset["anchor_sizes"] if preset else SEED_ANCHOR_SIZES)
    ratios = parse_floats(args.ratios, "--ratios") if args.ratios else (
        preset["aspect_ratios"] if preset else SEED_ASPECT_RATIOS)
    strides = explicit_strides or (preset["strides"] if preset else RESNET_FPN_STRIDES)
    if len(strides) != len(sizes):
        raise ValueError(f"{len(sizes)} anchor levels but {len(strides)} strides; pass --strides with one per level")
    default_scale = (preset["min_size"], preset["max_size"]) if preset else (SEED_MIN_SIZE, SEED_MAX_SIZE)
    return sizes, ratios, strides, _scale_pairs(args.min_size, args.max_size, default_scale)


def _load(args: argparse.Namespace) -> tuple[list[ImageRecord], str, Path]:
    if args.layouts:
        stem = Path(args.layouts).name.split(".")[0]
        return load_layouts(args.layouts), args.layouts, Path("stats") / stem
    split = load_split(args.data, args.split, require_files=False)
    for warning in split.report.warnings:
        print(f"warning: {split.report.source}: {warning}", file=sys.stderr)
    return split.records, split.report.source, Path(args.data) / "stats"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", help="HW2 data folder (DATA/<split>.json with DATA/<split>/)")
    parser.add_argument("--split", default="train", choices=("train", "valid"))
    parser.add_argument("--layouts", help="a COCO file (.json or .json.gz) to read instead of DATA; pixels not needed")
    parser.add_argument("--preset", help="take anchors, ratios, input scale and strides from a detector.models preset")
    parser.add_argument("--anchors", help="sizes per level, e.g. '4,8,12,24,48' (default: the seed's)")
    parser.add_argument("--ratios", help="aspect ratios h/w, e.g. '0.5,1,1.5,2' (default: the seed's)")
    parser.add_argument("--strides", help="grid stride per level (default 4,8,16,32,64: resnet-FPN)")
    parser.add_argument("--min-size", help="input min_size, or a comma list of them (default 800)")
    parser.add_argument("--max-size", help="input max_size: one, or one per --min-size (default min_size * 1333/800)")
    parser.add_argument("--propose", type=int, metavar="K",
                        help="also fit K anchor sizes by 1-IoU k-means at each scale")
    parser.add_argument("--propose-ratios", type=int, metavar="R",
                        help="ratios in the proposal (default: as many as --ratios)")
    parser.add_argument("--refine", action="store_true", help="refine the proposal on the real anchor grid (slower)")
    parser.add_argument("--out", help="folder for PNGs and stats.json (default DATA/stats, or ./stats/<layouts name>)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if not args.layouts and not args.data:
        parser.error("give a DATA folder or --layouts FILE")
    if args.refine and not args.propose:
        parser.error("--refine refines a proposal: add --propose K")

    try:
        records, source, default_out = _load(args)
        sizes, ratios, strides, scales = _configuration(args)
        if args.propose and args.propose % len(strides):
            raise ValueError(f"--propose {args.propose}: must be a multiple of the {len(strides)} feature levels")
    except (AnnotationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records = [r for r in records if len(r.boxes)]
    if not records:
        print(f"error: {source}: no boxes to analyse", file=sys.stderr)
        return 2

    summary: dict[str, Any] = {"source": str(source), **dataset_stats(records), "scales": []}
    print(f"{source}: {summary['images']} images with boxes, {summary['boxes']} boxes")
    for key in ("image_width", "image_height", "box_width", "box_height", "box_w_over_h", "box_h_over_w",
                "box_height_over_image_height"):
        q = summary[key]
        print(f"  {key:<29} median {q['median']:>8.2f}  p5 {q['p5']:>8.2f}  p95 {q['p95']:>8.2f}  "
              f"min {q['min']:>8.2f}  max {q['max']:>8.2f}")
    print(f"  digits per image: {summary['digits_per_image']}")

    best_ious: list[dict[str, np.ndarray]] = []
    for min_size, max_size in scales:
        boxes, hw = scale_boxes(records, min_size, max_size)
        entry: dict[str, Any] = {"min_size": min_size, "max_size": max_size}
        ious: dict[str, np.ndarray] = {}
        entry["configured"], ious["configured"] = recall_summary(boxes, hw, sizes, ratios, strides, min_size, max_size)
        q = entry["configured"]["box_height_at_input"]
        print(f"input min_size {min_size} / max_size {max_size}: box height median {q['median']:.1f} px "
              f"(p5 {q['p5']:.1f}, p95 {q['p95']:.1f}); level strides {list(strides)}")
        _print_recall("configured", entry["configured"])
        if args.propose:
            fit = fit_anchors(box_wh(boxes), 1.0, n_sizes=args.propose, n_ratios=args.propose_ratios or len(ratios),
                              n_levels=len(strides))
            entry["proposal"], ious["proposal"] = recall_summary(
                boxes, hw, fit.anchor_sizes, fit.aspect_ratios, strides, min_size, max_size)
            entry["proposal"]["fit"] = fit.to_dict()
            print(f"  k-means centres (sqrt(wh), h/w): {list(zip(fit.centroid_sizes, fit.centroid_ratios, strict=False))}; "
                  f"shape-only mean IoU {fit.shape_iou:.3f}")
            _print_recall("proposal", entry["proposal"])
            if args.refine:
                refined = refine_anchors(boxes, hw, fit.anchor_sizes, fit.aspect_ratios, strides)
                entry["refined"], ious["refined"] = recall_summary(boxes, hw, *refined, strides, min_size, max_size)
                _print_recall("refined", entry["refined"])
        summary["scales"].append(entry)
        best_ious.append(ious)

    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        from training.plots import plot_dataset  # matplotlib only when plotting

        for path in plot_dataset(records, summary["scales"], best_ious, out):
            print(f"wrote {path}")
    (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'stats.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())