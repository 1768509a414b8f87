"""The camera: how the flat wall is seen (perspective), where each digit's ink lands (its box),
and what the street-view pipeline does to the pixels (light, resolution, blur, colour, noise, JPEG).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from training.synth.backgrounds import white_noise
from training.synth.pixels import expand, scale_channels

RENDER_TARGET_H = 96  # canvas rows aimed at: crops smaller than this are rendered larger, then downsampled
MAX_RENDER_SCALE = 4.0


@dataclass
class Scene:
    """Sizes shared by every stage of one render."""

    width: int
    height: int
    scale: float
    cw: int  # canvas width/height (output size x scale)
    ch: int
    margin: int  # plane = canvas + margin on every side (room for the perspective warp)

    @classmethod
    def for_size(cls, width: int, height: int) -> Scene:
        s = float(np.clip(RENDER_TARGET_H / height, 1.0, MAX_RENDER_SCALE))
        cw, ch = max(1, round(width * s)), max(1, round(height * s))
        return cls(width, height, s, cw, ch, int(np.ceil(0.1 * max(cw, ch))) + 2)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.ch + 2 * self.margin, self.cw + 2 * self.margin


def sample_warp(rng: np.random.Generator, scene: Scene, keep_inside: tuple[float, float, float, float]
                ) -> tuple[np.ndarray, dict]:
    """Plane -> canvas homography: a wall seen at an angle (yaw, pitch) and a tilted camera (roll)."""
    m = scene.margin
    x0, y0, x1, y1 = keep_inside  # canvas coords of the number
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    yaw = np.clip(rng.normal(0, 16), -40, 40)
    pitch = np.clip(rng.normal(0, 9), -28, 28)
    roll = rng.normal(0, 3.5) if rng.random() < 0.85 else rng.normal(0, 9)
    f = np.hypot(scene.cw, scene.ch) * rng.uniform(0.8, 2.0)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    for shrink in (1.0, 0.5, 0.25, 0.0):
        a, b, c = np.radians([yaw * shrink, pitch * shrink, roll * shrink])
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
        k = np.diag([f, f, 1.0])
        rot = k @ rz @ rx @ ry @ np.linalg.inv(k)
        centre = rot @ np.array([0.0, 0.0, 1.0])  # a rotated camera also moves the number: put it back
        rot = np.array([[1, 0, -centre[0] / centre[2]], [0, 1, -centre[1] / centre[2]], [0, 0, 1.0]]) @ rot
        rot /= rot[2, 2]
        jac = rot[:2, :2] - np.outer(rot[:2, 2], rot[2, :2])  # d(x', y')/d(x, y) at the number centre
        zoom = 1 / np.sqrt(abs(np.linalg.det(jac)))  # ... and magnifies it: keep its size (the figures' job)
        rot = np.diag([zoom, zoom, 1.0]) @ rot
        t_in = np.array([[1, 0, -cx - m], [0, 1, -cy - m], [0, 0, 1.0]])
        t_out = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
        g = t_out @ rot @ t_in
        pts = apply_homography(g, corners + m)
        if (pts.min(axis=0) >= 0.5).all() and pts[:, 0].max() <= scene.cw - 0.5 and pts[:, 1].max() <= scene.ch - 0.5:
            break
    return g, {"yaw": round(float(yaw * shrink), 2), "pitch": round(float(pitch * shrink), 2),
               "roll": round(float(roll * shrink), 2)}


def apply_homography(g: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ g.T
    return p[:, :2] / p[:, 2:3]


def measure_ink_box(g: np.ndarray, alpha: np.ndarray, ox: int, oy: int, scene: Scene,
                    grow: np.ndarray | None = None) -> tuple[np.ndarray | None, float]:
    """Output-pixel ink box (xyxy, clipped to visible ink) and the share of ink inside the image.

    `grow` is the dilation kernel of an effect that enlarges the digit itself (outline, extrusion).
    """
    if grow is not None:
        r = max(grow.shape) // 2
        alpha = cv2.dilate(cv2.copyMakeBorder(alpha, r, r, r, r, cv2.BORDER_CONSTANT, value=0), grow)
        ox, oy = ox - r, oy - r
    ys, xs = np.nonzero(alpha > 0.5)
    if len(xs) == 0:
        return None, 0.0
    pts = apply_homography(g, np.c_[xs + ox, ys + oy].astype(np.float64))
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < scene.cw - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < scene.ch - 0.5)
    share = float(inside.mean())
    if not inside.any():
        return None, 0.0
    p = pts[inside]
    sx, sy = scene.cw / scene.width, scene.ch / scene.height
    # a canvas pixel centred at c spans edge coords [c, c+1]; output edge coords are canvas edges / scale
    box = np.array([p[:, 0].min() / sx, p[:, 1].min() / sy, (p[:, 0].max() + 1) / sx, (p[:, 1].max() + 1) / sy])
    box = np.clip(box, 0, [scene.width, scene.height, scene.width, scene.height])
    return box.astype(np.float32), share


def lighting(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray | None, list[str]]:
    """One multiplicative light map: a gradient across the wall, a cast shadow, a vignette."""
    factor = np.ones((h, w), np.float32)
    used = []
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        factor *= 1 + rng.uniform(0.1, 0.45) * (xs * np.cos(a) + ys * np.sin(a)) / 2
        used.append("gradient")
    if rng.random() < 0.28:
        a = rng.uniform(0, 2 * np.pi)
        d = xs * np.cos(a) + ys * np.sin(a) - rng.uniform(-0.8, 0.8)
        soft = rng.uniform(0.02, 0.25)
        factor *= 1 - rng.uniform(0.25, 0.6) / (1 + np.exp(-d / soft))
        used.append("shadow")
    if rng.random() < 0.25:
        factor *= 1 - rng.uniform(0.1, 0.35) * (xs ** 2 + ys ** 2) / 2
        used.append("vignette")
    return (factor if used else None), used


def degrade(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, dict]:
    """Camera and street-view processing at output resolution: resampling, blur, colour, noise, JPEG."""
    h, w = img.shape[:2]
    meta: dict[str, Any] = {}
    # Street View crops are mostly small captures enlarged: low resolution is the rule, not the exception
    max_f = min(4.0, h / 11)  # never below ~11 rows: tiny crops are already as coarse as a digit can be
    if rng.random() < 0.55 and max_f > 1.3:
        f = rng.uniform(1.3, max_f)
        small = cv2.resize(img, (max(2, round(w / f)), max(2, round(h / f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC)
        meta["low_res"] = round(f, 2)
    kind = rng.random()  # one blur at most: stacked on low resolution they erase small digits
    if kind < (0.3 if "low_res" in meta else 0.5):
        s = rng.uniform(0.3, float(np.clip(h / 25, 0.5, 1.6)))
        img = cv2.GaussianBlur(img, (0, 0), s)
        meta["blur"] = round(s, 2)
    elif kind < 0.58 and h >= 24:  # defocus: a disk, not a Gaussian
        r = int(rng.integers(1, 3 if h < 60 else 4))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)).astype(np.float32)
        img = cv2.filter2D(img, -1, disk / disk.sum())
        meta["defocus"] = r
    elif kind > 0.93:
        n = int(rng.integers(2, 5)) if h >= 30 else 2
        k = np.zeros((n, n), np.float32)
        if rng.random() < 0.5:
            k[n // 2, :] = 1
        else:
            np.fill_diagonal(k, 1)
        img = cv2.filter2D(img, -1, k / k.sum())
        meta["motion_blur"] = n
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    sat = rng.uniform(0.45, 1.15)
    img = img * np.float32(sat) + expand(grey * np.float32(1 - sat))
    mean = float(grey.mean())
    contrast = rng.uniform(0.65, 1.1)
    img = (img - mean) * contrast + mean + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.2:  # haze and glare: the number fades towards a flat grey or sky
        veil = np.float32(rng.uniform(0.4, 0.95))
        a = np.float32(rng.uniform(0.1, 0.4))
        img = img * (1 - a) + veil * a
        meta["haze"] = round(float(a), 2)
    cast = 0.15 if rng.random() < 0.3 else 0.08  # white balance, sometimes a strong colour cast
    img = scale_channels(img, rng.uniform(1 - cast, 1 + cast, 3))
    img = np.clip(img, 0, 1) ** np.float32(rng.uniform(0.75, 1.35))
    sigma = rng.uniform(0.003, 0.035)
    if rng.random() < 0.5:
        noise = white_noise(rng, h, w * 3).reshape(h, w, 3)
    else:
        noise = expand(np.ascontiguousarray(white_noise(rng, h, w)))  # luminance-only noise
    img = img + noise * np.float32(sigma)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    meta.update(saturation=round(sat, 2), contrast_gain=round(contrast, 2), noise=round(sigma, 4))
    if rng.random() < 0.65:
        q = int(rng.integers(20, 93))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        meta["jpeg_quality"] = q
    return out, meta
