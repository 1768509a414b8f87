"""Where digits sit in real SVHN crops, as summary figures, and sampling from those figures.

The generator must place numbers the way real street-view crops do (image sizes, how many digits,
how tall they are relative to the crop, spacing, where the number sits), or a model trained on it
learns the wrong priors. SVHN is for non-commercial use, so the project carries only quantiles and
counts derived from its layouts (`svhn_geometry.json`), never per-image data.

    python -m training.synth.geometry --fit ../shared/data/svhn-layouts/train_layouts.json.gz
    python -m training.synth.geometry --compare DATA       # synthetic DATA/train.json vs the figures
"""
from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from detector.hw2 import ImageRecord

# detector.hw2 imports torch (through detector.boxes); it is imported where files are read, so that
# the render path, which only samples from the figures, starts fast in every worker process

GEOMETRY_FILE = Path(__file__).with_name("svhn_geometry.json")
# 0.5% .. 99.5%: the extremes are left out so no single image's values end up in the file
QUANTILE_LEVELS: tuple[float, ...] = (0.005, 0.025) + tuple(np.round(np.arange(0.05, 0.951, 0.05), 3)) + (0.975, 0.995)
HEIGHT_BINS = 5  # digit height relative to the crop shrinks as crops grow (corr ~ -0.5), so it is binned by height
MAX_DIGITS_KEY = 4  # 5- and 6-digit numbers are too rare for their own aspect figures


def _quantiles(values: Sequence[float]) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    return [float(f"{q:.4g}") for q in np.quantile(v, QUANTILE_LEVELS)]


def _digits_key(n: int) -> str:
    return str(n) if n < MAX_DIGITS_KEY else f"{MAX_DIGITS_KEY}+"


def layout_statistics(records: list[ImageRecord]) -> dict[str, Any]:
    """Per-quantity samples (not yet summarised): shared by --fit and --compare so both measure alike."""
    s: dict[str, Any] = {k: [] for k in ("height", "width", "aspect", "hrel", "gap", "dy", "cx", "cy", "hrel_n")}
    s["aspect_by_n"], s["block_frac_by_n"], s["box_aspect"] = {}, {}, {}
    s["n"], s["first"], s["other"] = Counter(), Counter(), Counter()
    for rec in records:
        if len(rec.boxes) == 0:
            continue
        order = np.argsort(rec.boxes[:, 0], kind="stable")
        b, w, h = rec.boxes[order], rec.width, rec.height
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        n = len(b)
        key = _digits_key(n)
        s["n"][n] += 1
        s["height"].append(h)
        s["width"].append(w)
        s["aspect"].append(w / h)
        s["aspect_by_n"].setdefault(key, []).append(w / h)
        s["block_frac_by_n"].setdefault(key, []).append((b[:, 2].max() - b[:, 0].min()) / w)
        s["hrel"].append(float(np.median(bh)) / h)
        s["hrel_n"].append(key)
        s["cx"].append((b[:, 0].min() + b[:, 2].max()) / 2 / w)
        s["cy"].append((b[:, 1].min() + b[:, 3].max()) / 2 / h)
        cats = rec.category_ids[order].tolist()
        s["first"][cats[0]] += 1
        for c in cats[1:]:
            s["other"][c] += 1
        for c, ww, hh in zip(cats, bw.tolist(), bh.tolist(), strict=False):
            s["box_aspect"].setdefault(str(c - 1), []).append(ww / hh)
        mean_h = (bh[1:] + bh[:-1]) / 2
        s["gap"].extend(((b[1:, 0] - b[:-1, 2]) / mean_h).tolist())
        s["dy"].extend((((b[1:, 1] + b[1:, 3]) - (b[:-1, 1] + b[:-1, 3])) / 2 / mean_h).tolist())
    return s


def _freq(counter: Counter) -> list[float]:
    total = sum(counter.values()) or 1
    return [round(counter.get(c, 0) / total, 5) for c in range(1, 11)]


