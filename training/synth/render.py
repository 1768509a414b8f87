"""Render one synthetic house-number crop with tight digit boxes.

Pipeline (why each step exists):
1. Layout in "canvas" pixels: the output size times a render scale `s` (small crops are drawn 2-4x
   larger and downsampled, which is both anti-aliasing and the low-resolution look of real crops).
2. A flat "plane" (the wall) a margin larger than the canvas: texture, a second surface behind an
   edge, a plaque, the glyphs and their effects (shadow, outline, emboss, extrusion), distractors.
3. One perspective warp plane -> canvas (yaw/pitch/roll of the wall), then lighting, downsampling,
   low-resolution resampling, blur, colour changes, sensor noise and JPEG artefacts.
4. Boxes: each labelled glyph's ink pixels (alpha > 0.5 in the plane) are pushed through the same
   warp and scaled to output pixels; their extent is the ink box (blur and JPEG, which smear ink, come
   after and do not move boxes). The label is that ink box widened the way SVHN's annotators drew boxes
   (BoxConvention): SVHN boxes are looser than the ink, touch their neighbours (median gap between
   adjacent boxes: 0.0 digit heights) and make a '1' 0.37 as wide as tall against 0.51 for other digits.

Edge rule (also in the package docstring and every dataset's synth_meta.json): as in SVHN, a digit is
labelled only when it is fully visible (VISIBLE_INK_MIN of its ink inside the image); a digit cut by the
edge stays in the pixels, unlabelled, so a model learns not to fire on a neighbour's digit.

A small share of training images are negatives (`negative=True`): the same scene, plaque and clutter
without the number, and no box.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from training.synth.backgrounds import make_texture
from training.synth.camera import Scene, degrade, lighting, measure_ink_box, sample_warp
from training.synth.clutter import add_clutter
from training.synth.colours import luminance, min_contrast, scheme_colours, wall_colour, with_luminance
from training.synth.decor import cables, draw_plaque, glyph_effect, ink_fill, second_surface, wear
from training.synth.fonts import DISTRACTOR_LETTERS, glyph
from training.synth.geometry import Geometry, load_geometry
from training.synth.pixels import blend, multiply, nonzero_roi
from training.synth.styles import (
    GROWING_EFFECTS,
    Style,
    StyleShare,
    check_share,
    family_options,
    sample_style,
    typefaces,
)

VISIBLE_INK_MIN = 0.98  # edge rule: share of a digit's ink inside the image for it to get a box (fully visible)
MIN_INK_GAP = 0.03  # of the ink height: neighbouring digits' ink never touches
CLUTTER_RATE = 1.2  # mean clutter objects per image (Poisson), more in large scenes around small numbers
ONE_WIDTH = 0.85  # book faces' 1 has a wide foot serif that house-number 1s mostly lack (real 1 boxes: w/h 0.37)
ASPECT_REFERENCE = 0  # real box aspect of this digit (~ that of every digit but 1) sets how condensed a face is drawn
MAX_NUMBER_WIDTH = 0.8  # of the crop width: real numbers span at most ~60% (95th percentile); wider ones shrink
STRETCH_RANGE = (0.5, 1.6)
MIN_BOX_PX = 1.0  # output boxes narrower or shorter than this are dropped (never written)

Sample = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]
Box = tuple[float, float, float, float]
Pad = tuple[float, float, float, float]  # label margin left, top, right, bottom, in units of the ink height


@dataclass(frozen=True)
class BoxConvention:
    """How one annotator boxes the digits of one image: SVHN's boxes are looser than the ink.

    Derived from the real layouts' figures (svhn_geometry.json), not from pixels: adjacent SVHN boxes
    touch (median gap 0.0 of the digit height, where typeset ink gaps are 0.1-0.2), and a '1' box is
    0.37 as wide as tall where the ink of a sans '1' is about 0.25: both say each side carries a margin
    of a few hundredths to a tenth of the box height. The ink is then drawn inside the box sampled from
    the figures, and the label is the measured ink box widened by the same margins.
    """

    ink_height: float  # ink height / box height
    side: float  # horizontal margin per side, of the box height
    top_share: float  # share of the vertical margin above the ink
    jitter: float  # per-edge annotator noise, of the box height

    @classmethod
    def sample(cls, rng: np.random.Generator) -> BoxConvention:
        return cls(ink_height=float(rng.uniform(0.80, 0.96)), side=float(rng.uniform(0.02, 0.10)),
                   top_share=float(rng.uniform(0.3, 0.7)), jitter=float(rng.uniform(0.0, 0.03)))

    def pad(self, rng: np.random.Generator) -> Pad:
        """One digit's margins, in units of its ink height."""
        vertical = 1 / self.ink_height - 1
        n = rng.normal(0, self.jitter, 4) / self.ink_height
        side = self.side / self.ink_height
        return (max(0.0, side + n[0]), max(0.0, vertical * self.top_share + n[1]),
                max(0.0, side + n[2]), max(0.0, vertical * (1 - self.top_share) + n[3]))


