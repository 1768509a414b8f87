"""Street clutter around a house number: the objects real detectors mistake for digits.

On real street-view crops the false digits come from what stands beside the number: door and window
frames, poles and pipes, railings, lamps, letterboxes, signs with letters, hooks and brackets, hard
shadows. Each object here is drawn into the flat plane (before the perspective warp, so it is seen at
the same angle as the wall) and never over the number's keep-clear region: it stays unlabelled, which
teaches the detector that a vertical bar or a hook beside a number is not a 1 or a 7.

`unit` is the digit height in plane pixels; every size scales with it.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from training.synth.colours import luminance, wall_colour
from training.synth.pixels import blend, multiply, shade

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 in plane pixels
_SUB = 4  # cv2 fractional bits: sub-pixel edges
_P = 1 << _SUB


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _P)), int(round(y * _P))


def _off(layer: np.ndarray, clear: Region) -> np.ndarray:
    """The layer as blend coverage, with the number's region cut out (a stroke's width can reach into it)."""
    x0, y0, x1, y1 = (int(v) for v in (np.floor(clear[0]), np.floor(clear[1]), np.ceil(clear[2]), np.ceil(clear[3])))
    out = layer.astype(np.float32) / 255
    out[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0
    return out


def _object_colour(rng: np.random.Generator, under: float) -> np.ndarray:
    """Dark, light or metal: mostly a clear step from the wall, as paint, metal and glass are."""
    kind = rng.random()
    if kind < 0.4:
        v = rng.uniform(0.03, 0.25) if under > 0.35 else rng.uniform(0.55, 0.95)
        return np.clip(np.float32(v) * np.float32(rng.uniform(0.85, 1.15, 3)), 0, 1).astype(np.float32)
    if kind < 0.7:
        grey = np.float32(rng.uniform(0.35, 0.75))
        return np.clip(grey * np.float32(rng.uniform(0.9, 1.1, 3)), 0, 1).astype(np.float32)
    return wall_colour(rng)


def _room(shape: tuple[int, int], clear: Region, side: str) -> float:
    """Free plane pixels between the clear region and the plane's edge on `side`."""
    h, w = shape
    x0, y0, x1, y1 = clear
    return {"left": x0, "right": w - x1, "top": y0, "bottom": h - y1}[side]


def _free_sides(shape: tuple[int, int], clear: Region, need: float) -> list[str]:
    return [side for side in ("left", "right", "top", "bottom") if _room(shape, clear, side) > need]


def _pick_side(rng: np.random.Generator, shape: tuple[int, int], clear: Region, need: float) -> str | None:
    """A side of the number with more than `need` pixels of room, or None."""
    sides = _free_sides(shape, clear, need)
    return sides[int(rng.integers(len(sides)))] if sides else None


def _spot_beside(rng: np.random.Generator, shape: tuple[int, int], clear: Region, side: str, size: float
                 ) -> tuple[float, float, float, float]:
    """A band `size` wide on `side` and a centre in it level with the number: (band start, end, cx, cy)."""
    a, b = _band(rng, shape, clear, side, size)
    if side in ("left", "right"):
        return a, b, (a + b) / 2, rng.uniform(clear[1], clear[3])
    return a, b, rng.uniform(clear[0], clear[2]), (a + b) / 2


def _band(rng: np.random.Generator, shape: tuple[int, int], clear: Region, side: str, size: float
          ) -> tuple[float, float]:
    """Start of a band `size` wide on `side` of the clear region, inside the plane."""
    h, w = shape
    x0, y0, x1, y1 = clear
    lo, hi = {"left": (0.0, x0 - size), "right": (x1, w - size),
              "top": (0.0, y0 - size), "bottom": (y1, h - size)}[side]
    start = rng.uniform(lo, max(lo, hi))
    return start, start + size


