"""The app in a real (headless) browser: the page renders, clicking a sample draws boxes and shows the
number, the validation tab fills in. Screenshots go to tests/artifacts/ for a person to look at."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from detector.categories import digit_to_category
from detector.hw2 import load_annotation_file
from detector.images import load_rgb
from studio.review import DEFAULT_MIN_SCORE
from tests.test_app import RunningApp, running_app  # noqa: F401  (the module-scoped app fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium binary ({CHROMIUM}) on this machine"),
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),  # gradio's pandas use
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, running_app: RunningApp):  # noqa: F811
    """A fresh tab on the app's first page for each test."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(running_app.url)
    page.get_by_role("tab", name="Detect").wait_for(timeout=30_000)
    yield page
    page.close()


def _idle(page) -> None:
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=30_000)


def _shown(page) -> None:
    """A clicked suggestion is on screen: its id in the field, its picture in the editor."""
    page.wait_for_function("() => document.querySelector('#review-current textarea, #review-current input').value",
                           timeout=30_000)
    page.locator("#review-editor canvas").wait_for(timeout=30_000)
    _idle(page)


def test_page_renders_and_a_sample_click_draws_boxes_and_the_number(running_app: RunningApp, page) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    assert page.get_by_text("House-number digit detector studio").count() >= 1
    for tab in ("Detect", "Validation & failures", "Annotation review", "Model & data"):
        assert page.get_by_role("tab", name=tab).count() == 1

    page.locator("#samples img").first.click()
    digits = page.locator("#number-read .number-digits").first
    digits.wait_for(timeout=60_000)
    page.locator("#detect-gallery img").first.wait_for(timeout=30_000)

    sample = sorted(running_app.samples.iterdir())[0]
    th = running_app.studio.default_thresholds()
    expected = th.number(th.final(running_app.studio.candidates_for(Image.open(sample).convert("RGB"))))
    assert digits.get_attribute("data-number") == expected.text
    assert page.locator("#number-read .number-file").first.inner_text() == sample.name
    assert page.locator('#detect-table [data-testid="cell-0-0"]').inner_text() == sample.name
    page.screenshot(path=str(ARTIFACTS / "app_detect.png"), full_page=True)


def test_validation_tab_shows_metrics_and_a_failure_gallery(running_app: RunningApp, page) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Validation & failures").click()
    page.locator("#validation-metrics table").wait_for(timeout=60_000)
    assert "mAP" in page.locator("#validation-metrics").inner_text()
    page.locator("#failure-gallery img").first.wait_for(timeout=30_000)
    page.locator("#failure-gallery img").first.click()  # opens prediction vs ground truth
    page.locator("#inspect-summary h3").wait_for(timeout=30_000)
    assert "vs true" in page.locator("#inspect-summary").inner_text()
    page.locator("#inspect-gt img").wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_validation.png"), full_page=True)


def test_review_tab_click_a_suggestion_and_accept_it(running_app: RunningApp, page) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Annotation review").click()
    page.get_by_role("slider", name="Minimum suspicion score for a suggestion").fill("0.5")
    page.locator("#review-find").click()
    first_cell = page.locator('#review-list [data-testid="cell-0-1"]')  # row 0, the suggestion id column
    first_cell.wait_for(timeout=60_000)
    first_cell.click()  # selecting a row shows that suggestion
    _shown(page)
    suggestion = page.locator("#review-current textarea, #review-current input").first.input_value()
    assert suggestion.count(":") == 2
    accepted = "delete" if suggestion.split(":")[1] == "spurious_box" else "accept"  # accepting 'no digit here?'
    page.locator("#review-accept").click()
    page.get_by_text(f"{accepted} recorded for {suggestion}").wait_for(timeout=30_000)
    current = page.locator("#review-current textarea, #review-current input").first
    page.wait_for_function("([el, old]) => el.value && el.value !== old", arg=[current.element_handle(), suggestion],
                           timeout=30_000)  # moved on to the next undecided suggestion
    following = current.input_value()
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=30_000)
    assert following != suggestion
    page.screenshot(path=str(ARTIFACTS / "app_review.png"), full_page=True)
    log = running_app.studio.annotation_file.with_name("valid.review.jsonl").read_text().splitlines()
    decision = json.loads(log[-1])
    assert (decision["suggestion_id"], decision["decision"]) == (suggestion, accepted)
    assert decision["author"].startswith("browser:")


