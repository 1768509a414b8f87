"""Procedural wall surfaces (brick, wood, plaster, stucco, siding, metal, stone, ...).

Real house numbers sit on textured, unevenly lit surfaces; a detector trained on flat backgrounds
fires on every brick edge. Every texture is built from a few whole-array numpy/OpenCV operations
(resized random grids, index arithmetic, a distance transform), never per-pixel Python, so one
costs well under a millisecond at HW2 sizes. `unit` is the digit height in pixels, so bricks, planks
and tiles come out at a plausible scale relative to the number.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from training.synth.pixels import blend, expand, shade

Texture = Callable[[np.random.Generator, int, int, np.ndarray, float], np.ndarray]


_BANK_SIZE = 1024


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """One fixed block of N(0,1) noise per process: per-pixel grain is a random crop of it, because
    drawing fresh normals for every pixel of every image costs more than the rest of a texture."""
    return np.random.default_rng(20240611).standard_normal((_BANK_SIZE, _BANK_SIZE), dtype=np.float32)


def white_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Unit-variance per-pixel noise (a random crop of the bank, randomly flipped)."""
    bank = _noise_bank()
    if h > _BANK_SIZE or w > _BANK_SIZE:
        bank = np.tile(bank, (h // _BANK_SIZE + 1, w // _BANK_SIZE + 1))
    oy, ox = int(rng.integers(0, bank.shape[0] - h + 1)), int(rng.integers(0, bank.shape[1] - w + 1))
    out = bank[oy:oy + h, ox:ox + w]
    if rng.random() < 0.5:
        out = out[::-1]
    return out[:, ::-1] if rng.random() < 0.5 else out


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with features about `cell` pixels across."""
    cell = max(cell, 1.0)
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        out += amp * smooth_noise(rng, h, w, cell)
        total += amp
        amp *= 0.5
        cell /= 2.2
    return out / total


_shade = shade


def _grain(rng: np.random.Generator, h: int, w: int, amount: float) -> np.ndarray:
    return white_noise(rng, h, w) * np.float32(amount)


def plaster(rng, h, w, colour, unit):
    f = 1 + 0.07 * fbm(rng, h, w, unit * rng.uniform(1.0, 3.0)) + _grain(rng, h, w, 0.015)
    if rng.random() < 0.4:  # stains and damp patches
        stain = np.clip(smooth_noise(rng, h, w, unit * 1.5) - 1.0, 0, None)
        f -= 0.25 * stain
    return _shade(colour, f)


def stucco(rng, h, w, colour, unit):
    n = fbm(rng, h, w, max(unit * rng.uniform(0.06, 0.16), 1.5), octaves=2)
    relief = n - np.roll(n, (1, 1), axis=(0, 1))  # lit from the top left
    f = 1 + rng.uniform(0.25, 0.6) * relief + 0.05 * fbm(rng, h, w, unit * 2)
    return _shade(colour, f)


def brick(rng, h, w, colour, unit):
    bh = unit * rng.uniform(0.3, 0.7)
    bw = bh * rng.uniform(2.0, 3.3)
    mortar = max(1.0, bh * rng.uniform(0.08, 0.2))
    py, px = bh + mortar, bw + mortar
    y = np.arange(h, dtype=np.float32)[:, None] + rng.uniform(0, py)
    x = np.arange(w, dtype=np.float32)[None, :] + rng.uniform(0, px)
    row = np.floor(y / py).astype(np.int32)
    xs = x + (row % 2) * px / 2
    col = np.floor(xs / px).astype(np.int32)
    in_mortar = ((y % py) < mortar) | ((xs % px) < mortar)
    lut = rng.normal(0, rng.uniform(0.05, 0.14), (64, 64)).astype(np.float32)
    f = 1 + lut[row % 64, col % 64] + 0.06 * fbm(rng, h, w, max(bh * 0.3, 1.5), 2) + _grain(rng, h, w, 0.02)
    img = _shade(colour, f)
    mortar_colour = np.float32(rng.choice([0.8, 0.55, 0.3])) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    blend(img, in_mortar.astype(np.float32), _shade(mortar_colour, 1 + _grain(rng, h, w, 0.03)))
    return img


def wood(rng, h, w, colour, unit):
    vertical = rng.random() < 0.5
    H, W = (w, h) if vertical else (h, w)  # build horizontal planks, transpose for vertical
    plank = unit * rng.uniform(0.6, 1.8)
    period = max(unit * rng.uniform(0.05, 0.14), 2.0)
    y = np.arange(H, dtype=np.float32)[:, None] + rng.uniform(0, plank)
    # grain lines run along the plank: the warp varies slowly along x, a little faster across
    coarse = rng.standard_normal((max(2, int(H / (unit * 0.4))), max(2, int(W / (unit * 3))))).astype(np.float32)
    warp = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC) * period * rng.uniform(0.8, 2.0)
    streaks = cv2.resize(rng.standard_normal((H, max(2, W // 25))).astype(np.float32), (W, H))
    grain = np.sin((y + warp) * np.float32(2 * np.pi / period))
    lut = rng.normal(0, 0.06, 256).astype(np.float32)
    f = 1 + 0.08 * grain + 0.04 * streaks + lut[(y // plank).astype(np.int32) % 256]
    seam = (y % plank) < max(1.0, unit * 0.04)
    f = np.where(seam, f * 0.55, f)
    img = _shade(colour, f.astype(np.float32))
    return np.ascontiguousarray(img.transpose(1, 0, 2)) if vertical else img


def siding(rng, h, w, colour, unit):
    board = unit * rng.uniform(0.5, 1.3)
    y = (np.arange(h, dtype=np.float32) + rng.uniform(0, board)) % board / board
    profile = 0.9 + 0.18 * y  # each board leans out at its lower edge and catches more light
    profile = np.where(y > 0.93, 0.6, profile)  # shadow line under the lap
    f = np.broadcast_to(profile[:, None], (h, w)) + 0.03 * fbm(rng, h, w, unit, 2) + _grain(rng, h, w, 0.01)
    return _shade(colour, f.astype(np.float32))


def metal(rng, h, w, colour, unit):
    streaks = cv2.resize(rng.standard_normal((h, max(2, w // 40))).astype(np.float32), (w, h))
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    a = rng.uniform(0, np.pi)
    band = np.exp(-((x * np.cos(a) + y * np.sin(a) - rng.uniform(-0.8, 0.8)) ** 2) / 0.08)
    f = 0.92 + 0.05 * streaks + rng.uniform(0.1, 0.3) * band + _grain(rng, h, w, 0.01)
    return _shade(colour, f.astype(np.float32))


def concrete(rng, h, w, colour, unit):
    f = 1 + 0.06 * fbm(rng, h, w, unit * 2) + _grain(rng, h, w, 0.04)
    pits = (white_noise(rng, h, w) > rng.uniform(1.9, 2.6)).astype(np.float32)  # ~0.5-3% of pixels
    f -= 0.3 * cv2.GaussianBlur(pits, (3, 3), 0.7) * 2
    return _shade(colour, f)


def gradient(rng, h, w, colour, unit):
    a = rng.uniform(0, 2 * np.pi)
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    t = (x * np.cos(a) + y * np.sin(a)) * 0.5 + 0.5
    other = np.clip(colour * rng.uniform(0.55, 1.35) * rng.uniform(0.93, 1.07, 3), 0, 1).astype(np.float32)
    img = _shade(colour, np.ones((h, w), np.float32))
    blend(img, np.broadcast_to(t, (h, w)).astype(np.float32), other)
    return img * expand(1 + _grain(rng, h, w, 0.01))


def noise(rng, h, w, colour, unit):
    """Grimy, weathered paint: mostly brightness variation at several scales, a little colour."""
    lum = 1 + rng.uniform(0.08, 0.2) * fbm(rng, h, w, unit * rng.uniform(0.2, 1.5), 4) + _grain(rng, h, w, 0.02)
    return cv2.merge([(lum + 0.03 * smooth_noise(rng, h, w, unit)) * colour[i] for i in range(3)])


def tiles(rng, h, w, colour, unit):
    size = unit * rng.uniform(0.6, 1.6)
    grout = max(1.0, size * rng.uniform(0.04, 0.1))
    y = np.arange(h, dtype=np.float32)[:, None] + rng.uniform(0, size)
    x = np.arange(w, dtype=np.float32)[None, :] + rng.uniform(0, size)
    lut = rng.normal(0, 0.05, (32, 32)).astype(np.float32)
    f = 1 + lut[(y // size).astype(np.int32) % 32, (x // size).astype(np.int32) % 32]
    gloss = 0.12 * np.exp(-(((y % size) / size - 0.3) ** 2 + ((x % size) / size - 0.3) ** 2) / 0.05)
    f = f + gloss + _grain(rng, h, w, 0.01)
    in_grout = ((y % size) < grout) | ((x % size) < grout)
    img = _shade(colour, f.astype(np.float32))
    blend(img, in_grout.astype(np.float32), np.full(3, rng.choice([0.85, 0.5, 0.25]), np.float32))
    return img


def stone(rng, h, w, colour, unit):
    """Irregular stones: nearest-seed regions (Voronoi) from one distance transform."""
    size = unit * rng.uniform(0.5, 1.2)
    n = max(4, int(h * w / size ** 2))
    seeds = np.full((h, w), 255, np.uint8)
    seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_CCOMP)
    edges = (labels != np.roll(labels, 1, axis=0)) | (labels != np.roll(labels, 1, axis=1))
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
    lut = rng.normal(0, 0.12, n + 2).astype(np.float32)
    f = 1 + lut[labels % (n + 2)] + 0.05 * fbm(rng, h, w, size * 0.3, 2) + _grain(rng, h, w, 0.02)
    f = np.where(edges, 0.45, f)
    return _shade(colour, f.astype(np.float32))


def panel(rng, h, w, colour, unit):
    """A painted door or panel: flat paint with bevelled inset rectangles."""
    img = np.ones((h, w), np.float32) + _grain(rng, h, w, 0.008) + 0.03 * fbm(rng, h, w, unit * 3, 2)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.uniform(0.5, 3) * unit), y0 + int(rng.uniform(0.5, 3) * unit)
        t = max(1, int(unit * 0.05))
        cv2.rectangle(img, (x0, y0), (x1, y1), 1.15, t)
        cv2.rectangle(img, (x0 + t, y0 + t), (x1 + t, y1 + t), 0.75, t)
    return _shade(colour, img)


def foliage(rng, h, w, colour, unit):
    green = np.array([rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.2)], np.float32)
    colour = np.asarray(colour, np.float32)
    leaves = fbm(rng, h, w, unit * rng.uniform(0.1, 0.3), 3)
    f = np.clip(0.8 + 0.8 * leaves, 0.15, 1.6)
    mix = 0.6 + 0.4 * rng.random()
    return _shade(green * mix + colour * (1 - mix), f.astype(np.float32))


TEXTURES: dict[str, Texture] = {
    "plaster": plaster, "stucco": stucco, "brick": brick, "wood": wood, "siding": siding, "metal": metal,
    "concrete": concrete, "gradient": gradient, "noise": noise, "tiles": tiles, "stone": stone,
    "panel": panel, "foliage": foliage,
}


def make_texture(family: str, rng: np.random.Generator, h: int, w: int, colour: np.ndarray,
                 unit: float) -> np.ndarray:
    """An HxWx3 float32 surface in [0, 1] of the given family, tinted to `colour`."""
    try:
        fn = TEXTURES[family]
    except KeyError:
        raise KeyError(f"unknown background family {family!r}; known: {sorted(TEXTURES)}") from None
    out = fn(rng, h, w, np.asarray(colour, np.float32), max(float(unit), 4.0))
    return np.clip(out, 0, 1).astype(np.float32, copy=False)
