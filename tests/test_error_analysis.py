"""The failure report's error analysis without a server: per-digit P/R/F1 curves, the gallery's TIDE and
confusion-cell filters, the inspect table's TIDE column, and the figures that show them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.detections import Detections
from detector.hw2 import ImageRecord
from detector.matching import match_image
from detector.score_curves import score_curves
from detector.thresholds import Thresholds
from detector.tide import tide
from studio.failures import build_report, parse_cell
from studio.plots import confusion_table, f1_figure, tide_figure

A, B, C = [10, 10, 30, 50], [35, 10, 55, 50], [60, 10, 80, 50]


def _record(image_id: int, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(image_id, f"{image_id}.png", 120, 60, Path(f"{image_id}.png"),
                       np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64))


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.tensor(labels, dtype=torch.int64))


RECORDS = [_record(1, [A, B], [2, 3]), _record(2, [A, B], [2, 3]), _record(3, [A, B, C], [5, 6, 7]),
           _record(4, [A], [9])]
CANDIDATES = {
    1: _dets([A, B], [2, 3], [0.99, 0.98]),  # perfect: "12"
    2: _dets([A, B, [90, 5, 110, 40]], [2, 3, 4], [0.99, 0.98, 0.95]),  # a '3' on nothing: background
    3: _dets([A, B], [5, 8], [0.99, 0.97]),  # a 5 (category 6) read as 7 (category 8), the 6 missed
    4: _dets([A, [11, 11, 31, 51]], [9, 9], [0.9, 0.6]),  # a duplicate
}
TH = Thresholds(score=0.5, nms_iou=1.0, number_score=0.7, class_agnostic=False)


def test_precision_recall_f1_per_digit_count_boxes_at_or_above_each_threshold() -> None:
    """Digit 1 (category 2): 3 boxes, 2 right, on 2 ground truths: a 0.7 box on nothing under two 0.99 right ones."""
    records = [_record(1, [A], [2]), _record(2, [A], [2])]
    candidates = {1: _dets([A], [2], [0.99]), 2: _dets([A, [90, 5, 110, 40]], [2, 2], [0.99, 0.7])}
    matches = [match_image(candidates[r.image_id], r.boxes, r.category_ids) for r in records]
    curves = score_curves(matches, [0.5, 0.8, 0.995])
    assert curves.ground_truths[1] == 2
    np.testing.assert_allclose(curves.precision[1], [2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(curves.recall[1], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(curves.f1[1], [0.8, 1.0, 0.0])  # 2TP / (2TP + FP + FN); nothing found: 0
    assert np.isnan(curves.f1[0]).all() and curves.best_f1(0) is None  # no box, no ground truth
    assert curves.best_f1(1) == (0.8, 1.0)


def test_curves_from_one_matching_equal_matching_at_each_threshold() -> None:
    """Greedy matching decides each box from those scored above it, so one matching serves every threshold."""
    report = build_report(RECORDS, CANDIDATES, TH, backend="pycocotools")
    curves = report.curves
    for i, t in enumerate(curves.thresholds):
        cut = Thresholds(score=float(t), nms_iou=1.0)
        at_t = [match_image(cut.final(CANDIDATES[r.image_id]), r.boxes, r.category_ids) for r in RECORDS]
        again = score_curves(at_t, [float(t)])
        np.testing.assert_array_equal(curves.precision[:, i], again.precision[:, 0])
        np.testing.assert_array_equal(curves.recall[:, i], again.recall[:, 0])


def test_the_gallery_filters_by_tide_kind_and_by_confusion_cell() -> None:
    report = build_report(RECORDS, CANDIDATES, TH, backend="pycocotools")
    expected = tide(RECORDS, {r.image_id: TH.final(CANDIDATES[r.image_id]) for r in RECORDS})
    assert report.tide.delta_ap == expected.delta_ap and report.tide.counts() == expected.counts()
    assert [m.image_id for m in report.select("TIDE Bkg")] == [2]
    assert [m.image_id for m in report.select("TIDE Cls")] == [3]
    assert [m.image_id for m in report.select("TIDE Cls", "7")] == [3]  # the box's digit
    assert [m.image_id for m in report.select("TIDE Cls", "5")] == [3]  # and the one under it
    assert report.select("TIDE Cls", "1") == []
    assert [m.image_id for m in report.select("TIDE Dupe")] == [4]
    assert [m.image_id for m in report.select("TIDE Miss")] == [3]  # the 6: nothing near it
    assert [m.image_id for m in report.select(cell=(5, 7))] == [3]  # true 5 predicted 7
    assert [m.image_id for m in report.select(cell=(10, 3))] == [2]  # a '3' on no digit
    assert [m.image_id for m in report.select(cell=(1, 1))] == [2, 1]  # right 1s, worst image first
    assert report.select(cell=(0, 0)) == []
    boxes, missed = report.tide_kinds(3)
    assert boxes == {0: "TP", 1: "Cls"} and missed == {2: "Miss"}


@pytest.mark.parametrize("text, cell", [("3,8", (3, 8)), (" 7 , bg", (7, 10)), ("bg,5", (10, 5)), ("2→missed", (2, 10)),
                                        ("", None), (None, None)])
def test_a_confusion_cell_reads_from_the_text_a_click_writes(text, cell) -> None:
    assert parse_cell(text) == cell


@pytest.mark.parametrize("text", ["3", "3,8,1", "x,8", "10,3", "three,eight"])
def test_a_bad_confusion_cell_is_one_error_showing_the_form(text) -> None:
    with pytest.raises(ValueError, match=r"should be 'true,predicted' with digits 0-9 or bg .* e.g. 3,8"):
        parse_cell(text)


def test_the_figures_draw_the_report() -> None:
    report = build_report(RECORDS, CANDIDATES, TH.with_number_scores({5: 0.3}), backend="pycocotools")
    table = confusion_table(report.confusion)
    frame = table.data
    assert list(frame.iloc[:, 0]) == [str(d) for d in range(10)] + ["FP"] and frame.shape == (11, 12)
    assert int(frame.iloc[5, 8]) == 1 and "background-color" in table.to_html()
    tide_fig = tide_figure(report.tide, report.thresholds)
    assert "AP50" in tide_fig.axes[0].get_title() and len(tide_fig.axes[0].patches) == 8
    f1_fig = f1_figure(report.curves, report.thresholds)
    titles = [ax.get_title() for ax in f1_fig.axes]
    assert titles[5] == "digit 5: 1 boxes (own cut)" and titles[1] == "digit 1: 2 boxes"
    own_line = [line for line in f1_fig.axes[5].lines if line.get_linestyle() == "--"]
    assert own_line and own_line[0].get_xdata()[0] == 0.3  # digit 5's own number threshold is marked
