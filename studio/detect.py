"""The Detect view's work: read uploads, get (cached) candidates, apply thresholds, lay out the results.

Bad files never stop the batch: each unreadable upload becomes one line in `problems`, and the good ones
are still shown. The model runs only for pixels it has not seen (Studio's upload cache), so the slider
handlers call this same function and are instant. Images are read one at a time within studio.uploads'
bounds and only their drawn, display-size copy is kept, so a request's memory does not grow with its files.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from detector.categories import category_to_digit
from detector.detections import Detections
from detector.images import ImageLoadError
from detector.number import NumberReading
from detector.results_io import detections_to_coco_results
from detector.thresholds import Thresholds
from studio.drawing import draw_detections
from studio.session import Studio
from studio.uploads import plan_uploads, read_one, release_free_memory

SHOWN_DIGITS = 16  # a house number is a few digits; an untrained model can "read" hundreds
TABLE_HEADERS = ["image", "image_id", "digit", "score", "x1", "y1", "x2", "y2", "in number"]
NEAR_THRESHOLD = 0.05  # a digit this close to the number threshold may come and go with tiny pixel changes


@dataclass
class ImageResult:
    name: str
    image_id: int
    picture: Image.Image  # the detections drawn on a display-size copy
    final: Detections  # in the file's pixels
    reading: NumberReading
    number_margin: float  # how far the read digit closest to its number threshold (its own or the global) is above it
    path: str  # the upload it came from


@dataclass
class DetectOutcome:
    results: list[ImageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files refused or unreadable: warnings
    notes: list[str] = field(default_factory=list)  # what the user should know (downscaled, duplicates, NMS)

    @property
    def readable(self) -> list[str]:
        """The uploads that were read: what the file list keeps (bad and repeated files are dropped)."""
        return [r.path for r in self.results]

    def gallery(self) -> list[tuple[Image.Image, str]]:
        return [(r.picture, f"{r.name}: {_shown(r.reading.text) if r.reading.value >= 0 else 'no number'}")
                for r in self.results]

    def table(self) -> list[list]:
        rows = []
        for r in self.results:
            used = {tuple(b) for b in r.reading.digits.boxes.tolist()}
            for box, score, label in zip(r.final.boxes.tolist(), r.final.scores.tolist(), r.final.labels.tolist(), strict=False):
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
            if len(r.reading.digits) and r.number_margin < NEAR_THRESHOLD:
                detail += (f", within {r.number_margin:.2f} of its number threshold: that digit may come and go "
                           "with small changes to the image")
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


def run_detect(studio: Studio, paths: Sequence[str | Path], thresholds: Thresholds) -> DetectOutcome:
    """Detect on every readable upload; raises StudioError only when there is no model at all."""
    studio.require_model()
    plan = plan_uploads(paths)
    outcome = DetectOutcome(problems=plan.problems, notes=plan.notes)
    downscaled = 0
    for path in plan.paths:
        upload = read_one(path)
        if isinstance(upload, str):
            outcome.problems.append(upload)
            continue
        try:
            candidates = studio.candidates_for(upload.image, upload.name)
        except ImageLoadError as err:  # e.g. too thin for the model's resize
            outcome.problems.append(str(err))
            continue
        shown = thresholds.final(candidates)  # in the bounded image's pixels
        picture = draw_detections(upload.image, shown, thresholds.number(shown).digits)
        final = upload.to_original(shown)
        reading = thresholds.number(final)
        cuts = [thresholds.number_score_of(int(c)) for c in reading.digits.labels.tolist()]
        margin = min((s - c for s, c in zip(reading.digits.scores.tolist(), cuts, strict=True)), default=1.0)
        outcome.results.append(ImageResult(upload.name, 0, picture, final, reading, margin, str(path)))
        if upload.downscaled:
            outcome.notes.append(upload.note())
            downscaled += 1
    for result, image_id in zip(outcome.results, image_ids_for([r.name for r in outcome.results]), strict=False):
        result.image_id = image_id
    if hint := thresholds.nms_hint():
        outcome.notes.append(hint)
    if downscaled:
        release_free_memory()
    return outcome