@dataclass
class PlacedGlyph:
    """A glyph's alpha patch at an integer position in the plane, and what it is."""

    char: str
    category_id: int  # 0 for letters (never labelled)
    role: str  # "number" | "neighbour" | "letter"
    alpha: np.ndarray  # float32 patch in [0, 1]
    ox: int
    oy: int
    box: Box = (0.0, 0.0, 0.0, 0.0)  # requested ink box, plane xywh
    pad: Pad = (0.0, 0.0, 0.0, 0.0)  # label margins around the measured ink (BoxConvention)


def place_glyph(mask: np.ndarray, x: float, y: float, w: float, h: float, shear: float = 0.0
                ) -> tuple[np.ndarray, int, int]:
    """Scale an ink-cropped mask so its ink spans exactly [x, x+w+|shear|h] x [y, y+h] (plane pixels)."""
    w, h = max(w, 1.0), max(h, 1.0)
    mh, mw = mask.shape
    if w < mw * 0.8 or h < mh * 0.8:  # area-average first: bilinear warping alone aliases when shrinking
        mask = cv2.resize(mask, (max(1, round(w)), max(1, round(h))), interpolation=cv2.INTER_AREA)
        mh, mw = mask.shape
    sx, sy = w / mw, h / mh
    ox, oy = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - ox, y - oy
    k = shear
    # edge coords: X = fx + sx*(u+.5) + k*(h - sy*(v+.5)) + max(0,-k)*h; pixel centres are edge - 0.5
    m = np.array([[sx, -k * sy, fx + 0.5 * sx + k * h - 0.5 * k * sy + max(0.0, -k) * h - 0.5],
                  [0.0, sy, fy + 0.5 * sy - 0.5]], dtype=np.float64)
    pw, ph = int(np.ceil(fx + w + abs(k) * h)) + 2, int(np.ceil(fy + h)) + 2
    patch = cv2.warpAffine(mask, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return patch.astype(np.float32) * np.float32(1 / 255), ox, oy


def _paste_max(dst: np.ndarray, patch: np.ndarray, ox: int, oy: int) -> None:
    h, w = dst.shape[:2]
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + patch.shape[1], w), min(oy + patch.shape[0], h)
    if x1 > x0 and y1 > y0:
        region = dst[y0:y1, x0:x1]
        np.maximum(region, patch[y0 - oy:y1 - oy, x0 - ox:x1 - ox], out=region)


def _glyph_width(mask: np.ndarray, h: float, stretch: float) -> float:
    return h * mask.shape[1] / mask.shape[0] * stretch


