"""CLI: python -m training.synth --out DATA [--train N] [--valid N] [--test N] [--seed S] ..."""
from __future__ import annotations

import argparse
import time

from training.synth.contact_sheet import contact_sheet_from_data
from training.synth.styles import SHARES
from training.synth.writer import DEFAULT_COUNTS, generate_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.synth",
                                 description="Write a synthetic house-number dataset in the HW2 layout.")
    ap.add_argument("--out", required=True, help="dataset folder (DATA)")
    for split in ("train", "valid", "test"):
        ap.add_argument(f"--{split}", type=int, default=None, metavar="N",
                        help=f"images in {split} (default {DEFAULT_COUNTS[split]}"
                             + ("; with --layouts: all layouts" if split == "train" else "") + ")")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--styles", choices=SHARES, default="all", help="style share: train, heldout or all")
    ap.add_argument("--layouts", metavar="FILE.json", help="COCO file: render train as its twin, box for box")
    ap.add_argument("--negatives", type=float, default=0.0, metavar="SHARE",
                    help="share of train images drawn with no number (hard negatives: scene and clutter only)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--contact-sheet", metavar="PATH.png", help="also write a grid of 48 train samples with boxes")
    ap.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    args = ap.parse_args(argv)
    counts = {s: n for s in ("train", "valid", "test") if (n := getattr(args, s)) is not None}
    if any(n < 0 for n in counts.values()):
        ap.error("image counts must be >= 0")
    start = time.perf_counter()
    out = generate_dataset(args.out, counts, seed=args.seed, styles=args.styles, layouts=args.layouts,
                           workers=args.workers, overwrite=args.overwrite, progress=True, negatives=args.negatives)
    total = sum(len(list((out / s).glob("*.png"))) for s in ("train", "valid", "test"))
    took = time.perf_counter() - start
    print(f"wrote {total} images to {out} in {took:.1f} s ({total / max(took, 1e-9):.0f} images/s)")
    if args.contact_sheet:
        split = "train" if any((out / "train").iterdir()) else "valid"
        print(f"contact sheet: {contact_sheet_from_data(out, args.contact_sheet, split)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