def _cylinder(mask: np.ndarray, colour: np.ndarray, vertical: bool) -> np.ndarray:
    """A colour image shaded across the bar's width, so a pole or a pipe looks round."""
    h, w = mask.shape
    n = w if vertical else h
    t = np.linspace(-1, 1, max(n, 2), dtype=np.float32)
    profile = 0.65 + 0.45 * np.sqrt(np.clip(1 - t ** 2, 0, 1))
    shade_map = np.broadcast_to(profile[None, :] if vertical else profile[:, None], (h, w))
    return np.clip(shade(colour, np.ascontiguousarray(shade_map)), 0, 1)


def pole(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """A pole, pipe or downspout beside the number: the commonest false '1'."""
    sides = [s for s in _free_sides(img.shape[:2], clear, unit * 0.3) if s in ("left", "right")]
    if not sides:
        return False
    width = unit * rng.uniform(0.08, 0.6)
    x_a, x_b = _band(rng, img.shape[:2], clear, sides[int(rng.integers(len(sides)))], width)
    h = img.shape[0]
    top = 0.0 if rng.random() < 0.7 else rng.uniform(0, h * 0.5)
    bottom = float(h) if rng.random() < 0.7 else rng.uniform(h * 0.5, h)
    slant = rng.normal(0, 0.04) * (bottom - top)
    layer = np.zeros(img.shape[:2], np.uint8)
    pts = np.array([_pt(x_a, top), _pt(x_b, top), _pt(x_b + slant, bottom), _pt(x_a + slant, bottom)], np.int32)
    cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA, _SUB)
    under = luminance(img[int(h / 2), int(np.clip((x_a + x_b) / 2, 0, img.shape[1] - 1))])
    colour = _object_colour(rng, under)
    blend(img, _off(layer, clear), _cylinder(layer, colour, vertical=True))
    return True


