"""Load any image a user may hand us as 8-bit RGB, or fail with a message that names the file.

HW2 images are PNGs, but uploads can be JPEG with EXIF rotation, grayscale, RGBA, palette or 16-bit.
Pillow opens lazily, so the pixel count is checked before decoding: a decompression bomb never allocates.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 40_000_000  # ~ 8000 x 5000; HW2 images are ~ 100 x 50
ImageSource = str | Path | bytes | Image.Image | np.ndarray


class ImageLoadError(ValueError):
    """The input is not a readable image, or is too large to process."""


def _describe(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; 16-bit and float images are rescaled to 8 bits, alpha goes on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if image.mode.startswith("I;16") and hi > 255:
            arr = arr / 257.0
        elif hi > 255 or lo < 0:
            arr = (arr - lo) / max(hi - lo, 1e-9) * 255.0
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(source: ImageSource, *, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Read `source` (path, bytes, PIL image or HxW[xC] uint8 array) as an RGB image with EXIF orientation applied."""
    label = _describe(source, name)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageLoadError(f"{label}: expected an HxW or HxWxC array, got shape {source.shape}")
        source = Image.fromarray(source if source.dtype != np.uint16 else source, None)
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, bytes):
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(f"{label}: no such file")
            image = Image.open(path)
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageLoadError(f"{label}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageLoadError(
                f"{label}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,}; resize it first"
            )
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{label}: not an image file Pillow can read") from err
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{label}: image is too large to decode safely ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"{label}: unreadable or truncated image ({err})") from err
