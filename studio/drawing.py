"""Boxes and labels drawn on images for the UI (Pillow).

HW2 images are ~100x50 px, far too small to read a label on, so every view is drawn on a copy scaled up
to a readable size (and huge uploads scaled down); coordinates are scaled with it. Prediction kinds and
missed ground truth use one fixed palette, shown by `legend_html`, so colour means the same thing in
every view (the FiftyOne / Ultralytics convention: green right, red wrong, blue missed).

Every box is drawn with a dark outer and a light inner edge, so no colour vanishes on a background of its own
hue, and every label is placed inside the picture where it overlaps no label already placed (above the box,
else below, else inside it), so neighbouring digits' labels alternate instead of covering each other.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

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
DARK_EDGE, LIGHT_EDGE = "#111111", "#ffffff"
Rect = tuple[float, float, float, float]


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
    """Dashes in `colour`, each on a dark dash one pixel wider on either side and a light one wider still."""
    x1, y1, x2, y2 = box
    dashes = []
    for (ax, ay, bx, by) in ((x1, y1, x2, y1), (x2, y1, x2, y2), (x2, y2, x1, y2), (x1, y2, x1, y1)):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min((i + 1) / steps, 1.0)
            dashes.append([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)])
    for fill, extra in ((LIGHT_EDGE, 4), (DARK_EDGE, 2), (colour, 0)):
        for line in dashes:
            draw.line(line, fill=fill, width=width + extra)


def _outlined_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: str, width: int) -> None:
    """`colour` from the box edge inwards, with a dark line just outside and a light line just inside it."""
    x1, y1, x2, y2 = box
    draw.rectangle([x1 - 1, y1 - 1, x2 + 1, y2 + 1], outline=DARK_EDGE, width=1)
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
    if x2 - x1 > 2 * width + 2 and y2 - y1 > 2 * width + 2:
        draw.rectangle([x1 + width, y1 + width, x2 - width, y2 - width], outline=LIGHT_EDGE, width=1)


def _overlap(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_label(box: Sequence[float], size: tuple[float, float], canvas: tuple[int, int],
                placed: Sequence[Rect]) -> Rect:
    """Where a `size` label for `box` goes: inside the canvas, above the box, else below it, else inside its
    top or bottom edge, at the first of these (also shifted to the box's right end) that overlaps no label in
    `placed`; when every place overlaps one, the place overlapping least."""
    (tw, th), (cw, ch) = size, canvas
    x1, y1, x2, y2 = box
    xs = [x1, x2 - tw]
    ys = [y1 - th, y2, y1, y2 - th]
    best, best_cost = None, float("inf")
    for ty in ys:
        for tx in xs:
            tx, ty_in = min(max(tx, 0.0), max(cw - tw, 0.0)), min(max(ty, 0.0), max(ch - th, 0.0))
            rect = (tx, ty_in, tx + tw, ty_in + th)
            cost = sum(_overlap(rect, p) for p in placed)
            if cost == 0:
                return rect
            if cost < best_cost:
                best, best_cost = rect, cost
    return best


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
    for i, (box, colour) in enumerate(zip(boxes, colours, strict=False)):  # every box first: no box is drawn over a label
        width = (widths[i] if widths is not None else 1) * base
        x1, y1, x2, y2 = (float(v) for v in box)
        if dashed is not None and dashed[i]:
            _dashed_rectangle(draw, (x1, y1, x2, y2), colour, width, dash=max(4, 3 * base))
        else:
            _outlined_rectangle(draw, (x1, y1, x2, y2), colour, width)
    placed: list[Rect] = []
    for box, colour, text in sorted(zip(boxes.tolist(), colours, texts, strict=False), key=lambda t: (t[0][0], t[0][1])):
        if not text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx, ty, tx2, ty2 = place_label(box, (right - left + 4, bottom - top + 4), out.size, placed)
        placed.append((tx, ty, tx2, ty2))
        draw.rectangle([tx, ty, tx2 - 1, ty2 - 1], fill=colour, outline=DARK_EDGE, width=1)  # ends are inclusive
        draw.text((tx + 2 - left, ty + 2 - top), text, fill="white", font=font, stroke_width=1, stroke_fill=DARK_EDGE)
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
        colours=[DIGIT_COLOURS[_digit(lab)] for lab in final.labels.tolist()],
        texts=[f"{_digit(lab)} {s:.2f}" for lab, s in zip(final.labels.tolist(), final.scores.tolist(), strict=False)],
        widths=[2 if b else 1 for b in bold], dashed=[not b for b in bold],
    )


def draw_prediction_side(image: Image.Image, match: ImageMatch, scale: float | None = None) -> Image.Image:
    """The prediction half of a side-by-side view: each box coloured by its kind."""
    pred = match.pred
    return draw_boxes(
        image, pred.boxes.numpy(),
        colours=[KIND_COLOURS[k] for k in match.kinds],
        texts=[f"{_digit(lab)} {s:.2f}" + (f" {KIND_SHORT[k]}" if KIND_SHORT[k] else "")
               for lab, s, k in zip(pred.labels.tolist(), pred.scores.tolist(), match.kinds, strict=False)],
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
        texts=[f"{_digit(lab)}" + (" missed" if g in missed else "") for g, lab in enumerate(match.gt_labels.tolist())],
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
        texts=[f"{_digit(lab)}" for lab in pred.labels.tolist()] + [f"{_digit(match.gt_labels[g])}" for g in missed],
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
