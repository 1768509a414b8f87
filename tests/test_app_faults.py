"""What a probe of the app found (issue 11), each pinned by a test that failed before its fix: memory per request
and per process, a review log with invalid records, files and caches that grew for ever, and what a new user
tripped over (piled-up uploads, NMS near 1, an empty review list, a different mAP than the CLI, clipped labels,
a slow --help)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from detector.detections import Detections
from detector.hw2 import load_split
from detector.images import load_rgb
from detector.matching import AnnotationSuspect
from detector.thresholds import Thresholds
from studio.detect import run_detect
from studio.review import DEFAULT_MIN_SCORE, ReviewStore, make_suggestions
from studio.session import Studio
from studio.uploads import MAX_REQUEST_PIXELS, MAX_SIDE, load_bounded, plan_uploads
from tests.test_app import RunningApp, _rows, running_app  # noqa: F401  (the module-scoped app fixture)

gradio_client = pytest.importorskip("gradio_client")
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]
REPO = Path(__file__).resolve().parent.parent
BIG = (6300, 6300)  # the probe's size: 39.7 Mpx, just under detector.images.MAX_IMAGE_PIXELS


def _big_image(path: Path, mark: int, size: tuple[int, int] = BIG, **save) -> Path:
    """A house number drawn large (three dark 'digits'), distinct per `mark` so no two files are equal."""
    image = Image.new("RGB", size, (200, 190, 180 - mark % 50))
    draw = ImageDraw.Draw(image)
    w, h = size
    for i in range(3):
        draw.rectangle([w // 6 + i * w // 4, h // 4, w // 6 + i * w // 4 + w // 7, 3 * h // 4], fill=(20, 20, 20))
    draw.rectangle([mark, 0, mark + 10, 10], fill=(mark % 255, 0, 0))
    image.save(path, **save)
    return path


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: the peak RSS (VmHWM) starts again from the current RSS


# ----------------------------------------------------------------------------------------------- 1. memory
def test_a_big_upload_is_downscaled_at_decode_and_reported_in_its_own_pixels(tiny_checkpoint: Path,
                                                                             tmp_path: Path) -> None:
    studio = Studio(tiny_checkpoint, tmp_path / "no-data", device="cpu")
    png = _big_image(tmp_path / "big.png", 1, size=(4200, 3000), compress_level=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera held sideways: displayed 2000 wide, 3000 tall
    jpeg = _big_image(tmp_path / "sideways.jpg", 2, size=(3000, 2000), quality=85, exif=exif.tobytes())

    upload = load_bounded(jpeg)
    assert max(upload.image.size) == MAX_SIDE and upload.original_size == (2000, 3000)
    assert upload.image.width < upload.image.height  # the EXIF turn is applied

    th = Thresholds(0.0, 0.5, 0.5, False)
    outcome = run_detect(studio, [png, jpeg], th)
    assert [r.name for r in outcome.results] == ["big.png", "sideways.jpg"] and not outcome.problems
    assert any(n.startswith("big.png: 4200x3000 px, detected on a 2048x1463 copy") for n in outcome.notes)
    small = load_bounded(png).image
    expected = th.final(studio.candidates_for(small))
    got = outcome.results[0].final
    assert len(got) == len(expected) > 0
    factor = torch.tensor([4200 / small.width, 3000 / small.height] * 2)
    torch.testing.assert_close(got.boxes, expected.boxes * factor)  # table and JSON: the file's pixels
    rows = [row for row in outcome.table() if row[0] == "big.png"]
    assert max(row[6] for row in rows) > MAX_SIDE and all(row[6] <= 4200.1 for row in rows)


def test_a_request_reads_a_bounded_number_of_files_and_pixels_and_says_which_it_left(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    for i, path in enumerate(paths):
        Image.new("RGB", (100, 100), (i, i, i)).save(path)
    by_pixels = plan_uploads(paths, max_images=48, max_pixels=25_000)
    assert by_pixels.paths == [str(p) for p in paths[:2]]
    assert by_pixels.problems == ["3 file(s) not processed, from 2.png on: one Detect reads at most 0.025 Mpx "
                                  "(0.0 Mpx read so far); detect them in another request"]
    by_count = plan_uploads(paths, max_images=4)
    assert len(by_count.paths) == 4 and "1 file(s) not processed, from 4.png on: one Detect reads at most 4 images" \
        in by_count.problems[0]
    defaults = plan_uploads([paths[0]] * 60)  # the same file 60 times: read once, no limit reached
    assert defaults.paths == [str(paths[0])] and not defaults.problems and len(defaults.notes) == 59
    assert MAX_REQUEST_PIXELS // (BIG[0] * BIG[1]) == 4  # the probe's 48 files of 6300x6300: 4 are read


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-RSS reset")
def test_two_big_requests_at_once_stay_within_a_bounded_memory_peak(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The probe: 48 images of 6300x6300 in one Detect took the app to 9.9 GB. Two requests at once (three such
    files each) must now peak well below what holding their decoded images takes (Pillow: 4 bytes a pixel),
    and hand that memory back afterwards."""
    studio = Studio(tiny_checkpoint, tmp_path / "no-data", device="cpu")
    requests = [[_big_image(tmp_path / f"{r}-{i}.{'png' if i == 0 else 'jpg'}", 10 * r + i,
                            **({"compress_level": 1} if i == 0 else {"quality": 80})) for i in range(3)]
                for r in range(2)]
    run_detect(studio, [requests[0][1]], Thresholds())  # warm the model up outside the measurement
    held_if_decoded = sum(len(r) for r in requests) * BIG[0] * BIG[1] * 4 / 2**20
    errors: list[BaseException] = []

    def detect(paths: list[Path]) -> None:
        try:
            assert len(run_detect(studio, paths, Thresholds()).results) == len(paths)
        except BaseException as err:  # noqa: BLE001  (re-raised below, in the test's thread)
            errors.append(err)

    before = _rss_mb()
    _reset_peak()
    threads = [threading.Thread(target=detect, args=(paths,)) for paths in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    growth, kept = _peak_mb() - before, _rss_mb() - before
    assert not errors, errors
    assert growth < 0.6 * held_if_decoded, f"peak grew {growth:.0f} MB (decoded images: {held_if_decoded:.0f} MB)"
    assert kept < 0.15 * held_if_decoded, f"{kept:.0f} MB still held after the requests"


# ----------------------------------------------------------------------------------------------- 2. review log
def _store_with_decisions(root: Path):
    records = load_split(root, "valid").records
    r0, r1 = records[0], records[1]
    suspects = [
        AnnotationSuspect(r0.image_id, "swapped_class", 0, tuple(r0.boxes[0]), int(r0.category_ids[0]) % 10 + 1,
                          0.97),
        AnnotationSuspect(r1.image_id, "badly_located", 0, tuple(r1.boxes[0]), int(r1.category_ids[0]), 0.95),
    ]
    relabel, refit = make_suggestions(suspects, records)
    store = ReviewStore.beside(root / "valid.json")
    return store, records, relabel, refit


def test_invalid_review_records_are_skipped_counted_and_never_block_the_export(tiny_hw2: Path) -> None:
    store, records, relabel, refit = _store_with_decisions(tiny_hw2)
    store.record(relabel, "accept")
    good = json.loads(store.path.read_text().splitlines()[-1])
    bad = [
        {**good, "suggestion_id": "x1", "image_id": records[2].image_id, "decision": "edit",
         "changes": {"box": "abc", "category_id": 3}},
        {**good, "suggestion_id": "x2", "decision": "edit", "changes": {"box": [1, 2], "category_id": 3}},
        {**good, "suggestion_id": "x3", "decision": "accept", "changes": {"category_id": 99}},
        {**good, "suggestion_id": "x4", "decision": "delete", "gt_index": -1, "changes": {"delete": True}},
        {**good, "suggestion_id": "x5", "decision": "maybe"},
        {**good, "suggestion_id": "x6", "image_id": 999, "changes": {"category_id": 2}},  # not in the data
        {**good, "suggestion_id": "x7", "decision": "edit", "gt_index": 0,
         "changes": {"box": [0, 0, 5000, 10], "category_id": 2}},  # outside the image
    ]
    with store.path.open("a") as f:
        for record in bad:
            f.write(json.dumps(record) + "\n")
    store.record(refit, "edit", box="1, 2, 9, 20", category_id=4, image_size=(records[1].width, records[1].height))

    out = store.export(records)  # before: ValueError on the box "abc", for every reviewer
    exported = json.loads(out.read_text())
    assert {a["category_id"] for a in exported["annotations"]} <= set(range(1, 11))
    by_image = {r.image_id: [a for a in exported["annotations"] if a["image_id"] == r.image_id] for r in records}
    assert by_image[records[0].image_id][0]["category_id"] == relabel.category_id  # good decisions still apply
    assert by_image[records[1].image_id][0]["bbox"] == [1, 2, 8, 18] and by_image[records[1].image_id][0][
        "category_id"] == 4
    assert len(store.misfits(records)) == 2 and store.skipped_lines == 5
    summary = store.skipped(records)
    assert "7 invalid review record(s) skipped" in summary and "line 2: box 'abc'" in summary


def test_a_delete_decision_removes_the_box_from_the_corrected_export(tiny_hw2: Path) -> None:
    store, records, relabel, refit = _store_with_decisions(tiny_hw2)
    target = records[1]
    store.record(refit, "delete")
    store.record(relabel, "reject")
    exported = json.loads(store.export(records).read_text())
    kept = [a for a in exported["annotations"] if a["image_id"] == target.image_id]
    assert len(kept) == len(target.boxes) - 1
    deleted = [round(float(v), 3) for v in (*target.boxes[0][:2], *(target.boxes[0][2:] - target.boxes[0][:2]))]
    assert deleted not in [a["bbox"] for a in kept]
    others = [a for a in exported["annotations"] if a["image_id"] != target.image_id]
    assert len(others) == sum(len(r.boxes) for r in records if r.image_id != target.image_id)


def test_the_review_tab_shows_how_many_records_were_skipped(running_app: RunningApp) -> None:  # noqa: F811
    client = gradio_client.Client(running_app.url, verbose=False)
    rows, _ = client.predict(0.5, api_name="/review_list")
    first = _rows(rows)[0][1]
    client.predict(suggestion_id=first, decision="reject", author="t", api_name="/review_decide")
    log = running_app.data / "valid.review.jsonl"
    line = json.loads(log.read_text().splitlines()[-1])
    with log.open("a") as f:
        f.write(json.dumps({**line, "suggestion_id": "bad", "decision": "edit",
                            "changes": {"box": "abc", "category_id": 99}}) + "\n")
    try:
        _, summary = client.predict(0.5, api_name="/review_list")
        assert "1 invalid review record(s) skipped" in summary
        path, status = client.predict(api_name="/review_export")
        assert Path(path).is_file() and "1 invalid review record(s) skipped" in status
    finally:
        log.write_text("".join(x + "\n" for x in log.read_text().splitlines() if '"bad"' not in x))


# ----------------------------------------------------------------------------------------------- 3. files, caches
def _noise_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i + 1}.png")
        Image.fromarray(rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_detect_calls_leave_a_bounded_number_of_files(running_app: RunningApp, tmp_path: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.tempfiles import TEMP

    monkeypatch.setattr(TEMP, "keep", 3)  # the bound (32 files) at a size that takes a few calls to pass
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("studio-detect-*"))
    client = gradio_client.Client(running_app.url, verbose=False)
    for path in _noise_images(tmp_path / "calls", TEMP.keep + 4):
        *_, download, _, _ = client.predict([gradio_client.handle_file(str(path))], 0.0, 0.5, 0.5, False,
                                            api_name="/detect")
        assert download and json.loads(Path(download).read_text())
    assert set(tmp.glob("studio-detect-*")) == before  # before: one new folder per call, never removed
    assert 0 < len(TEMP.files()) <= TEMP.keep


def test_every_cache_stays_within_its_bounds(tiny_checkpoint: Path, tiny_hw2: Path, tmp_path: Path) -> None:
    from studio import cache
    from studio.lru import BoundedLRU
    from studio.review_views import SUGGESTION_LISTS_KEPT, ReviewViews
    from studio.session import UPLOAD_CACHE_BYTES, UPLOAD_CACHE_SIZE
    from studio.validation import REPORTS_KEPT, ValidationViews

    lru = BoundedLRU(3, 100, len)
    for key in "abcd":
        lru.put(key, "x" * 30)
    assert len(lru) == 3 and lru.get("a") is None and lru.nbytes == 90
    lru.put("e", "x" * 60)  # the bytes bound binds before the count
    assert list(k for k in "cde" if k in lru) == ["d", "e"] and lru.nbytes == 90
    lru.put("huge", "x" * 500)
    assert "huge" not in lru and lru.nbytes <= 100

    studio = Studio(tiny_checkpoint, tiny_hw2, device="cpu")
    for path in _noise_images(tmp_path / "uploads", UPLOAD_CACHE_SIZE + 6):
        studio.candidates_for(load_rgb(path))
    assert len(studio.uploads) == UPLOAD_CACHE_SIZE and studio.uploads.nbytes <= UPLOAD_CACHE_BYTES

    views = ValidationViews(studio)
    for score in np.linspace(0.0, 0.9, REPORTS_KEPT + 3):
        views.report(Thresholds(float(score), 0.5, 0.5, False))
    assert len(views.reports) == REPORTS_KEPT
    review = ReviewViews(studio)
    for min_score in np.linspace(0.3, 0.95, SUGGESTION_LISTS_KEPT + 4):
        review.suggestions(float(min_score))
    assert len(review.lists) == SUGGESTION_LISTS_KEPT

    for i in range(cache.CACHE_FILES_KEPT + 3):  # one candidate file per checkpoint/data version, oldest go
        cache.save_candidates(tmp_path / "disk" / f"m.{i}.safetensors", {1: Detections.empty()})
        time.sleep(0.01)
    kept = sorted(p.name for p in (tmp_path / "disk").glob("*.safetensors"))
    assert len(kept) == cache.CACHE_FILES_KEPT and "m.0.safetensors" not in kept


# ----------------------------------------------------------------------------------------------- 4. new users
def test_repeated_files_are_read_once_and_nms_near_one_is_explained(tiny_checkpoint: Path, tiny_hw2: Path,
                                                                    tmp_path: Path) -> None:
    studio = Studio(tiny_checkpoint, tiny_hw2, device="cpu")
    one = tiny_hw2 / "valid" / "1.png"
    again = tmp_path / "copy of 1.png"
    again.write_bytes(one.read_bytes())
    outcome = run_detect(studio, [one, again, tiny_hw2 / "valid" / "2.png"], Thresholds(0.5, 0.5, 0.7, False))
    assert [r.name for r in outcome.results] == ["1.png", "2.png"]
    assert any("copy of 1.png is the same file as 1.png" in n for n in outcome.notes)
    assert not any("NMS" in n for n in outcome.notes)
    thin = tmp_path / "thin.png"
    Image.new("RGB", (3000, 2), "white").save(thin)  # fine as a file, too thin for the model's resize
    with_thin = run_detect(studio, [thin, one], Thresholds(0.5, 0.5, 0.7, False))
    assert [r.name for r in with_thin.results] == ["1.png"]
    assert len(with_thin.problems) == 1 and with_thin.problems[0].startswith("thin.png: ") \
        and "too thin" in with_thin.problems[0]
    near_one = run_detect(studio, [one], Thresholds(0.5, 0.95, 0.7, False))
    assert any("NMS IoU 0.95 keeps overlapping duplicate boxes" in n for n in near_one.notes)


def test_an_empty_review_list_says_why_and_what_to_change(running_app: RunningApp) -> None:  # noqa: F811
    client = gradio_client.Client(running_app.url, verbose=False)
    rows, summary = client.predict(1.0, api_name="/review_list")
    assert _rows(rows) == [] and "No suggestion" in summary
    assert f"lower the minimum score (e.g. to {DEFAULT_MIN_SCORE})" in summary
    config = json.loads(_get(running_app.url + "config"))
    slider = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "review-min-score")
    assert slider["props"]["value"] == DEFAULT_MIN_SCORE == 0.95
    image_id = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "inspect-id")
    assert image_id["props"].get("value") in (None, "")  # no made-up id 0 before anything is picked


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory: pytest.TempPathFactory):
    """The app as a user starts it: the shipped model, validation set and samples."""
    import app
    from detector.checkpoint import DEFAULT_CHECKPOINT
    from studio.paths import DEFAULT_DATA

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"the shipped checkpoint {DEFAULT_CHECKPOINT} is not installed")
    studio = Studio(DEFAULT_CHECKPOINT, DEFAULT_DATA, device="cpu", disk_cache=False)
    demo = app.build_demo(studio)
    app.launch(demo, studio, port=None, prevent_thread_lock=True, quiet=True)
    yield studio, demo
    demo.close()


