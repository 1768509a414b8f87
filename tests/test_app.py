"""The running app, driven over HTTP with gradio_client: detect + instant re-filtering, bad uploads, the
validation views, the threshold sweep saved into the checkpoint, annotation review from two sessions, and
the CLI starting (and explaining itself) without a model."""
from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from detector.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from detector.hw2 import load_annotation_file
from detector.models import build_model, get_preset
from detector.results_io import validate_pred_json
from detector.thresholds import Thresholds
from studio.session import Studio
from tests.conftest import write_tiny_hw2

gradio_client = pytest.importorskip("gradio_client")
# gradio's own use of pandas, not ours
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]


@dataclass
class RunningApp:
    studio: Studio
    url: str
    root: Path
    data: Path
    checkpoint: Path
    samples: Path


def confident_checkpoint(path: Path) -> Path:
    """Untrained weights whose classifier is biased towards one digit, so that scores reach 0.9+: real
    files and code paths (and some annotation-review suggestions) without training anything."""
    torch.manual_seed(0)
    config = get_preset("resnet18").replace(min_size=64, max_size=128)
    state = build_model(config).state_dict()
    state["roi_heads.box_predictor.cls_score.bias"][5] = 5.0
    meta = CheckpointMeta(config=config, thresholds=Thresholds(score=0.5, nms_iou=0.5, number_score=0.9))
    return save_checkpoint(path, state, meta)


def start_app(root: Path) -> tuple[RunningApp, object]:
    import app

    data = write_tiny_hw2(root / "DATA", n_train=4, n_valid=5, n_test=0)
    samples = root / "samples"
    samples.mkdir()
    for i in (1, 2):
        shutil.copy(data / "valid" / f"{i}.png", samples / f"sample_{i}.png")
    checkpoint = confident_checkpoint(root / "model.safetensors")
    studio = Studio(checkpoint, data, device="cpu", samples_dir=samples)
    demo = app.build_demo(studio)
    app.launch(demo, studio, port=None, prevent_thread_lock=True, quiet=True)
    return RunningApp(studio, demo.local_url, root, data, checkpoint, samples), demo


@pytest.fixture(scope="module")
def running_app(tmp_path_factory: pytest.TempPathFactory):
    running, demo = start_app(tmp_path_factory.mktemp("app"))
    yield running
    demo.close()


@pytest.fixture
def client(running_app: RunningApp):
    return gradio_client.Client(running_app.url, verbose=False)