def _layout_number(rng: np.random.Generator, geo: Geometry, style: Style, scene: Scene, cats: list[int],
                   convention: BoxConvention) -> tuple[list[Box], list[Pad], float]:
    """Ink boxes (canvas xywh, before the warp) for the number's digits, their label margins, and the
    horizontal stretch of the typeface.

    The figures describe SVHN's (loose) boxes: a box height and width are drawn from them, and the ink
    sits inside with the convention's margins. House-number digits are narrower than book typefaces, so
    each image condenses its typeface until its typical digit's ink has the width the box leaves; the
    typeface keeps its own proportions between digits.
    """
    box_h = geo.digit_height(rng, scene.height, len(cats)) * scene.ch
    h = box_h * convention.ink_height
    typical = np.mean([m.shape[1] / m.shape[0] for m in (glyph(style.typeface, d, style.weight) for d in "023456789")])
    ink_aspect = max(0.2, geo.digit_aspect(rng, ASPECT_REFERENCE) - 2 * convention.side) / convention.ink_height
    stretch = float(np.clip(ink_aspect / typical, *STRETCH_RANGE))
    masks = [glyph(style.typeface, str(c - 1), style.weight) for c in cats]
    widths = np.array([_glyph_width(m, h, stretch) * (ONE_WIDTH if c == 2 else 1.0) for m, c in zip(masks, cats, strict=False)])
    pads = [convention.pad(rng) for _ in cats]
    gaps = np.array([max(MIN_INK_GAP * h, geo.gap.sample(rng) * box_h + (pads[i][2] + pads[i + 1][0]) * h)
                     for i in range(len(cats) - 1)])
    slant = abs(style.shear) * h
    block = widths.sum() + gaps.sum() + slant
    margin_x = (pads[0][0] + pads[-1][2]) * h
    fit = min(1.0, MAX_NUMBER_WIDTH * scene.cw / (block + margin_x), 0.94 * scene.ch / box_h)
    h, box_h, widths, gaps, block, slant = h * fit, box_h * fit, widths * fit, gaps * fit, block * fit, slant * fit
    cx = geo.cx.sample(rng) * scene.cw
    cy = geo.cy.sample(rng) * scene.ch
    lo, hi = block / 2 + 0.02 * scene.cw, scene.cw - block / 2 - 0.02 * scene.cw
    cx = float(np.clip(cx, lo, hi)) if lo <= hi else scene.cw / 2
    lo, hi = h / 2 + 0.02 * scene.ch, scene.ch - h / 2 - 0.02 * scene.ch
    cy = float(np.clip(cy, lo, hi)) if lo <= hi else scene.ch / 2
    jitter = 0.035 if rng.random() < 0.25 else 0.0  # hand-fixed digits are rarely perfectly aligned
    boxes, x = [], cx - block / 2
    for i, w in enumerate(widths):
        dy = float(rng.normal(0, jitter)) * h if jitter else 0.0
        y = float(np.clip(cy - h / 2 + dy, 0.0, scene.ch - h))
        boxes.append((x, y, float(w), float(h)))
        x += w + (gaps[i] if i < len(gaps) else 0)
    return boxes, pads, stretch


