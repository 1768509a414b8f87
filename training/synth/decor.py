"""What is drawn on the wall besides plain digits: plaques, edges to other surfaces, cables, the
digits' paint (gradient, metal, wear) and their effects (shadow, outline, emboss, extrusion).

Everything here draws into the flat "plane" image (float32 RGB, before the perspective warp) in place,
using whole-array OpenCV/numpy operations. `unit` is the digit height in plane pixels: sizes scale with it.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from training.synth.backgrounds import fbm, make_texture, smooth_noise, white_noise
from training.synth.colours import luminance, wall_colour
from training.synth.pixels import blend, multiply, shade

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 in plane pixels


def shift(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(a, m, (a.shape[1], a.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def plaque_mask(rng: np.random.Generator, kind: str, shape: tuple[int, int], region: Region,
                digit_boxes: list[Region], unit: float) -> tuple[np.ndarray, Region]:
    """Anti-aliased plaque coverage (float32) and its outer box (x0, y0, x1, y1)."""
    mask = np.zeros(shape, np.uint8)
    x0, y0, x1, y1 = region
    px, py = unit * rng.uniform(0.15, 0.55), unit * rng.uniform(0.1, 0.4)
    X0, Y0, X1, Y1 = x0 - px, y0 - py, x1 + px, y1 + py
    sh = 4  # cv2 drawing with 4 fractional bits: sub-pixel plaque edges
    P = lambda v: int(round(v * (1 << sh)))  # noqa: E731
    if kind == "per_digit":
        pad = unit * rng.uniform(0.08, 0.2)
        for bx, by, bw, bh in digit_boxes:
            cv2.rectangle(mask, (P(bx - pad), P(by - pad)), (P(bx + bw + pad), P(by + bh + pad)), 255, -1,
                          cv2.LINE_AA, sh)
        X0, Y0 = min(b[0] for b in digit_boxes) - pad, min(b[1] for b in digit_boxes) - pad
        X1, Y1 = max(b[0] + b[2] for b in digit_boxes) + pad, max(b[1] + b[3] for b in digit_boxes) + pad
    elif kind == "oval":
        cx, cy, ax, ay = (X0 + X1) / 2, (Y0 + Y1) / 2, (X1 - X0) / 2 * 1.2, (Y1 - Y0) / 2 * 1.3
        cv2.ellipse(mask, (P(cx), P(cy)), (P(ax), P(ay)), 0, 0, 360, 255, -1, cv2.LINE_AA, sh)
        X0, Y0, X1, Y1 = cx - ax, cy - ay, cx + ax, cy + ay
    elif kind == "arch":
        r = (X1 - X0) / 2
        cv2.rectangle(mask, (P(X0), P(Y0)), (P(X1), P(Y1)), 255, -1, cv2.LINE_AA, sh)
        cv2.ellipse(mask, (P((X0 + X1) / 2), P(Y0)), (P(r), P(min(r, unit * 0.6))), 0, 180, 360, 255, -1,
                    cv2.LINE_AA, sh)
        Y0 -= min(r, unit * 0.6)
    else:  # rect, rounded, bordered
        r = unit * rng.uniform(0.1, 0.35) if kind == "rounded" else 0.0
        if r > 0:
            cv2.rectangle(mask, (P(X0 + r), P(Y0)), (P(X1 - r), P(Y1)), 255, -1, cv2.LINE_AA, sh)
            cv2.rectangle(mask, (P(X0), P(Y0 + r)), (P(X1), P(Y1 - r)), 255, -1, cv2.LINE_AA, sh)
            for cx, cy in ((X0 + r, Y0 + r), (X1 - r, Y0 + r), (X0 + r, Y1 - r), (X1 - r, Y1 - r)):
                cv2.circle(mask, (P(cx), P(cy)), P(r), 255, -1, cv2.LINE_AA, sh)
        else:
            cv2.rectangle(mask, (P(X0), P(Y0)), (P(X1), P(Y1)), 255, -1, cv2.LINE_AA, sh)
    return mask.astype(np.float32) * np.float32(1 / 255), (X0, Y0, X1, Y1)


def draw_plaque(rng: np.random.Generator, img: np.ndarray, kind: str, colour: np.ndarray, ink: np.ndarray,
                region: Region, digit_boxes: list[Region], unit: float) -> tuple[Region, dict]:
    """A plate behind the number (with shadow, rim, border, screws); returns its outer box.

    `region` is the number's x0, y0, x1, y1; `digit_boxes` are the digits' xywh (for per-digit tiles).
    """
    h, w = img.shape[:2]
    cover, outer = plaque_mask(rng, kind, (h, w), region, digit_boxes, unit)
    d = unit * rng.uniform(0.02, 0.08)
    shadow = cv2.GaussianBlur(shift(cover, d, d), (0, 0), max(0.5, d))
    multiply(img, 1 - rng.uniform(0.25, 0.55) * shadow)
    surface = shade(colour, 1 + 0.03 * smooth_noise(rng, h, w, unit * 0.7) + white_noise(rng, h, w) * np.float32(0.012))
    blend(img, cover, surface)
    rim = cover - cv2.erode(cover, np.ones((3, 3), np.uint8), iterations=max(1, int(unit * 0.03)))
    multiply(img, 1 - 0.3 * rim)  # the plate's edge catches less light
    meta: dict[str, Any] = {}
    if kind == "bordered":
        inset, t = unit * rng.uniform(0.06, 0.14), max(1, int(round(unit * rng.uniform(0.03, 0.07))))
        X0, Y0, X1, Y1 = outer
        border = np.zeros((h, w), np.uint8)
        cv2.rectangle(border, (int(X0 + inset), int(Y0 + inset)), (int(X1 - inset), int(Y1 - inset)), 255, t,
                      cv2.LINE_AA)
        blend(img, border.astype(np.float32) / 255, ink)
    if kind in ("rect", "rounded", "bordered", "arch") and rng.random() < 0.35:  # fixing screws
        X0, Y0, X1, Y1 = outer
        r = max(1, int(unit * 0.05))
        inset = unit * 0.12
        screws = np.zeros((h, w), np.uint8)
        for cx in (X0 + inset, X1 - inset):
            for cy in (Y0 + inset, Y1 - inset):
                cv2.circle(screws, (int(cx), int(cy)), r, 255, -1, cv2.LINE_AA)
        blend(img, screws.astype(np.float32) / 255, np.float32(rng.uniform(0.3, 0.8)))
        meta["screws"] = True
    return outer, meta


def second_surface(rng: np.random.Generator, img: np.ndarray, family: str, keep_clear: Region,
                   unit: float) -> str | None:
    """An edge (door frame, window, wall corner) beside the number, with another surface behind it."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = keep_clear
    room = {"left": x0, "right": w - x1, "top": y0, "bottom": h - y1}
    sides = [s for s, r in room.items() if r > unit * 0.5]
    if not sides:
        return None
    side = sides[int(rng.integers(len(sides)))]
    frac = rng.uniform(0.15, 0.85)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    slope = rng.normal(0, 0.05)
    if side == "left":
        d = (x0 * frac) + slope * (ys - h / 2) - xs
    elif side == "right":
        d = xs - (x1 + (w - x1) * (1 - frac)) - slope * (ys - h / 2)
    elif side == "top":
        d = (y0 * frac) + slope * (xs - w / 2) - ys
    else:
        d = ys - (y1 + (h - y1) * (1 - frac)) - slope * (xs - w / 2)
    region = np.clip(d + 0.5, 0, 1)
    other = make_texture(family, rng, h, w, wall_colour(rng), unit)
    blend(img, region, other)
    line = np.exp(-(d ** 2) / max(1.0, (unit * rng.uniform(0.01, 0.05)) ** 2))
    multiply(img, 1 - rng.uniform(0.2, 0.6) * line)
    return side