def _rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def _value(output):
    """An output the handler returned as a component update arrives as {'__type__': 'update', 'value': ...}."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def _detect(client, path: Path, th: Thresholds):
    return client.predict(files=[gradio_client.handle_file(str(path))], score=th.score, nms_iou=th.nms_iou,
                          number_score=th.number_score, class_agnostic=th.class_agnostic, api_name="/detect")


def test_detect_draws_reads_and_sliders_refilter_without_the_model(running_app: RunningApp, client) -> None:
    image_path = running_app.data / "valid" / "1.png"
    th = Thresholds(score=0.5, nms_iou=0.5, number_score=0.9, class_agnostic=False)
    gallery, number_html, table, json_path, message, kept = _detect(client, image_path, th)
    runs = running_app.studio.model_runs
    rows = _rows(table)
    assert rows and all(r[3] >= 0.5 for r in rows) and message == "" and len(kept) == 1
    assert len(gallery) == 1 and Image.open(gallery[0]["image"]).height >= 300  # drawn, scaled for reading

    # what the app shows must be what the detector modules compute from the same candidates
    expected = running_app.studio.candidates_for(Image.open(image_path).convert("RGB"))
    final = th.final(expected)
    assert len(rows) == len(final)
    assert f'data-number="{th.number(final).text}"' in number_html
    results = json.loads(Path(json_path).read_text())
    validate_pred_json(results, image_ids=[1])
    assert len(results) == len(final)

    for moved in (Thresholds(0.93, 0.5, 0.9, False), Thresholds(0.5, 0.2, 0.9, True), Thresholds(0.5, 1.0, 0.95, False)):
        _, html, table, _, _, _ = _detect(client, image_path, moved)
        assert len(_rows(table)) == len(moved.final(expected))
        assert f'data-number="{moved.number(moved.final(expected)).text}"' in html
    assert running_app.studio.model_runs == runs  # every slider move re-filtered cached candidates


def test_bad_uploads_get_a_message_and_the_app_keeps_working(running_app: RunningApp, client, tmp_path: Path) -> None:
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    good = running_app.data / "valid" / "2.png"
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:60])
    files = [gradio_client.handle_file(str(p)) for p in (text, cut)]
    gallery, _, table, download, message, kept = client.predict(files, 0.5, 0.5, 0.9, False, api_name="/detect")
    assert gallery == [] and _rows(table) == [] and download is None
    assert "readme.txt" in message and "not an image" in message and "cut.png" in message
    assert not kept  # reported once, then gone from the file list
    gallery, *_ = _detect(client, good, Thresholds(0.5, 0.5, 0.9, False))
    assert len(gallery) == 1


def test_validation_views_recompute_from_cached_predictions(running_app: RunningApp, client) -> None:
    studio = running_app.studio
    metrics, per_class, confusion, pr, gallery, note, message = client.predict(
        "any error", "any", 0.5, 0.5, 0.9, False, api_name="/evaluate")
    assert "mAP" in metrics and "number accuracy" in metrics and message == ""
    assert [r[0] for r in _rows(per_class)] == [str(d) for d in range(10)]
    gallery = _value(gallery)
    assert confusion and pr and gallery and "match" in note
    runs = studio.model_runs
    assert runs >= len(studio.records) or studio.validation().source != "model"

    first_id = int(gallery[0]["caption"].split()[0].lstrip("#"))
    pred_img, gt_img, summary, table = client.predict(first_id, 0.5, 0.5, 0.9, False, api_name="/inspect")
    assert Path(pred_img).is_file() and Path(gt_img).is_file()
    assert f"Image {first_id}" in summary and "vs true" in summary
    record = studio.record(first_id)
    assert f"**{record.number}**" in summary  # the true number from the annotations
    assert any(r[2] == "missed (ground truth)" for r in _rows(table)) or "missed" not in summary

    metrics2, *_ = client.predict("background", "any", 0.8, 0.3, 0.95, True, api_name="/refresh_validation")
    assert "score ≥ 0.80" in metrics2 and "class-agnostic" in metrics2
    assert studio.model_runs == runs  # thresholds moved, the model did not run


def test_sweep_finds_and_saves_thresholds_into_the_checkpoint(running_app: RunningApp, client) -> None:
    plot, note, = client.predict(0.5, 0.5, 0.9, False, api_name="/sweep")
    assert plot and "Best number accuracy" in note
    score, nms_iou, number_score, agnostic, saved = client.predict(api_name="/save_thresholds")
    assert "Saved" in saved
    meta = read_meta(running_app.checkpoint)
    assert meta.thresholds.to_dict() == {"score": score, "nms_iou": nms_iou, "number_score": number_score,
                               "class_agnostic": agnostic}
    assert meta.metrics["validation_sweep"]["images"] == len(running_app.studio.records)
    assert running_app.studio.default_thresholds() == meta.thresholds


def test_annotation_review_from_two_sessions(running_app: RunningApp) -> None:
    alice = gradio_client.Client(running_app.url, verbose=False)
    bob = gradio_client.Client(running_app.url, verbose=False)
    rows, summary = alice.predict(0.5, api_name="/review_list")
    rows = _rows(rows)
    assert len(rows) >= 2 and "valid.review.jsonl" in summary
    first, second = rows[0][1], rows[1][1]
    editor, text, digit = bob.predict(first, 0.5, api_name="/review_show")
    assert Path(editor["image"]).is_file() and digit in "0123456789" and "proposed box" in text
    assert [b["label"] for b in editor["boxes"]] == [digit]  # the one box to edit, labelled with its digit

    kind = first.split(":")[1]
    accepted = "delete" if kind == "spurious_box" else "accept"  # accepting 'no digit here?' deletes the label
    assert f"{accepted} recorded" in alice.predict(suggestion_id=first, decision="accept", author="alice",
                                                   api_name="/review_decide")
    assert "reject recorded" in bob.predict(suggestion_id=second, decision="reject", author="bob",
                                            api_name="/review_decide")
    assert "outside" in bob.predict(first, "edit", "0, 0, 9999, 5", "3", api_name="/review_decide")

    decided = {r[1]: r[6] for r in _rows(alice.predict(0.5, api_name="/review_list")[0])}
    assert decided[first] == accepted and decided[second] == "reject"  # each sees the other's decision

    path, status = bob.predict(api_name="/review_export")
    exported = json.loads(Path(path).read_text())
    on_disk = running_app.data / "valid.corrected.json"
    assert json.loads(on_disk.read_text()) == exported and "unchanged" in status
    original = load_annotation_file(running_app.data / "valid.json", running_app.data / "valid")
    before = running_app.studio.record(int(first.split(":")[0]))
    changed = load_annotation_file(on_disk, running_app.data / "valid").by_id()[before.image_id]
    if kind == "missing_box":
        assert len(changed.boxes) == len(before.boxes) + 1
    elif kind == "spurious_box":
        assert len(changed.boxes) == len(before.boxes) - 1
    elif kind == "swapped_class":
        assert changed.category_ids.tolist() != before.category_ids.tolist()
    else:
        assert kind == "badly_located" and changed.boxes.round(2).tolist() != before.boxes.round(2).tolist()
    assert len(original.records) == len(exported["images"])
    log = (running_app.data / "valid.review.jsonl").read_text().splitlines()
    assert [(json.loads(line)["decision"], json.loads(line)["author"]) for line in log] == [(accepted, "alice"),
                                                                                           ("reject", "bob")]


def test_review_runs_on_the_train_split_too_with_its_own_log(running_app: RunningApp) -> None:
    client = gradio_client.Client(running_app.url, verbose=False)
    rows, summary = client.predict(0.5, "train", api_name="/review_list")
    rows = _rows(rows)
    train = load_annotation_file(running_app.data / "train.json", running_app.data / "train")
    assert rows and {r[2] for r in rows} <= {r.image_id for r in train.records}
    assert "in the train split" in summary and "train.review.jsonl" in summary
    first = rows[0][1]
    valid_log = running_app.data / "valid.review.jsonl"
    before = valid_log.read_text() if valid_log.exists() else ""
    assert "reject recorded" in client.predict(suggestion_id=first, decision="reject", author="t", split="train",
                                               api_name="/review_decide")
    log = (running_app.data / "train.review.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["suggestion_id"] == first
    assert (valid_log.read_text() if valid_log.exists() else "") == before  # never mixed with valid's log
    path, status = client.predict("train", api_name="/review_export")
    assert Path(path).name == "train.corrected.json" and "train.corrected.json" in status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_starts_without_a_model_and_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`python app.py --checkpoint ... --data ...` (its main() path, in-thread: a subprocess costs ~10 s more)."""
    import app

    (tmp_path / "empty").mkdir()
    port = _free_port()
    args = app.parse_args(["--checkpoint", str(tmp_path / "missing.safetensors"), "--data", str(tmp_path / "empty"),
                           "--port", str(port), "--device", "cpu"])
    demo = app.serve(args, prevent_thread_lock=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10) as response:
            config = response.read().decode()
        assert "missing.safetensors" in config and "--checkpoint" in config and "valid.json" in config
        rows, summary = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            0.9, api_name="/review_list")
        assert _rows(rows) == [] and "valid.json" in summary  # the app answers, with the reason
    finally:
        demo.close()
    assert "No model" in capsys.readouterr().out
