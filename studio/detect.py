"""The Detect view's work: read uploads, get (cached) candidates, apply thresholds, lay out the results.

Bad files never stop the batch: each unreadable upload becomes one line in `problems`, and the good ones
are still shown. The model runs only for pixels it has not seen (Studio's upload cache), so the slider
handlers call this same function and are instant.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from detector.categories import category_to_digit
from detector.detections import Detections
from detector.images import ImageLoadError, load_rgb
from detector.number import NumberReading
from detector.results_io import detections_to_coco_results
from studio.drawing import draw_detections
from studio.session import Studio
from studio.thresholds import Thresholds

MAX_IMAGES_PER_REQUEST = 48
SHOWN_DIGITS = 16  # a house number is a few digits; an untrained model can "read" hundreds
TABLE_HEADERS = ["image", "image_id", "digit", "score", "x1", "y1", "x2", "y2", "in number"]


@dataclass
class ImageResult:
    name: str
    image_id: int
    image: Image.Image
    final: Detections
    reading: NumberReading


@dataclass
class DetectOutcome:
    results: list[ImageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def gallery(self) -> list[tuple[Image.Image, str]]:
        return [(draw_detections(r.image, r.final, r.reading.digits),
                 f"{r.name}: {_shown(r.reading.text) if r.reading.value >= 0 else 'no number'}") for r in self.results]

    def table(self) -> list[list]:
        rows = []
        for r in self.results:
            used = {tuple(b) for b in r.reading.digits.boxes.tolist()}
            for box, score, label in zip(r.final.boxes.tolist(), r.final.scores.tolist(), r.final.labels.tolist()):
                rows.append([r.name, r.image_id, category_to_digit(label), round(score, 3),
                             *(round(v, 1) for v in box), "yes" if tuple(box) in used else ""])
        return rows

    def coco_results(self) -> list[dict]:
        return detections_to_coco_results({r.image_id: r.final for r in self.results})

    def number_html(self) -> str:
        if not self.results:
            return '<div class="number-read empty">No number yet: upload an image or pick a sample.</div>'
        blocks = []
        for r in self.results:
            text = _shown(r.reading.text) if r.reading.value >= 0 else "—"
            detail = (f"{len(r.reading.digits)} digit(s), weakest score {r.reading.confidence:.2f}"
                      if len(r.reading.digits) else "no digit above the number threshold")
            blocks.append(
                f'<div class="number-read"><div class="number-file">{html.escape(r.name)}</div>'
                f'<div class="number-digits" data-number="{html.escape(r.reading.text)}">{html.escape(text)}</div>'
                f'<div class="number-detail">{detail}</div></div>')
        return '<div class="number-row">' + "".join(blocks) + "</div>"


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_DIGITS else f"{text[:SHOWN_DIGITS]}… ({len(text)} digits)"


def image_ids_for(names: Sequence[str]) -> list[int]:
    """HW2 names files `<id>.png`: keep those ids when every name has a distinct one, else number 1..n."""
    stems = [Path(n).stem for n in names]
    if all(s.isdigit() for s in stems) and len(set(stems)) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(names) + 1))


def load_uploads(paths: Sequence[str | Path]) -> tuple[list[tuple[str, Image.Image]], list[str]]:
    images, problems = [], []
    if len(paths) > MAX_IMAGES_PER_REQUEST:
        problems.append(f"{len(paths)} files uploaded; only the first {MAX_IMAGES_PER_REQUEST} are processed")
        paths = paths[:MAX_IMAGES_PER_REQUEST]
    for p in paths:
        name = Path(p).name
        try:
            images.append((name, load_rgb(p, name=name)))
        except ImageLoadError as err:
            problems.append(str(err))
        except Exception as err:  # a decoder bug on a hostile file must not take the app down
            problems.append(f"{name}: could not be read ({type(err).__name__}: {err})")
    return images, problems


def run_detect(studio: Studio, paths: Sequence[str | Path], thresholds: Thresholds) -> DetectOutcome:
    """Detect on every readable upload; raises StudioError only when there is no model at all."""
    images, problems = load_uploads(paths)
    outcome = DetectOutcome(problems=problems)
    ids = image_ids_for([name for name, _ in images])
    for (name, image), image_id in zip(images, ids):
        candidates = studio.candidates_for(image)
        final = thresholds.final(candidates)
        outcome.results.append(ImageResult(name, image_id, image, final, thresholds.number(final)))
    return outcome
