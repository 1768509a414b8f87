"""The app in a real (headless) browser: the page renders, clicking a sample draws boxes and shows the
number, the validation tab fills in. Screenshots go to tests/artifacts/ for a person to look at."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from detector.images import load_rgb
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
    page.get_by_role("slider", name="Minimum model score for a suggestion").fill("0.5")
    page.locator("#review-find").click()
    first_cell = page.locator('#review-list [data-testid="cell-0-1"]')  # row 0, the suggestion id column
    first_cell.wait_for(timeout=60_000)
    first_cell.click()  # selecting a row shows that suggestion
    page.locator("#review-image img").wait_for(timeout=30_000)
    suggestion = page.locator("#review-current textarea, #review-current input").first.input_value()
    assert suggestion.count(":") == 2
    page.locator("#review-accept").click()
    page.get_by_text("accept recorded").wait_for(timeout=30_000)
    current = page.locator("#review-current textarea, #review-current input").first
    page.wait_for_function("([el, old]) => el.value && el.value !== old", arg=[current.element_handle(), suggestion],
                           timeout=30_000)  # moved on to the next undecided suggestion
    following = current.input_value()
    page.locator("#review-box textarea, #review-box input").first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=30_000)
    assert following != suggestion
    page.screenshot(path=str(ARTIFACTS / "app_review.png"), full_page=True)
    log = running_app.studio.annotation_file.with_name("valid.review.jsonl").read_text().splitlines()
    decision = json.loads(log[-1])
    assert (decision["suggestion_id"], decision["decision"]) == (suggestion, "accept")
    assert decision["author"].startswith("browser:")


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
    assert page.get_by_role("slider", name="Minimum model score for a suggestion").input_value() == "0.5"
    page.locator("#review-find").click()
    page.locator('#review-list [data-testid="cell-0-1"]').wait_for(timeout=60_000)
    assert _clipped_columns(page, "#review-list") == []  # before: 'decided at' was cut off
