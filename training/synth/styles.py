"""Style families (typefaces, wall textures, colour schemes, plaques, glyph effects) and their
deterministic split into a 'train' share and a held-out share.

Why a split: "does the detector generalise to styles it never saw?" is only answerable if some
typefaces, textures, colour schemes and plaque shapes never appear in training. Each family is split
about 75/25. The fixed families below list their held-out members by name; typefaces (which depend
on the fonts installed) are held out by a stable hash of their name, sha256("typeface:" + name) % 4
== 0, which holds out some DejaVu, Liberation, FreeFont, STIX, Computer Modern and Hershey faces.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from training.synth.fonts import WEIGHT_LEVELS, Typeface, all_typefaces

StyleShare = Literal["train", "heldout", "all"]
SHARES: tuple[str, ...] = ("train", "heldout", "all")

# name -> sampling weight; the held-out sets are the generalisation test's unseen styles
BACKGROUNDS = {"plaster": 1.4, "stucco": 1.0, "brick": 1.3, "wood": 1.0, "siding": 0.9, "metal": 0.7,
               "concrete": 1.0, "gradient": 0.8, "noise": 0.6, "tiles": 0.6, "stone": 0.7, "panel": 0.8,
               "foliage": 0.4}
HELDOUT_BACKGROUNDS = frozenset({"stucco", "tiles", "stone"})
COLOUR_SCHEMES = {"dark_on_light": 3.0, "light_on_dark": 1.6, "brass": 1.2, "silver": 0.6, "low_contrast": 0.8,
                  "colour_on_light": 0.7, "white_on_enamel": 0.8, "tone_on_tone": 0.6, "random": 0.5}
HELDOUT_COLOUR_SCHEMES = frozenset({"silver", "tone_on_tone"})
PLAQUES = {"none": 5.0, "rect": 1.2, "rounded": 1.2, "oval": 0.5, "bordered": 0.9, "per_digit": 0.6, "arch": 0.4}
HELDOUT_PLAQUES = frozenset({"oval", "arch"})
GLYPH_EFFECTS = {"flat": 4.0, "shadow": 1.5, "outline": 0.7, "emboss": 0.8, "extrude": 0.6}
HELDOUT_GLYPH_EFFECTS = frozenset({"emboss"})
GROWING_EFFECTS = frozenset({"outline", "extrude"})  # effects that make the digit itself bigger
TYPEFACE_GROUP_WEIGHTS = {"dejavu": 0.24, "liberation": 0.2, "freefont": 0.14, "stix": 0.06,
                          "computer-modern": 0.06, "hershey": 0.2}
OTHER_GROUP_WEIGHT = 0.1

FAMILIES = {"background": (BACKGROUNDS, HELDOUT_BACKGROUNDS),
            "colour_scheme": (COLOUR_SCHEMES, HELDOUT_COLOUR_SCHEMES),
            "plaque": (PLAQUES, HELDOUT_PLAQUES),
            "glyph_effect": (GLYPH_EFFECTS, HELDOUT_GLYPH_EFFECTS)}


def check_share(styles: str) -> StyleShare:
    if styles not in SHARES:
        raise ValueError(f"styles must be one of {SHARES}, got {styles!r}")
    return styles  # type: ignore[return-value]


def typeface_share(name: str) -> str:
    digest = int(hashlib.sha256(f"typeface:{name}".encode()).hexdigest(), 16)
    return "heldout" if digest % 4 == 0 else "train"


def share_of(kind: str, name: str) -> str:
    """'train' or 'heldout' for a member of a style family ('typeface', 'background', ...)."""
    if kind == "typeface":
        return typeface_share(name)
    options, heldout = FAMILIES[kind]
    if name not in options:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(options)}")
    return "heldout" if name in heldout else "train"


def _in_share(kind: str, name: str, share: StyleShare) -> bool:
    return share == "all" or share_of(kind, name) == share


@lru_cache(maxsize=None)
def family_options(kind: str, share: StyleShare) -> tuple[tuple[str, ...], np.ndarray]:
    """Members of a family in a share, with normalised sampling weights."""
    options, _ = FAMILIES[kind]
    names = tuple(n for n in options if _in_share(kind, n, share))
    weights = np.array([options[n] for n in names], dtype=np.float64)
    return names, weights / weights.sum()


@lru_cache(maxsize=None)
def typefaces(share: StyleShare) -> tuple[tuple[Typeface, ...], np.ndarray]:
    """Typefaces in a share; groups are weighted (not faces) so big font families do not dominate."""
    faces = tuple(f for f in all_typefaces() if _in_share("typeface", f.name, share))
    if not faces:
        raise RuntimeError(f"no typeface in the {share!r} style share")
    group_sizes: dict[str, int] = {}
    for f in faces:
        group_sizes[f.group] = group_sizes.get(f.group, 0) + 1
    weights = np.array([TYPEFACE_GROUP_WEIGHTS.get(f.group, OTHER_GROUP_WEIGHT) / group_sizes[f.group]
                        for f in faces])
    return faces, weights / weights.sum()


@dataclass(frozen=True)
class Style:
    """Everything about an image's look that belongs to a style family, plus per-image glyph shape knobs."""

    typeface: str
    typeface_group: str
    background: str
    background2: str  # second surface (door frame, window, neighbouring wall) when the crop shows an edge
    colour_scheme: str
    plaque: str
    glyph_effect: str
    fill: str  # flat | gradient | metallic | worn
    weight: int  # stroke weight level (fonts.WEIGHT_LEVELS)
    shear: float  # synthetic italic slant (x shift per unit height)

    def as_meta(self) -> dict:
        return asdict(self)


def _pick(rng: np.random.Generator, kind: str, share: StyleShare) -> str:
    names, p = family_options(kind, share)
    return names[int(rng.choice(len(names), p=p))]


def sample_style(rng: np.random.Generator, share: StyleShare = "all") -> Style:
    share = check_share(share)
    faces, p = typefaces(share)
    face = faces[int(rng.choice(len(faces), p=p))]
    scheme = _pick(rng, "colour_scheme", share)
    if scheme in ("brass", "silver"):
        fill = "metallic"
    else:
        fill = str(rng.choice(["flat", "gradient", "worn"], p=[0.65, 0.2, 0.15]))
    weight = int(rng.choice(WEIGHT_LEVELS, p=[0.12, 0.4, 0.25, 0.15, 0.08]))
    slant = rng.random()  # synthetic italics: mostly forward, rarely backward
    shear = float(rng.normal(0.13, 0.06)) if slant < 0.14 else float(rng.normal(-0.08, 0.04)) if slant < 0.17 else 0.0
    return Style(typeface=face.name, typeface_group=face.group,
                 background=_pick(rng, "background", share), background2=_pick(rng, "background", share),
                 colour_scheme=scheme, plaque=_pick(rng, "plaque", share),
                 glyph_effect=_pick(rng, "glyph_effect", share), fill=fill, weight=weight,
                 shear=float(np.clip(shear, -0.3, 0.3)))


def heldout_members() -> dict[str, list[str]]:
    """For the metadata and the tests: which members of each family are held out."""
    out = {kind: sorted(heldout) for kind, (_, heldout) in FAMILIES.items()}
    out["typeface"] = sorted(f.name for f in all_typefaces() if typeface_share(f.name) == "heldout")
    return out