def test_uploaded_samples_give_the_candidates_of_the_python_api(shipped_app) -> None:
    studio, demo = shipped_app
    client = gradio_client.Client(demo.local_url, verbose=False)
    th = studio.default_thresholds()
    samples = studio.samples()
    assert samples
    for sample in samples:
        _, html, table, _, _, _ = client.predict([gradio_client.handle_file(str(sample))], th.score, th.nms_iou,
                                                 th.number_score, th.class_agnostic, api_name="/detect")
        api = th.final(studio.predictor.candidates([load_rgb(sample)], batch_size=1)[0])
        rows = _rows(table)
        assert [row[2:8] for row in rows] == [
            [int(label) - 1, round(float(score), 3), *(round(float(v), 1) for v in box)]
            for box, score, label in zip(api.boxes, api.scores, api.labels, strict=False)], sample.name
        assert f'data-number="{th.number(api).text}"' in html, sample.name


def test_the_app_reports_the_mAP_that_python_m_detector_evaluate_reports(shipped_app) -> None:
    from detector.scoring import score_split
    from studio.validation import ValidationViews

    studio, demo = shipped_app
    th = studio.default_thresholds()
    cli = score_split(studio.predictor, studio.split, progress=False)  # what `python -m detector evaluate` prints
    app_report = ValidationViews(studio).report(th).headline()
    assert app_report["mAP"] == pytest.approx(cli.metrics["AP"], abs=1e-9)
    assert app_report["AP50"] == pytest.approx(cli.metrics["AP50"], abs=1e-9)
    assert app_report["number_accuracy"] == pytest.approx(cli.number_accuracy, abs=1e-9)
    metrics, *_ = gradio_client.Client(demo.local_url, verbose=False).predict(
        "any error", "any", th.score, th.nms_iou, th.number_score, th.class_agnostic, api_name="/evaluate")
    assert f"**{cli.metrics['AP']:.3f}** | **{cli.metrics['AP50']:.3f}**" in metrics


