"""Colour schemes: which surface and ink colours go together on real house numbers.

All colours are float32 RGB in [0, 1]. Palettes are loosely taken from what street-view crops show:
pale rendered walls with dark digits, white digits on dark doors, brass on anything, enamel plaques.
"""
from __future__ import annotations

import colorsys

import numpy as np

LIGHT_SURFACES = [(0.93, 0.93, 0.91), (0.93, 0.89, 0.78), (0.86, 0.79, 0.66), (0.8, 0.8, 0.79),
                  (0.94, 0.9, 0.68), (0.76, 0.8, 0.84), (0.8, 0.85, 0.76), (0.9, 0.76, 0.66), (0.72, 0.7, 0.66)]
DARK_SURFACES = [(0.07, 0.07, 0.07), (0.12, 0.26, 0.16), (0.11, 0.15, 0.3), (0.27, 0.17, 0.11),
                 (0.42, 0.11, 0.1), (0.2, 0.2, 0.22), (0.1, 0.26, 0.3), (0.33, 0.3, 0.27)]
WALLS = LIGHT_SURFACES + [(0.62, 0.3, 0.22), (0.55, 0.36, 0.25), (0.5, 0.5, 0.48), (0.68, 0.6, 0.45),
                          (0.35, 0.3, 0.25), (0.45, 0.24, 0.17), (0.58, 0.55, 0.5)]
DARK_INKS = [(0.04, 0.04, 0.04), (0.16, 0.16, 0.17), (0.24, 0.15, 0.09), (0.08, 0.1, 0.24),
             (0.07, 0.2, 0.1), (0.36, 0.07, 0.06)]
LIGHT_INKS = [(0.97, 0.97, 0.96), (0.93, 0.9, 0.8), (0.82, 0.82, 0.82), (0.95, 0.9, 0.6)]
METALS = {"brass": [(0.78, 0.62, 0.27), (0.86, 0.71, 0.33), (0.56, 0.41, 0.2), (0.72, 0.43, 0.27)],
          "silver": [(0.78, 0.78, 0.78), (0.62, 0.64, 0.67), (0.86, 0.86, 0.84)]}
ENAMEL = [(0.1, 0.24, 0.58), (0.09, 0.38, 0.2), (0.58, 0.09, 0.09), (0.05, 0.05, 0.07), (0.1, 0.36, 0.5)]
COLOUR_INKS = [(0.76, 0.1, 0.08), (0.1, 0.2, 0.7), (0.1, 0.48, 0.2), (0.86, 0.42, 0.08), (0.45, 0.12, 0.4)]


def luminance(rgb: np.ndarray) -> float:
    rgb = np.asarray(rgb, dtype=np.float32)
    return float(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


def jitter(rng: np.random.Generator, rgb, amount: float = 0.06) -> np.ndarray:
    """Small hue/brightness variation around a palette colour, so palettes do not repeat exactly."""
    h, light, s = colorsys.rgb_to_hls(*[float(v) for v in rgb])
    h = (h + rng.normal(0, amount * 0.3)) % 1.0
    light = float(np.clip(light + rng.normal(0, amount), 0.02, 0.98))
    s = float(np.clip(s * rng.uniform(0.75, 1.2), 0, 1))
    return np.array(colorsys.hls_to_rgb(h, light, s), dtype=np.float32)


def _choice(rng: np.random.Generator, palette) -> tuple:
    return palette[int(rng.integers(len(palette)))]


def _random_colour(rng: np.random.Generator, lightness: float) -> np.ndarray:
    return np.array(colorsys.hls_to_rgb(rng.random(), lightness, rng.uniform(0.1, 0.8)), dtype=np.float32)


def with_luminance(rgb: np.ndarray, target: float) -> np.ndarray:
    """The same hue moved to a target luminance (used to enforce or limit contrast)."""
    h, _, s = colorsys.rgb_to_hls(*[float(v) for v in rgb])
    lo, hi = 0.0, 1.0
    for _ in range(18):  # HLS lightness is not luminance; bisect on lightness
        mid = (lo + hi) / 2
        if luminance(np.array(colorsys.hls_to_rgb(h, mid, s))) < target:
            lo = mid
        else:
            hi = mid
    return np.array(colorsys.hls_to_rgb(h, (lo + hi) / 2, s), dtype=np.float32)


def scheme_colours(rng: np.random.Generator, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """(surface, ink): the surface the digits sit on (plaque or wall) and the digit colour."""
    if scheme == "dark_on_light":
        return jitter(rng, _choice(rng, LIGHT_SURFACES)), jitter(rng, _choice(rng, DARK_INKS), 0.03)
    if scheme == "light_on_dark":
        return jitter(rng, _choice(rng, DARK_SURFACES)), jitter(rng, _choice(rng, LIGHT_INKS), 0.03)
    if scheme in METALS:
        surface = _choice(rng, [_choice(rng, DARK_SURFACES), _choice(rng, WALLS)])
        return jitter(rng, surface), jitter(rng, _choice(rng, METALS[scheme]), 0.03)
    if scheme == "low_contrast":
        surface = jitter(rng, _choice(rng, WALLS))
        delta = rng.uniform(0.09, 0.18) * (1 if luminance(surface) < 0.5 else -1)
        return surface, with_luminance(jitter(rng, surface, 0.02), luminance(surface) + delta)
    if scheme == "colour_on_light":
        return jitter(rng, _choice(rng, LIGHT_SURFACES)), jitter(rng, _choice(rng, COLOUR_INKS), 0.04)
    if scheme == "white_on_enamel":
        return jitter(rng, _choice(rng, ENAMEL), 0.04), jitter(rng, LIGHT_INKS[0], 0.02)
    if scheme == "tone_on_tone":
        surface = _random_colour(rng, rng.uniform(0.3, 0.7))
        delta = rng.uniform(0.22, 0.38) * (1 if luminance(surface) < 0.45 else -1)
        return surface, with_luminance(surface, float(np.clip(luminance(surface) + delta, 0.03, 0.97)))
    if scheme == "random":
        surface = _random_colour(rng, rng.uniform(0.1, 0.9))
        ink = _random_colour(rng, rng.uniform(0.1, 0.9))
        if abs(luminance(ink) - luminance(surface)) < 0.25:
            ink = with_luminance(ink, luminance(surface) + (0.35 if luminance(surface) < 0.5 else -0.35))
        return surface, ink
    raise KeyError(f"unknown colour scheme {scheme!r}")


def wall_colour(rng: np.random.Generator) -> np.ndarray:
    """A wall behind a plaque: its colour is free, the plaque carries the scheme."""
    return jitter(rng, _choice(rng, WALLS), 0.07)


def min_contrast(scheme: str) -> float:
    """Luminance difference the ink must keep from the surface it is drawn on (low contrast is a scheme)."""
    return 0.08 if scheme == "low_contrast" else 0.22