def _union(boxes: list[Box], shear: float = 0.0) -> Box:
    """x0, y0, x1, y1 of xywh ink boxes (slant included)."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] + abs(shear) * b[3] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1, y1


def _neighbours(rng: np.random.Generator, style: Style, share: StyleShare, scene: Scene, keep_clear,
                unit: float, cy: float, stretch: float) -> list[tuple[str, str, Box]]:
    """Digits of another number, cut by the left or right image edge: (typeface, digit, canvas xywh)."""
    faces, p = typefaces(share)
    face = style.typeface if rng.random() < 0.6 else faces[int(rng.choice(len(faces), p=p))].name
    h = unit * rng.uniform(0.75, 1.15)
    y = float(np.clip(cy - h / 2 + rng.normal(0, 0.15) * unit, -0.2 * h, scene.ch - 0.8 * h))
    right = rng.random() < 0.5
    visible = rng.uniform(0.1, 0.95)
    out, edge = [], float(scene.cw)
    for i in range(int(rng.integers(1, 3))):
        d = str(int(rng.integers(10)))
        w = _glyph_width(glyph(face, d, 0), h, stretch)
        if i == 0:
            x = scene.cw - visible * w if right else visible * w - w
        else:
            gap = h * rng.uniform(0.1, 0.3)
            x = edge - gap - w if right else edge + gap
        if (right and x < keep_clear[2] + 0.35 * unit) or (not right and x + w > keep_clear[0] - 0.35 * unit):
            break
        out.append((face, d, (x, y, w, h)))
        edge = x if right else x + w
    return out


def _suffix(rng: np.random.Generator, style: Style, scene: Scene, number: Box, unit: float, stretch: float,
            shear: float) -> PlacedGlyph | None:
    """A letter after the number, as in "12A": part of the house number, but never labelled."""
    letter = DISTRACTOR_LETTERS[int(rng.integers(len(DISTRACTOR_LETTERS)))]
    mask = glyph(style.typeface, letter, style.weight)
    lh = unit * rng.uniform(0.6, 1.0)
    lw = _glyph_width(mask, lh, stretch)
    lx, ly = number[2] + unit * rng.uniform(0.05, 0.25), number[3] - lh
    if lx + lw + abs(shear) * lh >= scene.cw + scene.margin - 1:
        return None
    patch, ox, oy = place_glyph(mask, lx, ly, lw, lh, shear)
    return PlacedGlyph(letter, 0, "letter", patch, ox, oy, (lx, ly, lw, lh))


def _text_line(rng: np.random.Generator, style: Style, plane_h: int, clear: Box, unit: float,
               stretch: float) -> list[PlacedGlyph]:
    """A line of small letters (a street or a name) above or below the number; never labelled."""
    lh = unit * rng.uniform(0.2, 0.4)
    ly = clear[1] - lh - unit * 0.1 if rng.random() < 0.5 else clear[3] + unit * 0.1
    if ly <= 0 or ly + lh >= plane_h:
        return []
    out, lx = [], clear[0] + rng.uniform(-1, 1) * unit
    for _ in range(int(rng.integers(3, 9))):
        letter = DISTRACTOR_LETTERS[int(rng.integers(len(DISTRACTOR_LETTERS)))]
        mask = glyph(style.typeface, letter, 0)
        lw = _glyph_width(mask, lh, stretch)
        patch, ox, oy = place_glyph(mask, lx, ly, lw, lh)
        out.append(PlacedGlyph(letter, 0, "letter", patch, ox, oy, (lx, ly, lw, lh)))
        lx += lw + lh * 0.15
    return out


def _legible_ink(ink: np.ndarray, under: np.ndarray, scheme: str) -> np.ndarray:
    """The scheme's ink, moved in luminance if the surface actually under the number (a texture, a
    plaque, a tinted brick) left less contrast than the scheme promises."""
    need, bg = min_contrast(scheme), luminance(under)
    gap = luminance(ink) - bg
    if abs(gap) >= need:
        return ink
    target = bg + (need if gap >= 0 else -need)
    if not 0.02 <= target <= 0.98:
        target = bg - need if gap >= 0 else bg + need
    return with_luminance(ink, float(np.clip(target, 0.0, 1.0)))


def _widen(ink: np.ndarray, pad: Pad, scene: Scene) -> np.ndarray:
    """The label box: the measured ink box (output xyxy) with the annotator's margins, inside the image."""
    ih = float(ink[3] - ink[1])
    box = ink + np.array([-pad[0], -pad[1], pad[2], pad[3]], np.float32) * np.float32(ih)
    return np.clip(box, 0, [scene.width, scene.height, scene.width, scene.height]).astype(np.float32)


