"""The validation views' logic: failure reports at given thresholds (cached), side-by-side inspection,
and the threshold sweep (with per-digit number thresholds, detector.calibration) whose best values can be
saved into the checkpoint.

A report is recomputed only when thresholds change (a few seconds for 3,340 images, model never run);
a few recent ones are kept (bounded by count and bytes) so that filtering the gallery or flicking a slider
back costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from detector.calibration import per_digit_number_scores
from detector.categories import category_to_digit
from detector.coco_eval import SWEEP_THRESHOLDS, ThresholdSweep, reading_accuracy, sweep_score_threshold
from detector.images import ImageLoadError, load_rgb
from detector.matching import ImageMatch
from detector.refilter import refilter_many
from detector.thresholds import Thresholds
from studio.drawing import display_scale, draw_ground_truth_side, draw_match_overlay, draw_prediction_side
from studio.failures import ANY, ANY_ERROR, DEFAULT_BACKEND, FailureReport, build_report
from studio.lru import BoundedLRU
from studio.session import Progress, Studio, StudioError

REPORTS_KEPT = 6
REPORTS_BYTES = 256 << 20
GALLERY_LIMIT = 60
THUMB_SHORT_SIDE = 150
MAP_SWEEP_THRESHOLDS = SWEEP_THRESHOLDS[::2]  # mAP: one COCO evaluation each (~1 s for 3,340 images)
PREDICTION_HEADERS = ["digit", "score", "kind", "TIDE", "IoU", "x1", "y1", "x2", "y2"]


@dataclass
class SweepResult:
    accuracy: ThresholdSweep  # number accuracy on the fine grid
    maps: ThresholdSweep  # mAP (and accuracy) on the coarse grid
    number_score_by_digit: tuple[tuple[int, float], ...] = ()  # per-digit number thresholds found over the best
    accuracy_per_digit: float | None = None  # number accuracy with them

    def best(self, current: Thresholds) -> Thresholds:
        """Number threshold at the best number accuracy (with the per-digit ones found), score at the best mAP."""
        points = [p for p in self.maps.points if p.mAP is not None]
        score = max(points, key=lambda p: p.mAP).threshold if points else current.score
        return Thresholds(score=float(score), nms_iou=current.nms_iou, number_score=float(self.accuracy.best_threshold),
                          class_agnostic=current.class_agnostic, number_score_by_digit=self.number_score_by_digit)

    def metrics(self, best: Thresholds, n_images: int, source: str) -> dict:
        maps = [p.mAP for p in self.maps.points if p.mAP is not None]
        return {"validation_sweep": {
            "images": n_images, "data": source, "nms_iou": best.nms_iou, "class_agnostic": best.class_agnostic,
            "best_number_score": best.number_score, "number_accuracy": self.accuracy.best_accuracy,
            "number_score_by_digit": best.to_dict().get("number_score_by_digit", {}),
            "number_accuracy_per_digit": self.accuracy_per_digit,
            "best_score": best.score, "mAP": max(maps) if maps else None,
        }}


@dataclass
class SideBySide:
    prediction: Image.Image
    ground_truth: Image.Image
    match: ImageMatch
    summary: str
    rows: list[list]


def report_nbytes(report: FailureReport) -> int:
    """About what a report holds: its per-image matches (boxes, scores, labels, IoUs) and the PR curves."""
    per_box = 4 * 4 + 4 + 8 + 4 + 8 + 8  # box, score, label, IoU, kind and index references
    boxes = sum(len(m.pred) + len(m.gt_labels) for m in report.matches)
    return 1024 * len(report.matches) + per_box * boxes + 64 * 1024


def _short(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class ValidationViews:
    """What the Validation tab shows, shared by all browser sessions (reports are cached per thresholds)."""

    def __init__(self, studio: Studio, backend: str = DEFAULT_BACKEND) -> None:
        self.studio = studio
        self.backend = backend
        self.reports: BoundedLRU[Thresholds, FailureReport] = BoundedLRU(REPORTS_KEPT, REPORTS_BYTES, report_nbytes)

    def report(self, thresholds: Thresholds, progress: Progress | None = None) -> FailureReport:
        """The report at these thresholds; predicts the validation set first if that never happened."""
        if (cached := self.reports.get(thresholds)) is not None:
            return cached
        state = self.studio.validation(progress)
        try:
            report = build_report(self.studio.records, state.candidates, thresholds, backend=self.backend,
                                  unreadable=state.unreadable)
        except ValueError as err:
            raise StudioError(str(err)) from err
        return self.reports.put(thresholds, report)

    def _image(self, image_id: int) -> Image.Image:
        record = self.studio.record(image_id)
        try:
            return load_rgb(record.path)
        except ImageLoadError:
            return Image.new("RGB", (max(record.width, 1), max(record.height, 1)), "#888888")

    def gallery(self, report: FailureReport, failure_type: str = ANY_ERROR, digit: str = ANY,
                limit: int = GALLERY_LIMIT, cell: tuple[int, int] | None = None,
                ) -> tuple[list[tuple[Image.Image, str]], list[int], int]:
        """Thumbnails of the worst matching images, their ids (for click-through) and the total matching."""
        chosen = report.select(failure_type, digit, cell=cell)
        items, ids = [], []
        for m in chosen[:limit]:
            image = self._image(m.image_id)
            scale = display_scale(*image.size, short_side=THUMB_SHORT_SIDE, long_side=400)
            mark = "✓" if m.number_correct else "✗"
            items.append((draw_match_overlay(image, m, scale=scale),
                          f"#{m.image_id} {mark} read {_short(m.number_read)} / true {m.number_true}"))
            ids.append(m.image_id)
        return items, ids, len(chosen)

    def side_by_side(self, image_id: int, thresholds: Thresholds, progress: Progress | None = None) -> SideBySide:
        report = self.report(thresholds, progress)
        match = report.by_id.get(int(image_id))
        if match is None:
            raise StudioError(f"image id {image_id} is not in the validation set")
        image = self._image(match.image_id)
        mark = "✓ right" if match.number_correct else "✗ wrong"
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in match.counts.items() if n)
        summary = (f"### Image {match.image_id}: number read **{_short(match.number_read, 24)}** vs true "
                   f"**{match.number_true}** ({mark})\n{counts or 'no boxes'}; severity {match.severity:.2f}")
        rows = []
        tide_boxes, tide_missed = report.tide_kinds(match.image_id) if report.score else ({}, {})
        for p, kind in enumerate(match.kinds):
            rows.append([category_to_digit(int(match.pred.labels[p])), round(float(match.pred.scores[p]), 3),
                         kind.replace("_", " "), tide_boxes.get(p, ""), round(float(match.iou[p]), 3),
                         *(round(float(v), 1) for v in match.pred.boxes[p])])
        for g in match.missed.tolist():
            rows.append([category_to_digit(int(match.gt_labels[g])), None, "missed (ground truth)",
                         tide_missed.get(g, "(fixable)"), None, *(round(float(v), 1) for v in match.gt_boxes[g])])
        return SideBySide(draw_prediction_side(image, match), draw_ground_truth_side(image, match), match, summary, rows)

    def sweep(self, thresholds: Thresholds, progress: Progress | None = None) -> SweepResult:
        state = self.studio.validation(progress)
        records, candidates = self.studio.records, state.candidates

        def run(grid: tuple[float, ...], with_map: bool) -> ThresholdSweep:
            return sweep_score_threshold(records, candidates, grid, thresholds.nms_iou, thresholds.class_agnostic,
                                         with_map=with_map, backend=self.backend)

        accuracy = run(SWEEP_THRESHOLDS, False)
        result = SweepResult(accuracy=accuracy, maps=run(MAP_SWEEP_THRESHOLDS, True))
        final = refilter_many(candidates, SWEEP_THRESHOLDS[0], thresholds.nms_iou, thresholds.class_agnostic)
        base = Thresholds(nms_iou=thresholds.nms_iou, number_score=accuracy.best_threshold,
                          class_agnostic=thresholds.class_agnostic)
        per_digit = per_digit_number_scores(records, final, base)
        result.number_score_by_digit = per_digit.number_score_by_digit
        result.accuracy_per_digit = reading_accuracy(records, {i: per_digit.number(d) for i, d in final.items()})
        return result