def test_review_draw_a_box_press_a_digit_and_accept(running_app: RunningApp, page) -> None:  # noqa: F811
    """The reviewer's flow with mouse and keys only: draw the right box over the proposal, press 7, press A;
    the log holds an edit with that box (in the image's pixels) and digit 7, and the export carries it."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Annotation review").click()
    assert "does not record its training data" in page.locator("#review-fairness").inner_text()
    page.get_by_role("slider", name="Minimum suspicion score for a suggestion").fill("0.5")
    page.locator("#review-find").click()
    row = page.locator('#review-list [data-testid="cell-1-1"]')
    row.wait_for(timeout=60_000)
    row.click()
    _shown(page)
    canvas = page.locator("#review-editor canvas")
    suggestion = page.locator("#review-current textarea, #review-current input").first.input_value()
    record = running_app.studio.record(int(suggestion.split(":")[0]))

    page.locator('#review-editor button[aria-label="Create box"]').click()
    area = canvas.bounding_box()
    shown = area["height"] * record.width / record.height  # the picture fills the canvas height, centred across
    left = area["x"] + (area["width"] - shown) / 2
    start, end = (0.25, 0.15), (0.6, 0.9)  # of the picture's width and height
    page.mouse.move(left + start[0] * shown, area["y"] + start[1] * area["height"])
    page.mouse.down()
    page.mouse.move(left + end[0] * shown, area["y"] + end[1] * area["height"], steps=8)
    page.mouse.up()
    page.keyboard.press("7")
    page.wait_for_function("() => document.querySelector('#review-digit input[value=\"7\"]').checked",
                           timeout=10_000)
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "app_review_drawn.png"), full_page=True)
    log = running_app.studio.annotation_file.with_name("valid.review.jsonl")
    lines_before = len(log.read_text().splitlines()) if log.exists() else 0
    page.keyboard.press("a")
    page.get_by_text(f"edit recorded for {suggestion}").wait_for(timeout=30_000)

    lines = log.read_text().splitlines()
    assert len(lines) == lines_before + 1  # one action, one appended line
    decision = json.loads(lines[-1])
    assert (decision["suggestion_id"], decision["decision"]) == (suggestion, "edit")
    assert decision["changes"]["category_id"] == digit_to_category(7)
    expected = [start[0] * record.width, start[1] * record.height, end[0] * record.width, end[1] * record.height]
    tolerance = [0.02 * record.width + 0.5, 0.02 * record.height + 0.5] * 2
    assert all(abs(a - b) <= t for a, b, t in zip(decision["changes"]["box"], expected, tolerance, strict=True)), \
        (decision["changes"]["box"], expected)

    current = page.locator("#review-current textarea, #review-current input").first
    moves = "([el, old]) => el.value && el.value !== old"
    page.wait_for_function(moves, arg=[current.element_handle(), suggestion], timeout=30_000)  # the next undecided
    _shown(page)
    moved_to = current.input_value()
    page.keyboard.press("n")  # next without deciding: nothing written
    page.wait_for_function(moves, arg=[current.element_handle(), moved_to], timeout=30_000)
    assert len(log.read_text().splitlines()) == lines_before + 1

    page.locator("#review-export").click()
    page.get_by_text("Corrected annotations written").wait_for(timeout=30_000)
    corrected = load_annotation_file(running_app.data / "valid.corrected.json", running_app.data / "valid")
    fixed = corrected.by_id()[record.image_id]
    hits = [i for i, (b, c) in enumerate(zip(fixed.boxes.tolist(), fixed.category_ids.tolist(), strict=True))
            if c == digit_to_category(7) and all(abs(x - y) < 0.01 for x, y in zip(b, decision["changes"]["box"],
                                                                                    strict=True))]
    assert len(hits) == 1, (fixed.boxes.tolist(), decision["changes"])


def test_a_new_upload_replaces_the_list_and_a_bad_file_warns_once(running_app: RunningApp, page,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    samples = sorted(running_app.samples.iterdir())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    upload = page.locator("#detect-files input[type=file]")
    digits = page.locator("#number-read .number-digits")

    upload.set_input_files(str(samples[0]))
    page.locator("#number-read .number-file").first.wait_for(timeout=60_000)
    th = running_app.studio.default_thresholds()
    expected = th.number(th.final(running_app.studio.candidates_for(load_rgb(samples[0]))))
    assert digits.first.get_attribute("data-number") == expected.text  # the upload path reads what the API reads

    upload.set_input_files([str(samples[1]), str(bad)])
    page.get_by_text("bad.png: not an image file").first.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('#number-read .number-file').length === 1 && "
                           f"document.querySelector('#number-read .number-file').innerText === '{samples[1].name}'",
                           timeout=60_000)  # replaced, not added to sample 1
    page.wait_for_function("() => !document.querySelector('#detect-files').innerText.includes('bad')",
                           timeout=30_000)  # the bad file left the list after its one warning
    assert samples[0].stem not in page.locator("#detect-files").inner_text()

    page.locator("#detect-button").click()
    page.wait_for_function("() => !document.querySelector('#detect-message').innerText.includes('bad.png')",
                           timeout=60_000)
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=30_000)
    assert "bad.png" not in page.locator("#detect-message").inner_text()
    assert page.locator("#number-read .number-file").first.inner_text() == samples[1].name


def _clipped_columns(page, selector: str) -> list[str]:
    """Header cells that end beyond the table's visible box."""
    right = page.locator(selector).bounding_box()
    cells = page.locator(f"{selector} thead th")
    clipped = []
    for i in range(cells.count()):
        box = cells.nth(i).bounding_box()
        if box and box["x"] + box["width"] > right["x"] + right["width"] + 1:
            clipped.append(cells.nth(i).inner_text().strip())
    return clipped