def _labels(glyphs: list[PlacedGlyph], g: np.ndarray, scene: Scene, grow: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes and category ids of the digits that pass the edge rule, and how many digits did not."""
    boxes, labels, unlabelled = [], [], 0
    for gl in glyphs:
        if gl.category_id == 0:
            continue
        box, inside = measure_ink_box(g, gl.alpha, gl.ox, gl.oy, scene, grow)
        if box is None or inside < VISIBLE_INK_MIN or min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_PX:
            unlabelled += 1
            continue
        boxes.append(_widen(box, gl.pad, scene))
        labels.append(gl.category_id)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), unlabelled


def _compose(rng: np.random.Generator, style: Style, share: StyleShare, scene: Scene,
             digit_boxes: list[Box], cats: list[int], twin: bool, convention: BoxConvention, pads: list[Pad],
             stretch: float = 1.0, negative: bool = False) -> Sample:
    """Draw the plane, warp it, degrade it, measure the boxes. `digit_boxes` are canvas xywh ink boxes,
    `pads` their label margins; a `negative` lays the number out (plaque, clutter) but draws no digit."""
    m = scene.margin
    ph, pw = scene.plane_shape
    unit = float(np.median([b[3] for b in digit_boxes]))
    surface, ink = scheme_colours(rng, style.colour_scheme)
    wall = surface if style.plaque == "none" else wall_colour(rng)
    plane = make_texture(style.background, rng, ph, pw, wall, unit)
    meta: dict[str, Any] = {}

    shear = 0.0 if twin else style.shear  # a slant would widen a twin's ink beyond its given box
    glyphs: list[PlacedGlyph] = []
    for (x, y, w, h), c, pad in zip(digit_boxes, cats, pads, strict=False):
        patch, ox, oy = place_glyph(glyph(style.typeface, str(c - 1), style.weight), x + m, y + m, w, h, shear)
        glyphs.append(PlacedGlyph(str(c - 1), c, "number", patch, ox, oy, (x + m, y + m, w, h), pad))
    number = region = _union([g.box for g in glyphs], shear)
    if not twin and rng.random() < 0.05 and (letter := _suffix(rng, style, scene, number, unit, stretch, shear)):
        glyphs.append(letter)
        lx, ly, lw, lh = letter.box
        region = (region[0], min(region[1], ly), lx + lw + abs(shear) * lh, region[3])
        meta["suffix"] = letter.char

    keep_clear = region
    if style.plaque != "none":
        keep_clear, pmeta = draw_plaque(rng, plane, style.plaque, surface, ink, region,
                                        [g.box for g in glyphs if g.role == "number"], unit)
        meta.update(pmeta)
    pad = unit * 0.25
    clear = (keep_clear[0] - pad, keep_clear[1] - pad, keep_clear[2] + pad, keep_clear[3] + pad)
    if rng.random() < 0.35 and (side := second_surface(rng, plane, style.background2, clear, unit)):
        meta["edge"] = side
    if rng.random() < 0.15:
        cables(rng, plane, clear, unit)
        meta["cable"] = True
    # larger scenes around a small number hold more street: clutter grows with the free area
    room = (ph * pw) / max(1.0, (clear[2] - clear[0]) * (clear[3] - clear[1]))
    if clutter := add_clutter(rng, plane, clear, unit, int(rng.poisson(CLUTTER_RATE * float(np.clip(room / 4, 0.5, 3))))):
        meta["clutter"] = clutter
    if not twin and rng.random() < 0.06:
        found = _neighbours(rng, style, share, scene, tuple(v - m for v in clear), unit,
                            (number[1] + number[3]) / 2 - m, stretch)
        for face, d, (x, y, w, h) in found:
            patch, ox, oy = place_glyph(glyph(face, d, 0), x + m, y + m, w, h)
            glyphs.append(PlacedGlyph(d, int(d) + 1, "neighbour", patch, ox, oy, (x + m, y + m, w, h),
                                      convention.pad(rng)))
        meta["neighbours"] = len(found)
    if not twin and rng.random() < 0.08 and (line := _text_line(rng, style, ph, clear, unit, stretch)):
        glyphs += line
        meta["text_line"] = True

    if negative:
        glyphs = [g for g in glyphs if g.role != "number"]
        meta["negative"] = True
    alpha = np.zeros((ph, pw), np.float32)
    for g in glyphs:
        _paste_max(alpha, g.alpha, g.ox, g.oy)
    x0, y0, x1, y1 = (int(max(0, v)) for v in number)
    under = plane[y0:max(y0 + 1, y1), x0:max(x0 + 1, x1)].reshape(-1, 3).mean(axis=0)
    ink = _legible_ink(ink, under, style.colour_scheme)
    meta["ink_contrast"] = round(abs(luminance(ink) - luminance(under)), 3)

    # effects and paint only where there is text (a few % of the plane)
    x0, y0, x1, y1 = nonzero_roi(alpha, pad=int(unit * 0.35) + 2) if alpha.any() else (0, 0, 1, 1)
    sub, sub_alpha = plane[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    effect, grow = glyph_effect(rng, sub, sub_alpha, style.glyph_effect, ink, unit)
    if effect:
        meta["effect"] = effect
    paint = ink_fill(rng, style.fill, ink, sub_alpha.shape, (region[0] - x0, region[1] - y0, region[2] - x0,
                                                             region[3] - y0))
    blend(sub, wear(rng, sub_alpha, unit) if style.fill == "worn" else sub_alpha, paint)

    if twin:  # the wall seen at an angle; a twin is seen straight on
        g = np.array([[1, 0, -m], [0, 1, -m], [0, 0, 1.0]])
        meta.update(yaw=0.0, pitch=0.0, roll=0.0)
    else:
        g, wmeta = sample_warp(rng, scene, tuple(v - m for v in number))
        meta.update(wmeta)
    canvas = cv2.warpPerspective(plane, g, (scene.cw, scene.ch), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
    light, used = lighting(rng, scene.ch, scene.cw)
    if light is not None:
        multiply(canvas, light)
        meta["lighting"] = used
    if (scene.cw, scene.ch) != (scene.width, scene.height):
        canvas = cv2.resize(canvas, (scene.width, scene.height), interpolation=cv2.INTER_AREA)
    image, dmeta = degrade(rng, canvas)
    meta.update(dmeta)

    boxes, labels, unlabelled = _labels(glyphs, g, scene, grow)
    meta.update(render_scale=round(scene.scale, 3), number="".join(g.char for g in glyphs if g.role == "number"),
                unlabelled_digits=unlabelled)
    return image, boxes, labels, meta


def render_sample(rng: np.random.Generator, style_share: StyleShare = "all",
                  geometry: Geometry | None = None, negative: bool = False) -> Sample:
    """One synthetic crop: (HxWx3 uint8 RGB, boxes xyxy float32 (N,4), category ids int64 (N,), meta).

    `negative`: the same kind of scene with no number in it (no boxes), a hard negative for training.

    Boxes are ordered left to right for the number, then any labelled edge-cut neighbours.
    """
    share = check_share(style_share)
    geo = geometry or load_geometry()
    style = sample_style(rng, share)
    n = geo.digit_count(rng)
    width, height = geo.image_size(rng, n)
    cats = geo.category_ids(rng, n)
    scene = Scene.for_size(width, height)
    convention = BoxConvention.sample(rng)
    boxes, pads, stretch = _layout_number(rng, geo, style, scene, cats, convention)
    image, out_boxes, labels, meta = _compose(rng, style, share, scene, boxes, cats, twin=False, convention=convention,
                                              pads=pads, stretch=stretch, negative=negative)
    return image, out_boxes, labels, {**style.as_meta(), "stretch": round(stretch, 3), **meta}


def _ink_inside(box: Box, pad: Pad) -> Box:
    """The ink box (xywh) that `pad`'s margins widen to `box`; a box too narrow for its margins keeps
    a fifth of its height as ink width."""
    x, y, w, h = box
    ih = h / (1 + pad[1] + pad[3])
    iw = max(w - (pad[0] + pad[2]) * ih, min(w, 0.2 * ih))
    return x + (w - iw) * pad[0] / max(pad[0] + pad[2], 1e-9), y + pad[1] * ih, iw, ih


def render_twin(rng: np.random.Generator, width: int, height: int, boxes_xyxy: np.ndarray,
                category_ids: np.ndarray, style_share: StyleShare = "all") -> Sample:
    """A synthetic image of a given size whose digits sit in the given boxes (xyxy, output pixels) the way
    SVHN's annotators boxed digits: the ink inside each box with BoxConvention's margins.

    No perspective or slant (they would move the ink off the boxes); everything else is as in
    render_sample. The returned boxes are the measured ink boxes widened by the same margins, which match
    the given ones to about a pixel; callers that want the given boxes verbatim (the --layouts writer) use those.
    """
    share = check_share(style_share)
    style = sample_style(rng, share)
    if style.glyph_effect in GROWING_EFFECTS:  # an outline or extruded side would spill out of the given box
        names, p = family_options("glyph_effect", share)
        keep = [i for i, n in enumerate(names) if n not in GROWING_EFFECTS]
        pick = keep[int(rng.choice(len(keep), p=p[keep] / p[keep].sum()))]
        style = replace(style, glyph_effect=names[pick])
    scene = Scene.for_size(int(width), int(height))
    sx, sy = scene.cw / scene.width, scene.ch / scene.height
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    convention = BoxConvention.sample(rng)
    pads = [convention.pad(rng) for _ in b]
    canvas_boxes = [_ink_inside((x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy), pad)
                    for (x0, y0, x1, y1), pad in zip(b, pads, strict=False)]
    cats = [int(c) for c in np.asarray(category_ids).reshape(-1)]
    if not cats:
        raise ValueError("render_twin needs at least one box")
    image, out_boxes, labels, meta = _compose(rng, style, share, scene, canvas_boxes, cats, twin=True,
                                              convention=convention, pads=pads)
    return image, out_boxes, labels, {**style.as_meta(), **meta}