def fit_geometry(coco: dict, source: str = "layouts") -> dict[str, Any]:
    """Summarise a COCO layout file into the sampling figures the generator uses."""
    from detector.hw2 import AnnotationError, parse_coco

    records, _ = parse_coco(coco, source, Path("."), require_files=False)
    s = layout_statistics(records)
    if not s["height"]:
        raise AnnotationError(f"{source}: no image with at least one box; nothing to fit")
    heights = np.asarray(s["height"], dtype=np.float64)
    hrel, keys = np.asarray(s["hrel"]), np.asarray(s["hrel_n"])
    edges = np.quantile(heights, np.linspace(0, 1, HEIGHT_BINS + 1)[1:-1]).tolist()
    bins = np.digitize(heights, edges)

    def by_bin(sel: np.ndarray) -> list[list[float]]:  # an empty cell falls back to the whole digit group
        return [_quantiles(hrel[sel & (bins == i)] if (sel & (bins == i)).any() else hrel[sel])
                for i in range(HEIGHT_BINS)]
    return {
        "about": "Summary sampling figures of real house-number crop geometry (quantiles and counts only). "
                 "Box figures describe hand-drawn boxes, which are a little loose around the glyph ink.",
        "source": {"images": len(s["height"]), "boxes": int(sum(k * v for k, v in s["n"].items()))},
        "quantile_levels": list(QUANTILE_LEVELS),
        "image_height": _quantiles(s["height"]),
        "image_width": _quantiles(s["width"]),
        "aspect_by_digits": {k: _quantiles(v) for k, v in sorted(s["aspect_by_n"].items())},
        "digit_height_rel": {
            "height_bin_edges": [round(e, 2) for e in edges],
            "quantiles_by_digits": {k: by_bin(keys == k) for k in sorted(set(keys.tolist()))},
        },
        "digits_per_image": {str(k): v for k, v in sorted(s["n"].items())},
        "first_digit_freq": _freq(s["first"]),
        "other_digit_freq": _freq(s["other"]),
        "box_gap_rel": _quantiles(s["gap"]),
        "centre_dy_rel": _quantiles(s["dy"]),
        "number_centre_x": _quantiles(s["cx"]),
        "number_centre_y": _quantiles(s["cy"]),
        "block_width_frac_by_digits": {k: _quantiles(v) for k, v in sorted(s["block_frac_by_n"].items())},
        "box_aspect_by_digit": {k: _quantiles(v) for k, v in sorted(s["box_aspect"].items())},
    }


def read_coco(path: str | Path) -> dict:
    from detector.hw2 import AnnotationError

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise AnnotationError(f"{path}: layout file not found") from err
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: cannot read COCO layouts ({err})") from err


@dataclass(frozen=True)
class Quantiles:
    """Inverse-CDF sampling through stored quantiles (linear between levels, flat beyond the ends)."""

    levels: np.ndarray
    values: np.ndarray

    def sample(self, rng: np.random.Generator) -> float:
        return float(np.interp(rng.random(), self.levels, self.values))

    def median(self) -> float:
        return float(np.interp(0.5, self.levels, self.values))


class Geometry:
    """The committed figures, ready to sample: one method per layout decision."""

    def __init__(self, figures: dict[str, Any]):
        self.figures = figures
        lv = np.asarray(figures["quantile_levels"], dtype=np.float64)
        q = lambda v: Quantiles(lv, np.asarray(v, dtype=np.float64))  # noqa: E731
        self.height = q(figures["image_height"])
        self.aspect = {k: q(v) for k, v in figures["aspect_by_digits"].items()}
        self.hrel_edges = np.asarray(figures["digit_height_rel"]["height_bin_edges"])
        self.hrel = {k: [q(v) for v in bins] for k, bins in figures["digit_height_rel"]["quantiles_by_digits"].items()}
        counts = {int(k): v for k, v in figures["digits_per_image"].items()}
        self.n_values = np.array(sorted(counts))
        self.n_probs = np.array([counts[k] for k in self.n_values], dtype=np.float64)
        self.n_probs /= self.n_probs.sum()
        self.first = np.asarray(figures["first_digit_freq"]) / np.sum(figures["first_digit_freq"])
        self.other = np.asarray(figures["other_digit_freq"]) / np.sum(figures["other_digit_freq"])
        self.gap = q(figures["box_gap_rel"])
        self.dy = q(figures["centre_dy_rel"])
        self.cx = q(figures["number_centre_x"])
        self.cy = q(figures["number_centre_y"])
        self.box_aspect = {int(k): q(v) for k, v in figures["box_aspect_by_digit"].items()}

    def digit_count(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.n_values, p=self.n_probs))

    def image_size(self, rng: np.random.Generator, n_digits: int) -> tuple[int, int]:
        """(width, height) in output pixels."""
        h = self.height.sample(rng)
        aspect = self.aspect.get(_digits_key(n_digits), self.aspect[f"{MAX_DIGITS_KEY}+"]).sample(rng)
        return int(np.clip(round(h * aspect), 20, 1000)), int(np.clip(round(h), 12, 600))

    def digit_height(self, rng: np.random.Generator, image_height: int, n_digits: int) -> float:
        """Digit height as a fraction of the crop height, given the crop height and the number's length
        (both matter: long numbers and large crops have relatively smaller digits)."""
        table = self.hrel.get(_digits_key(n_digits), self.hrel[f"{MAX_DIGITS_KEY}+"])
        return table[int(np.digitize(image_height, self.hrel_edges))].sample(rng)

    def digit_aspect(self, rng: np.random.Generator, digit: int) -> float:
        """Width / height of a (hand-drawn, so slightly loose) box around `digit`."""
        return self.box_aspect[digit].sample(rng)

    def category_ids(self, rng: np.random.Generator, n_digits: int) -> list[int]:
        first = int(rng.choice(10, p=self.first)) + 1
        return [first] + [int(c) + 1 for c in rng.choice(10, size=n_digits - 1, p=self.other)]