def test_labels_stay_inside_the_picture_and_clear_of_each_other() -> None:
    from studio.drawing import place_label

    canvas = (400, 200)
    boxes = [[10, 0, 40, 200], [42, 0, 72, 200], [74, 0, 104, 200], [360, 150, 400, 200]]  # full-height digits
    placed: list = []
    for box in boxes:
        placed.append(place_label(box, (60, 24), canvas, placed))
    for i, (x1, y1, x2, y2) in enumerate(placed):
        assert 0 <= x1 and x2 <= canvas[0] and 0 <= y1 and y2 <= canvas[1], placed[i]
        for other in placed[i + 1:]:
            assert min(x2, other[2]) <= max(x1, other[0]) or min(y2, other[3]) <= max(y1, other[1]), (placed[i], other)


def test_every_box_has_a_dark_and_a_light_edge_so_no_colour_vanishes() -> None:
    from studio.drawing import DIGIT_COLOURS, KIND_COLOURS, draw_boxes

    def luminance(px) -> float:
        return 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]

    for colour in (*DIGIT_COLOURS, *KIND_COLOURS.values()):
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        for dashed in (False, True):
            drawn = draw_boxes(Image.new("RGB", (100, 50), rgb), np.array([[20, 10, 60, 40]]), [colour], [""],
                               dashed=[dashed], scale=4.0)
            row = [drawn.getpixel((x, 97)) for x in range(60, 100)]  # across the left edge (x = 80), on a dash
            assert min(map(luminance, row)) < 40 and max(map(luminance, row)) > 215, (colour, dashed)


def test_app_help_does_not_import_gradio_or_torch() -> None:
    code = ("import sys, app; app.parse_args(['--port', '7000']); "
            "print(sorted(m for m in ('gradio', 'torch', 'studio.session') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    start = time.perf_counter()
    helped = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--checkpoint" in helped.stdout
    assert time.perf_counter() - start < 5.0  # before: ~11 s, importing gradio and torch

    import app
    from detector.checkpoint import DEFAULT_CHECKPOINT

    assert REPO / app.SHIPPED_CHECKPOINT == DEFAULT_CHECKPOINT  # the help text names the real default
    assert app.SHIPPED_CHECKPOINT in helped.stdout