def railing(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """Evenly spaced bars with a rail: a row of false '1's and '11's."""
    h, w = img.shape[:2]
    side = _pick_side(rng, (h, w), clear, unit * 0.8)
    if side is None:
        return False
    bar = max(1.0, unit * rng.uniform(0.04, 0.14))
    pitch = unit * rng.uniform(0.25, 0.8)
    layer = np.zeros((h, w), np.uint8)
    if side in ("left", "right"):
        a, b = _band(rng, (h, w), clear, side, min(unit * rng.uniform(0.8, 3.0), _room((h, w), clear, side)))
        xs, ys = np.arange(a, b, pitch), (0.0, float(h))
        rail_y = rng.uniform(0, h)
        cv2.line(layer, _pt(a, rail_y), _pt(b, rail_y), 255, max(1, int(bar * 1.5)), cv2.LINE_AA, _SUB)
    else:
        a, b = _band(rng, (h, w), clear, side, min(unit * rng.uniform(0.8, 2.0), _room((h, w), clear, side)))
        xs, ys = np.arange(rng.uniform(0, pitch), w, pitch), (a, b)
        rail_y = a if side == "bottom" else b
        cv2.line(layer, _pt(0, rail_y), _pt(w, rail_y), 255, max(1, int(bar * 1.5)), cv2.LINE_AA, _SUB)
    for x in xs:
        cv2.line(layer, _pt(x, ys[0]), _pt(x, ys[1]), 255, max(1, int(round(bar))), cv2.LINE_AA, _SUB)
    under = luminance(img[h // 2, w // 2])
    blend(img, _off(layer, clear), _object_colour(rng, under))
    return True


def frame(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """A window or door: a dark pane inside a frame whose straight sides pass beside the number."""
    h, w = img.shape[:2]
    side = _pick_side(rng, (h, w), clear, unit * 0.4)
    if side is None:
        return False
    x0, y0, x1, y1 = clear
    gap = unit * 0.2  # the frame's inner edge stops short of the number
    if side == "left":
        X0, X1 = -w, rng.uniform(0, x0 - gap)
    elif side == "right":
        X0, X1 = rng.uniform(x1 + gap, w), 2 * w
    elif side == "top":
        Y0, Y1 = -h, rng.uniform(0, y0 - gap)
    else:
        Y0, Y1 = rng.uniform(y1 + gap, h), 2 * h
    if side in ("left", "right"):
        Y0, Y1 = rng.uniform(-h, y0), rng.uniform(y1, 2 * h)
    else:
        X0, X1 = rng.uniform(-w, x0), rng.uniform(x1, 2 * w)
    t = max(1.0, unit * rng.uniform(0.06, 0.3))
    pane = np.zeros((h, w), np.uint8)
    cv2.rectangle(pane, _pt(X0 + t, Y0 + t), _pt(X1 - t, Y1 - t), 255, -1, cv2.LINE_AA, _SUB)
    glass = np.float32(rng.uniform(0.02, 0.3)) * np.float32(rng.uniform(0.8, 1.2, 3))
    blend(img, _off(pane, clear) * np.float32(rng.uniform(0.6, 1.0)), np.clip(glass, 0, 1))
    rim = np.zeros((h, w), np.uint8)
    cv2.rectangle(rim, _pt(X0 + t / 2, Y0 + t / 2), _pt(X1 - t / 2, Y1 - t / 2), 255, max(1, int(round(t))),
                  cv2.LINE_AA, _SUB)
    under = luminance(img[h // 2, w // 2])
    blend(img, _off(rim, clear), _object_colour(rng, under))
    return True


def lamp(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """A wall lamp beside the number: a bright glass on a dark bracket (reads as a '0' or a '9')."""
    h, w = img.shape[:2]
    sides = _free_sides((h, w), clear, unit * 0.7)
    if not sides:
        return False
    size = unit * rng.uniform(0.5, 1.4)
    side = sides[int(rng.integers(len(sides)))]
    a, b, cx, cy = _spot_beside(rng, (h, w), clear, side, min(size, _room((h, w), clear, side)))
    rx, ry = (b - a) / 2 * rng.uniform(0.5, 0.9), (b - a) / 2 * rng.uniform(0.7, 1.3)
    bracket = np.zeros((h, w), np.uint8)
    cv2.line(bracket, _pt(cx, cy), _pt(cx, cy + ry * rng.choice([-1.6, 1.6])), 255,
             max(1, int(unit * 0.08)), cv2.LINE_AA, _SUB)
    blend(img, _off(bracket, clear), np.float32(rng.uniform(0.05, 0.3)))
    glass = np.zeros((h, w), np.uint8)
    cv2.ellipse(glass, _pt(cx, cy), _pt(rx, ry), 0, 0, 360, 255, -1, cv2.LINE_AA, _SUB)
    glow = np.float32(rng.uniform(0.7, 1.0)) * np.float32(rng.uniform([0.95, 0.85, 0.6], 1.0))
    blend(img, _off(cv2.GaussianBlur(glass, (0, 0), max(0.5, unit * 0.03)), clear), glow)
    return True


def letterbox(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """A letterbox or meter box: a plain plate with a slot, the size of a plaque without digits."""
    h, w = img.shape[:2]
    side = _pick_side(rng, (h, w), clear, unit * 0.8)
    if side is None:
        return False
    bw = min(_room((h, w), clear, side), unit * rng.uniform(0.8, 2.5))
    a, b = _band(rng, (h, w), clear, side, bw)
    if side in ("left", "right"):
        X0, X1 = a, b
        Y0 = rng.uniform(0, max(1.0, h - unit))
        Y1 = Y0 + unit * rng.uniform(0.6, 1.6)
    else:
        Y0, Y1 = a, b
        X0 = rng.uniform(clear[0] - unit, clear[2])
        X1 = X0 + unit * rng.uniform(1.0, 2.5)
    body = np.zeros((h, w), np.uint8)
    cv2.rectangle(body, _pt(X0, Y0), _pt(X1, Y1), 255, -1, cv2.LINE_AA, _SUB)
    under = luminance(img[h // 2, w // 2])
    blend(img, _off(body, clear), _object_colour(rng, under))
    slot = np.zeros((h, w), np.uint8)
    sy = Y0 + (Y1 - Y0) * rng.uniform(0.2, 0.45)
    cv2.line(slot, _pt(X0 + (X1 - X0) * 0.2, sy), _pt(X1 - (X1 - X0) * 0.2, sy), 255,
             max(1, int(unit * 0.06)), cv2.LINE_AA, _SUB)
    multiply(img, 1 - 0.7 * _off(slot, clear))
    return True


def hook(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """Brackets, hooks, hinges and cracks: strokes with a digit's size and weight but no digit's shape."""
    h, w = img.shape[:2]
    side = _pick_side(rng, (h, w), clear, unit * 0.5)
    if side is None:
        return False
    size = min(_room((h, w), clear, side), unit * rng.uniform(0.4, 1.1))
    _, _, cx, cy = _spot_beside(rng, (h, w), clear, side, size)
    s = size / 2
    t = max(1, int(unit * rng.uniform(0.06, 0.16)))
    layer = np.zeros((h, w), np.uint8)
    shape = int(rng.integers(4))
    if shape == 0:  # an L bracket
        pts = [(cx - s * 0.4, cy - s), (cx - s * 0.4, cy + s), (cx + s * 0.4, cy + s)]
    elif shape == 1:  # a hook: stem and a half-circle foot
        pts = [(cx, cy - s), (cx, cy + s * 0.3)]
        cv2.ellipse(layer, _pt(cx - s * 0.3, cy + s * 0.3), _pt(s * 0.3, s * 0.5), 0, 0, 180, 255, t,
                    cv2.LINE_AA, _SUB)
    elif shape == 2:  # a crack or a wire: a jagged polyline
        pts = [(cx + rng.normal(0, s * 0.3), cy - s + 2 * s * k / 4) for k in range(5)]
    else:  # a ring or a knob
        cv2.ellipse(layer, _pt(cx, cy), _pt(s * 0.45, s * 0.45), 0, 0, 360, 255, t, cv2.LINE_AA, _SUB)
        pts = []
    if pts:
        cv2.polylines(layer, [np.array([_pt(x, y) for x, y in pts], np.int32)], False, 255, t, cv2.LINE_AA, _SUB)
    under = luminance(img[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))])
    blend(img, _off(layer, clear), _object_colour(rng, under))
    return True


def hard_shadow(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float) -> bool:
    """The sharp shadow of an eave, a sign or a branch, which may cross the number (it is light, not ink)."""
    h, w = img.shape[:2]
    k = int(rng.integers(3, 7))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = max(h, w) * rng.uniform(0.3, 0.9)
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    pts = np.array([_pt(cx + r * np.cos(a) * rng.uniform(0.5, 1.0), cy + r * np.sin(a) * rng.uniform(0.5, 1.0))
                    for a in angles], np.int32)
    layer = np.zeros((h, w), np.uint8)
    cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA, _SUB)
    soft = cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), max(0.5, unit * rng.uniform(0.01, 0.08)))
    multiply(img, 1 - rng.uniform(0.25, 0.6) * soft)
    return True


CLUTTER: dict[str, tuple[float, Callable[..., bool]]] = {
    "pole": (1.0, pole), "railing": (0.6, railing), "frame": (0.9, frame), "lamp": (0.4, lamp),
    "letterbox": (0.4, letterbox), "hook": (0.8, hook), "hard_shadow": (0.5, hard_shadow),
}


def add_clutter(rng: np.random.Generator, img: np.ndarray, clear: Region, unit: float, count: int) -> list[str]:
    """Draw `count` clutter objects chosen by weight; returns the names of those that fitted."""
    names = list(CLUTTER)
    p = np.array([CLUTTER[n][0] for n in names])
    drawn = []
    for _ in range(count):
        name = names[int(rng.choice(len(names), p=p / p.sum()))]
        if CLUTTER[name][1](rng, img, clear, unit):
            drawn.append(name)
    return drawn