def cables(rng: np.random.Generator, img: np.ndarray, keep_clear: Region, unit: float) -> None:
    """Thin straight lines (cables, pipes, gutters) that stay off the number."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = keep_clear
    layer = np.zeros((h, w), np.uint8)
    t = max(1, int(unit * rng.uniform(0.03, 0.15)))
    if rng.random() < 0.5 and (y0 > 2 * t or h - y1 > 2 * t):
        y = rng.uniform(0, y0 - t) if (y0 > h - y1) else rng.uniform(y1 + t, h)
        cv2.line(layer, (0, int(y + rng.normal(0, unit * 0.1))), (w, int(y)), 255, t, cv2.LINE_AA)
    elif x0 > 2 * t or w - x1 > 2 * t:
        x = rng.uniform(0, x0 - t) if (x0 > w - x1) else rng.uniform(x1 + t, w)
        cv2.line(layer, (int(x), 0), (int(x + rng.normal(0, unit * 0.1)), h), 255, t, cv2.LINE_AA)
    blend(img, layer.astype(np.float32) / 255, np.float32(rng.uniform(0.05, 0.9)))


def ink_fill(rng: np.random.Generator, fill: str, ink: np.ndarray, shape: tuple[int, int], region: Region
             ) -> np.ndarray:
    """The colour the ink is painted with: flat, a gradient, or a metal with a specular band."""
    if fill not in ("gradient", "metallic"):
        return ink
    h, w = shape
    x0, y0, x1, y1 = region
    yy = ((np.arange(h, dtype=np.float32) - y0) / max(1.0, y1 - y0))[:, None]
    xx = ((np.arange(w, dtype=np.float32) - x0) / max(1.0, x1 - x0))[None, :]
    if fill == "gradient":
        g = 1 + rng.uniform(-0.35, 0.35) * (yy - 0.5) + rng.uniform(-0.15, 0.15) * (xx - 0.5)
    else:
        a = rng.uniform(0.2, 0.8)
        band = np.exp(-((yy * a + xx * (1 - a) * 0.3 - rng.uniform(0.2, 0.8)) ** 2) / 0.03)
        g = 0.72 + 0.55 * band + 0.1 * (1 - yy)
    return np.clip(shade(ink, np.broadcast_to(g, (h, w)).astype(np.float32)), 0, 1)


def glyph_effect(rng: np.random.Generator, img: np.ndarray, alpha: np.ndarray, effect: str, ink: np.ndarray,
                 unit: float) -> tuple[dict, np.ndarray | None]:
    """Draw what lies under the ink: shadow, outline, raised edge or an extruded side.

    Returns the effect's metadata and, for effects that make the digit itself bigger (an outline, an
    extruded side), the dilation kernel that grows a glyph's ink to what a viewer sees as the digit.
    A drop shadow or an emboss highlight is not part of the digit and does not widen its box.
    """
    ang = rng.uniform(0, 2 * np.pi) if rng.random() < 0.3 else rng.uniform(0.3, 1.2)  # light mostly from top left
    dx, dy = np.cos(ang), np.sin(ang)
    if effect == "shadow":
        d = unit * rng.uniform(0.03, 0.12)
        sh = cv2.GaussianBlur(shift(alpha, d * dx, d * dy), (0, 0), max(0.6, unit * rng.uniform(0.01, 0.05)))
        multiply(img, 1 - rng.uniform(0.3, 0.7) * sh)
        return {"offset": round(d / unit, 3)}, None
    if effect == "outline":
        r = max(1, int(round(unit * rng.uniform(0.03, 0.08))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        colour = np.float32(0.05) if luminance(ink) > 0.5 else np.float32(0.95)
        blend(img, cv2.dilate(alpha, kernel), colour)
        return {"width": round(r / unit, 3)}, kernel
    if effect == "emboss":
        d = max(1.0, unit * rng.uniform(0.02, 0.05))
        blend(img, shift(alpha, d * dx, d * dy), ink * 0.35)
        blend(img, shift(alpha, -d * dx * 0.6, -d * dy * 0.6), np.clip(ink * 1.3 + 0.25, 0, 1))
        return {"depth": round(d / unit, 3)}, None
    if effect == "extrude":
        depth = max(2, int(unit * rng.uniform(0.05, 0.12)))
        kernel = np.zeros((2 * depth + 1, 2 * depth + 1), np.uint8)
        cv2.line(kernel, (depth, depth), (depth - int(round(depth * dx)), depth - int(round(depth * dy))), 1, 1)
        blend(img, cv2.dilate(alpha, kernel), ink * 0.45)
        return {"depth": round(depth / unit, 3)}, kernel
    return {}, None


def wear(rng: np.random.Generator, alpha: np.ndarray, unit: float) -> np.ndarray:
    """Peeled or faded paint: ink coverage drops in blotches."""
    h, w = alpha.shape
    blotch = fbm(rng, h, w, unit * rng.uniform(0.1, 0.3), 2)
    keep = np.clip(1.2 - rng.uniform(0.3, 0.7) * np.clip(blotch - 0.2, 0, None) * 3, 0.35, 1)
    return alpha * keep