@lru_cache(maxsize=4)
def load_geometry(path: str | None = None) -> Geometry:
    p = Path(path) if path else GEOMETRY_FILE
    try:
        return Geometry(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{p}: cannot read geometry figures ({err}); refit with --fit") from err


def _compare(data: Path, figures: dict[str, Any]) -> str:
    """Medians and 5-95% ranges of the synthetic train split beside the committed real figures."""
    ann = data / "train.json"
    ours = fit_geometry(read_coco(ann), str(ann))
    rows = [("image_height", "image height px"), ("image_width", "image width px"),
            ("box_gap_rel", "gap / digit height"), ("number_centre_x", "number centre x / W"),
            ("number_centre_y", "number centre y / H")]
    lv = np.asarray(figures["quantile_levels"])
    pick = lambda v: np.interp([0.05, 0.5, 0.95], lv, v)  # noqa: E731
    lines = [f"{'quantity':28s} {'real 5% / 50% / 95%':>26s}   {'synthetic 5% / 50% / 95%':>26s}"]
    fmt = lambda v: " / ".join(f"{x:7.3g}" for x in pick(v))  # noqa: E731
    for key, name in rows:
        lines.append(f"{name:28s} {fmt(figures[key]):>26s}   {fmt(ours[key]):>26s}")
    for k in sorted(figures["aspect_by_digits"]):
        if k in ours["aspect_by_digits"]:
            lines.append(f"{'W/H, ' + k + ' digits':28s} {fmt(figures['aspect_by_digits'][k]):>26s}   "
                         f"{fmt(ours['aspect_by_digits'][k]):>26s}")
        if k in ours["block_width_frac_by_digits"]:
            lines.append(f"{'number width / W, ' + k:28s} {fmt(figures['block_width_frac_by_digits'][k]):>26s}   "
                         f"{fmt(ours['block_width_frac_by_digits'][k]):>26s}")
    real_h, our_h = figures["digit_height_rel"]["quantiles_by_digits"], ours["digit_height_rel"]["quantiles_by_digits"]
    for k in sorted(set(real_h) & set(our_h)):
        for i in (0, HEIGHT_BINS // 2, HEIGHT_BINS - 1):
            lines.append(f"{'digit h / H, ' + k + ' dig, bin ' + str(i):28s} {fmt(real_h[k][i]):>26s}   "
                         f"{fmt(our_h[k][i]):>26s}")
    for d in ("0", "1", "4"):
        lines.append(f"{'box w/h, digit ' + d:28s} {fmt(figures['box_aspect_by_digit'][d]):>26s}   "
                     f"{fmt(ours['box_aspect_by_digit'].get(d, [np.nan] * len(lv))):>26s}")
    real_n, our_n = figures["digits_per_image"], ours["digits_per_image"]
    tot_r, tot_o = sum(real_n.values()), sum(our_n.values())
    lines.append("digits per image (real / synthetic): " + ", ".join(
        f"{k}: {real_n.get(k, 0) / tot_r:.2f}/{our_n.get(k, 0) / tot_o:.2f}" for k in sorted(set(real_n) | set(our_n))))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.synth.geometry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", metavar="LAYOUTS", help="COCO layouts (.json or .json.gz) to summarise")
    ap.add_argument("--out", default=str(GEOMETRY_FILE), help="where --fit writes the figures")
    ap.add_argument("--compare", metavar="DATA", help="compare a generated DATA/train.json with the figures")
    args = ap.parse_args(argv)
    if not args.fit and not args.compare:
        ap.error("give --fit LAYOUTS and/or --compare DATA")
    if args.fit:
        figures = fit_geometry(read_coco(args.fit), args.fit)
        # one top-level key per line: small, diffable, readable
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in figures.items())
        Path(args.out).write_text("{\n" + body + "\n}\n", encoding="utf-8")
        print(f"wrote {args.out} from {figures['source']['images']} images, {figures['source']['boxes']} boxes")
    if args.compare:
        print(_compare(Path(args.compare), load_geometry(args.out if args.fit else None).figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
