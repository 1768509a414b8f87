"""The validation tab's error analysis over HTTP (gradio_client): TIDE's chart and the P/R/F1 curves follow the
sliders, the gallery filters by TIDE's kinds and by a confusion-matrix cell, and the app reads numbers with the
checkpoint's per-digit thresholds. Expected values come from the detector modules on the app's own candidates."""
from __future__ import annotations

import pytest

from detector.images import load_rgb
from detector.matching import confusion_cells, match_image
from detector.thresholds import Thresholds
from detector.tide import ERROR_KINDS, tide
from studio.failures import cell_label
from tests.test_app import RunningApp, _rows, _value, running_app  # noqa: F401  (the module-scoped app fixture)

gradio_client = pytest.importorskip("gradio_client")
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]

TH = Thresholds(score=0.5, nms_iou=0.5, number_score=0.9, class_agnostic=False)


@pytest.fixture
def client(running_app: RunningApp):  # noqa: F811
    client = gradio_client.Client(running_app.url, verbose=False)
    client.predict("any error", "any", *_values(TH), api_name="/evaluate")  # predicts the validation set once
    return client


def _values(th: Thresholds) -> tuple:
    return th.score, th.nms_iou, th.number_score, th.class_agnostic


def _final(app: RunningApp, th: Thresholds) -> dict:
    candidates = app.studio.validation().candidates
    return {r.image_id: th.final(candidates[r.image_id]) for r in app.studio.records}


def _ids(gallery) -> list[int]:
    return [int(item["caption"].split()[0].lstrip("#")) for item in _value(gallery)]


def test_tide_chart_and_f1_curves_follow_the_sliders_without_the_model(running_app: RunningApp, client) -> None:  # noqa: F811
    studio = running_app.studio
    runs = studio.model_runs
    notes = {}
    for score in (0.5, 0.95):
        th = Thresholds(score, TH.nms_iou, TH.number_score, TH.class_agnostic)
        client.predict("any error", "any", *_values(th), api_name="/refresh_validation")
        tide_plot, f1_plot, note = client.predict(*_values(th), api_name="/error_analysis")
        assert tide_plot and f1_plot
        expected = tide(studio.records, _final(running_app, th))
        counts = expected.counts()
        assert f"score ≥ {score:.2f}: AP50 {100 * expected.ap:.2f}" in note
        assert " | ".join(f"{100 * expected.delta_ap[k]:.2f} ({counts[k]})" for k in ERROR_KINDS) in note
        notes[score] = note
    assert notes[0.5] != notes[0.95]  # the chart moved with the score slider
    assert studio.model_runs == runs


def test_the_gallery_filters_by_tides_kinds(running_app: RunningApp, client) -> None:  # noqa: F811
    expected = tide(running_app.studio.records, _final(running_app, TH))
    kinds = [k for k in ERROR_KINDS if expected.counts()[k]]
    assert kinds, "the tiny model should make some error"
    for kind in kinds:
        _, _, _, _, gallery, note, message = client.predict(f"TIDE {kind}", "any", *_values(TH),
                                                            api_name="/refresh_validation")
        wanted = {image_id for image_id, errors in expected.by_image.items() if any(e.kind == kind for e in errors)}
        assert set(_ids(gallery)) == wanted and message == "" and f"{len(wanted)} image(s) match" in note


def test_a_confusion_cell_filters_the_gallery_to_its_images(running_app: RunningApp, client) -> None:  # noqa: F811
    studio = running_app.studio
    final = _final(running_app, TH)
    cells = {r.image_id: set(confusion_cells(match_image(final[r.image_id], r.boxes, r.category_ids)))
             for r in studio.records}
    counted = sorted({c for found in cells.values() for c in found}, key=lambda c: (c[0] == c[1], c))
    row, column = counted[0]  # an error cell when there is one
    text = f"{cell_label(row)},{cell_label(column)}"
    _, _, table, _, gallery, note, message = client.predict("any error", "any", *_values(TH), False, text,
                                                            api_name="/refresh_validation")
    assert set(_ids(gallery)) == {i for i, found in cells.items() if (row, column) in found}
    assert f"Confusion cell true {cell_label(row)} → predicted {cell_label(column)}" in note and message == ""
    rows = _rows(table)
    assert [r[0] for r in rows] == [str(d) for d in range(10)] + ["FP"]
    assert int(rows[row][column + 1]) == sum((row, column) in found for found in cells.values())
    *_, message = client.predict("any error", "any", *_values(TH), False, "3 to eight",
                                 api_name="/refresh_validation")
    assert "should be 'true,predicted'" in message


def test_the_app_reads_numbers_with_the_checkpoints_per_digit_thresholds(running_app: RunningApp) -> None:  # noqa: F811
    """The tiny model is confident about 4s only; with a global number threshold of 1.0 nothing is read, with the
    checkpoint's own 0.5 for digit 4 the 4s are, in the Detect tab and in the validation metrics."""
    studio = running_app.studio
    before = studio.default_thresholds()
    client = gradio_client.Client(running_app.url, verbose=False)
    image = gradio_client.handle_file(str(running_app.data / "valid" / "1.png"))
    try:
        saved = studio.save_thresholds(Thresholds(0.5, 0.5, 1.0, False, number_score_by_digit={4: 0.5})).thresholds
        th = Thresholds(0.5, 0.5, 1.0, False)
        _, on, *_ = client.predict([image], *_values(th), True, api_name="/detect")
        _, off, *_ = client.predict([image], *_values(th), False, api_name="/detect")
        final = th.final(studio.candidates_for(load_rgb(running_app.data / "valid" / "1.png")))
        assert saved.number(final).text.strip("4") == "" and saved.number(final).value > 0
        assert f'data-number="{saved.number(final).text}"' in on and 'data-number="-1"' in off
        metrics, *_ = client.predict("any error", "any", *_values(th), True, api_name="/refresh_validation")
        assert "(per digit: 4 ≥ 0.50)" in metrics
    finally:
        studio.save_thresholds(before)