def test_tables_show_every_column_and_the_image_id_starts_empty(running_app: RunningApp, page) -> None:  # noqa: F811
    page.locator("#samples img").first.click()
    page.locator('#detect-table [data-testid="cell-0-0"]').wait_for(timeout=60_000)
    assert _clipped_columns(page, "#detect-table") == []

    page.get_by_role("tab", name="Validation & failures").click()
    assert page.locator("#inspect-id textarea, #inspect-id input").first.input_value() == ""  # not a made-up 0

    page.get_by_role("tab", name="Annotation review").click()
    assert page.get_by_role("slider", name="Minimum suspicion score for a suggestion").input_value() == \
        str(DEFAULT_MIN_SCORE)
    page.get_by_role("slider", name="Minimum suspicion score for a suggestion").fill("0.5")  # 5 images: 0.8 at most
    page.locator("#review-find").click()
    page.locator('#review-list [data-testid="cell-0-1"]').wait_for(timeout=60_000)
    assert _clipped_columns(page, "#review-list") == []  # before: 'decided at' was cut off


def test_a_confusion_cell_click_filters_the_gallery_and_tide_is_drawn(running_app: RunningApp, page) -> None:  # noqa: F811
    """Click a cell of the confusion matrix: the gallery shows that cell's images; TIDE's chart and the F1 curves
    are drawn beside it."""
    from studio.failures import cell_label
    from studio.validation import ValidationViews

    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Validation & failures").click()
    page.locator("#validation-metrics table").wait_for(timeout=60_000)
    page.locator("#tide-plot img").wait_for(timeout=60_000)
    page.locator("#f1-curves img").wait_for(timeout=60_000)
    report = ValidationViews(running_app.studio).report(running_app.studio.default_thresholds())
    counted = [(r, c) for r in range(len(report.confusion)) for c in range(len(report.confusion)) if report.confusion[r, c]]
    row, column = sorted(counted, key=lambda c: (c[0] == c[1], c))[0]  # an error cell when there is one
    expected = report.select(cell=(row, column))
    assert expected
    page.locator(f'#confusion [data-testid="cell-{row}-{column + 1}"]').click()  # column 0 names the true digit
    text = f"{cell_label(row)},{cell_label(column)}"
    page.wait_for_function("(t) => [...document.querySelectorAll('#confusion-cell textarea, #confusion-cell input')]"
                           ".some(e => e.value === t)", arg=text, timeout=30_000)
    page.get_by_text(f"Confusion cell true {cell_label(row)} → predicted {cell_label(column)}: "
                     f"{len(expected)} image(s)").wait_for(timeout=30_000)
    page.wait_for_function("(n) => document.querySelectorAll('#failure-gallery img').length === n",
                           arg=min(len(expected), 60), timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('#failure-gallery img')].every(i => i.complete && "
                           "i.naturalWidth > 0)", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_error_analysis.png"), full_page=True)
    page.locator("#clear-cell").click()
    page.wait_for_function("() => ![...document.querySelectorAll('#gallery-note')].some(e => "
                           "e.innerText.includes('Confusion cell'))", timeout=30_000)
    # TIDE follows the score slider (released at 0.95)
    assert "score ≥ 0.95" not in page.locator("#tide-note").inner_text()
    page.locator("#score-threshold input[type=range]").fill("0.95")
    page.locator("#score-threshold input[type=range]").dispatch_event("pointerup")
    page.wait_for_function("() => document.querySelector('#tide-note').innerText.includes('score ≥ 0.95')",
                           timeout=60_000)
