"""Fast per-channel arithmetic on HxWx3 float32 images.

numpy broadcasting of an (H, W, 1) map or an RGB triple over an (H, W, 3) image runs an inner loop
of length 3 and is 20-50x slower than same-shape arithmetic; at a few dozen such operations per
image that alone would cap the generator far below its 200 images/s target. These helpers expand
maps with cv2.merge and apply per-channel constants as OpenCV scalars instead.
"""
from __future__ import annotations

import cv2
import numpy as np

Colour = np.ndarray  # float32 RGB triple in [0, 1]


def expand(a: np.ndarray) -> np.ndarray:
    """HxW -> HxWx3 (a copy in every channel)."""
    return cv2.merge([a, a, a])


def shade(colour: Colour, factor: np.ndarray) -> np.ndarray:
    """An HxWx3 image: the colour scaled pixel-wise by an HxW factor map."""
    c = np.asarray(colour, np.float32)
    return cv2.merge([factor * c[0], factor * c[1], factor * c[2]])


def scale_channels(img: np.ndarray, gains) -> np.ndarray:
    g = [float(v) for v in gains]
    return cv2.multiply(img, (g[0], g[1], g[2], 0.0))


def multiply(img: np.ndarray, factor: np.ndarray) -> None:
    """img *= factor (HxW), in place."""
    img *= expand(factor)


def blend(img: np.ndarray, alpha: np.ndarray, colour: Colour | np.ndarray, roi: tuple[int, int, int, int] | None = None
          ) -> None:
    """img = img*(1-alpha) + colour*alpha in place; colour is an RGB triple or an HxWx3 image.

    `roi` (x0, y0, x1, y1) limits the work to where alpha can be non-zero (glyphs cover a few % of the image).
    """
    if roi is not None:
        x0, y0, x1, y1 = roi
        if x1 <= x0 or y1 <= y0:
            return
        sub_colour = colour[y0:y1, x0:x1] if isinstance(colour, np.ndarray) and colour.ndim == 3 else colour
        blend(img[y0:y1, x0:x1], alpha[y0:y1, x0:x1], sub_colour)
        return
    a3 = expand(alpha)
    if isinstance(colour, np.ndarray) and colour.ndim == 3:
        img -= a3 * (img - colour)
    else:
        c = [float(v) for v in np.broadcast_to(np.asarray(colour, np.float32), (3,))]
        img -= a3 * cv2.subtract(img, (c[0], c[1], c[2], 0.0))


def nonzero_roi(a: np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    """Bounding (x0, y0, x1, y1) of a map's non-zero pixels, padded and clipped; empty -> zero-size."""
    x, y, w, h = cv2.boundingRect((a > 1e-3).astype(np.uint8))
    if w == 0:
        return 0, 0, 0, 0
    H, W = a.shape[:2]
    return max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
