"""Style families (typefaces, wall textures, colour schemes, plaques, glyph effects) and their
deterministic split into a 'train' share and a held-out share.

Why a split: "does the detector generalise to styles it never saw?" is only answerable if some
typefaces, textures, colour schemes and plaque shapes never appear in training. Each family is split
about 75/25. The fixed families below list their held-out members by name. Typefaces are held out by
whole font family (a Bold never trains while its Regular is held out), chosen per category by a stable hash
of the family name, so every category (sans, condensed, serif, stencil, script, Hershey, ...) has members in
both shares.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from typing import Literal

import numpy as np

from training.synth.fonts import HERSHEY_FACES, WEIGHT_LEVELS, Typeface, all_typefaces, manifest, typeface_by_name

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
# typeface categories, not faces, are weighted (so the many sans families do not drown the few stencils):
# real house numbers are mostly sans, condensed and serif, with some stencil, script and display type
TYPEFACE_GROUP_WEIGHTS = {"sans": 0.2, "condensed": 0.16, "serif": 0.13, "slab": 0.08, "rounded": 0.06,
                          "display": 0.07, "stencil": 0.07, "script": 0.05, "handwriting": 0.05, "mono": 0.05,
                          "hershey": 0.08}
HELDOUT_TYPEFACE_SHARE = 0.25  # of the families in each category

FAMILIES = {"background": (BACKGROUNDS, HELDOUT_BACKGROUNDS),
            "colour_scheme": (COLOUR_SCHEMES, HELDOUT_COLOUR_SCHEMES),
            "plaque": (PLAQUES, HELDOUT_PLAQUES),
            "glyph_effect": (GLYPH_EFFECTS, HELDOUT_GLYPH_EFFECTS)}


def check_share(styles: str) -> StyleShare:
    if styles not in SHARES:
        raise ValueError(f"styles must be one of {SHARES}, got {styles!r}")
    return styles  # type: ignore[return-value]


def _family_rank(family: str) -> int:
    return int(hashlib.sha256(f"typeface:{family}".encode()).hexdigest(), 16)


@lru_cache(maxsize=1)
def heldout_families() -> frozenset[str]:
    """Per category, the quarter of families with the smallest hash (at least one): decided from the library's
    list, not from which faces pass probing, so the split is the same on every machine."""
    by_group: dict[str, set[str]] = {"hershey": {f"Hershey-{name}" for name in HERSHEY_FACES}}
    for row in manifest():
        by_group.setdefault(row["category"], set()).add(row["family"])
    held: set[str] = set()
    for families in by_group.values():
        ranked = sorted(families, key=_family_rank)
        held.update(ranked[:max(1, round(len(ranked) * HELDOUT_TYPEFACE_SHARE))])
    return frozenset(held)


def typeface_share(name: str) -> str:
    return "heldout" if typeface_by_name(name).family in heldout_families() else "train"


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


@cache
def family_options(kind: str, share: StyleShare) -> tuple[tuple[str, ...], np.ndarray]:
    """Members of a family in a share, with normalised sampling weights."""
    options, _ = FAMILIES[kind]
    names = tuple(n for n in options if _in_share(kind, n, share))
    weights = np.array([options[n] for n in names], dtype=np.float64)
    return names, weights / weights.sum()


@cache
def typefaces(share: StyleShare) -> tuple[tuple[Typeface, ...], np.ndarray]:
    """Typefaces in a share, weighted by category (TYPEFACE_GROUP_WEIGHTS) and then evenly by family."""
    faces = tuple(f for f in all_typefaces() if _in_share("typeface", f.name, share))
    if not faces:
        raise RuntimeError(f"no typeface in the {share!r} style share")
    families: dict[str, set[str]] = {}  # category -> its families in this share
    styles: dict[str, int] = {}  # family -> its faces in this share
    for f in faces:
        families.setdefault(f.group, set()).add(f.family)
        styles[f.family] = styles.get(f.family, 0) + 1
    unknown = set(families) - set(TYPEFACE_GROUP_WEIGHTS)
    if unknown:
        raise RuntimeError(f"typeface categories {sorted(unknown)} have no weight; add them to "
                           "styles.TYPEFACE_GROUP_WEIGHTS or fix the category in typefaces.txt")
    # a category's weight is shared by its families, a family's by its styles (Regular and Bold)
    weights = np.array([TYPEFACE_GROUP_WEIGHTS[f.group] / len(families[f.group]) / styles[f.family] for f in faces])
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
