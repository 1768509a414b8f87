"""Boxes and labels drawn on images for the UI (Pillow).

HW2 images are ~100x50 px, far too small to read a label on, so every view is drawn on a copy scaled up
to a readable size (and huge uploads scaled down); coordinates are scaled with it. Prediction kinds and
missed ground truth use one fixed palette, shown by `legend_html`, so colour means the same thing in
every view (the FiftyOne / Ultralytics convention: green right, red wrong, blue missed).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detector.categories import category_to_digit
from detector.detections import Detections
from detector.matching import MISSED, ImageMatch

KIND_COLOURS = {
    "correct": "#16a34a",
    "wrong_class": "#dc2626",
    "poor_localisation": "#f97316",
    "duplicate": "#9333ea",
    "background": "#db2777",
    MISSED: "#2563eb",
    "ground_truth": "#0891b2",
}
KIND_LABELS = {
    "correct": "correct", "wrong_class": "wrong class", "poor_localisation": "poor localisation",
    "duplicate": "duplicate", "background": "background FP", MISSED: "missed digit",
    "ground_truth": "ground truth (found)",
}
KIND_SHORT = {"correct": "", "wrong_class": "cls", "poor_localisation": "loc", "duplicate": "dup",
              "background": "bg"}
# one colour per digit 0..9 (matplotlib's tab10) for views without ground truth
DIGIT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
TARGET_SHORT_SIDE = 360
MAX_LONG_SIDE = 1280


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        from matplotlib import get_data_path

        return ImageFont.truetype(str(Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def display_scale(width: int, height: int, short_side: int = TARGET_SHORT_SIDE, long_side: int = MAX_LONG_SIDE) -> float:
    """Scale that brings the short side to `short_side` without the long side passing `long_side`."""
    scale = short_side / max(min(width, height), 1)
    return min(scale, long_side / max(width, height, 1))


def scaled_copy(image: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
    return image.convert("RGB").resize(size, resample)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: str, width: int, dash: int) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay, bx, by) in ((x1, y1, x2, y1), (x2, y1, x2, y2), (x2, y2, x1, y2), (x1, y2, x1, y1)):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min((i + 1) / steps, 1.0)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=width)


def draw_boxes(
    image: Image.Image,
    boxes: np.ndarray,
    colours: Sequence[str],
    texts: Sequence[str],
    *,
    widths: Sequence[int] | None = None,
    dashed: Sequence[bool] | None = None,
    scale: float | None = None,
) -> Image.Image:
    """Draw xyxy `boxes` (original pixels) with a filled label tag each, on a display-scaled copy."""
    scale = display_scale(*image.size) if scale is None else scale
    out = scaled_copy(image, scale)
    draw = ImageDraw.Draw(out)
    base = max(2, round(min(out.size) / 120))
    font = _font(max(11, round(min(out.size) / 14)))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    for i, (box, colour, text) in enumerate(zip(boxes, colours, texts)):
        width = (widths[i] if widths is not None else 1) * base
        x1, y1, x2, y2 = (float(v) for v in box)
        if dashed is not None and dashed[i]:
            _dashed_rectangle(draw, (x1, y1, x2, y2), colour, width, dash=max(4, 3 * base))
        else:
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        if text:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left + 4, bottom - top + 4
            ty = y1 - th if y1 - th >= 0 else min(y2, out.height - th)
            tx = min(max(x1, 0), max(out.width - tw, 0))
            draw.rectangle([tx, ty, tx + tw, ty + th], fill=colour)
            draw.text((tx + 2 - left, ty + 2 - top), text, fill="white", font=font)
    return out


def _digit(label: int) -> int:
    return category_to_digit(int(label))


def draw_detections(image: Image.Image, final: Detections, number_digits: Detections | None = None) -> Image.Image:
    """Detections coloured by digit; those used to read the number are drawn bold, the others dashed."""
    used = {tuple(b) for b in number_digits.boxes.tolist()} if number_digits is not None else None
    boxes = final.boxes.numpy()
    bold = [used is None or tuple(b) in used for b in final.boxes.tolist()]
    return draw_boxes(
        image, boxes,
        colours=[DIGIT_COLOURS[_digit(l)] for l in final.labels.tolist()],
        texts=[f"{_digit(l)} {s:.2f}" for l, s in zip(final.labels.tolist(), final.scores.tolist())],
        widths=[2 if b else 1 for b in bold], dashed=[not b for b in bold],
    )


def draw_prediction_side(image: Image.Image, match: ImageMatch, scale: float | None = None) -> Image.Image:
    """The prediction half of a side-by-side view: each box coloured by its kind."""
    pred = match.pred
    return draw_boxes(
        image, pred.boxes.numpy(),
        colours=[KIND_COLOURS[k] for k in match.kinds],
        texts=[f"{_digit(l)} {s:.2f}" + (f" {KIND_SHORT[k]}" if KIND_SHORT[k] else "")
               for l, s, k in zip(pred.labels.tolist(), pred.scores.tolist(), match.kinds)],
        widths=[2 if k == "correct" else 1 for k in match.kinds],
        dashed=[k == "duplicate" for k in match.kinds], scale=scale,
    )


def draw_ground_truth_side(image: Image.Image, match: ImageMatch, scale: float | None = None) -> Image.Image:
    """The ground-truth half: found digits in teal, missed digits in bold blue and dashed."""
    missed = set(match.missed.tolist())
    n = len(match.gt_labels)
    return draw_boxes(
        image, match.gt_boxes,
        colours=[KIND_COLOURS[MISSED] if g in missed else KIND_COLOURS["ground_truth"] for g in range(n)],
        texts=[f"{_digit(l)}" + (" missed" if g in missed else "") for g, l in enumerate(match.gt_labels.tolist())],
        widths=[2 if g in missed else 1 for g in range(n)],
        dashed=[g in missed for g in range(n)], scale=scale,
    )


def draw_match_overlay(image: Image.Image, match: ImageMatch, scale: float | None = None) -> Image.Image:
    """Both halves in one picture (gallery thumbnails): predictions by kind plus missed digits dashed blue."""
    pred, missed = match.pred, match.missed.tolist()
    boxes = np.concatenate([pred.boxes.numpy().reshape(-1, 4), match.gt_boxes[missed].reshape(-1, 4)])
    return draw_boxes(
        image, boxes,
        colours=[KIND_COLOURS[k] for k in match.kinds] + [KIND_COLOURS[MISSED]] * len(missed),
        texts=[f"{_digit(l)}" for l in pred.labels.tolist()] + [f"{_digit(match.gt_labels[g])}" for g in missed],
        widths=[2 if k == "correct" else 1 for k in match.kinds] + [2] * len(missed),
        dashed=[k == "duplicate" for k in match.kinds] + [True] * len(missed), scale=scale,
    )


def draw_ground_truth(image: Image.Image, boxes: np.ndarray, category_ids: Sequence[int],
                      extra: Sequence[tuple[Sequence[float], int, str]] = ()) -> Image.Image:
    """Ground truth alone (annotation review), plus `extra` (box, category id, colour) suggestions dashed."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    all_boxes = np.concatenate([boxes, np.asarray([e[0] for e in extra], dtype=np.float64).reshape(-1, 4)])
    return draw_boxes(
        image, all_boxes,
        colours=[KIND_COLOURS["ground_truth"]] * len(boxes) + [e[2] for e in extra],
        texts=[f"{_digit(c)}" for c in category_ids] + [f"{_digit(e[1])}?" for e in extra],
        widths=[1] * len(boxes) + [2] * len(extra),
        dashed=[False] * len(boxes) + [True] * len(extra),
    )


def legend_html() -> str:
    chips = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="width:14px;height:14px;border-radius:3px;background:{colour};margin-right:5px"></span>'
        f'{KIND_LABELS[kind]}</span>'
        for kind, colour in KIND_COLOURS.items()
    )
    return f'<div style="display:flex;flex-wrap:wrap;font-size:0.9em">{chips}</div>'
