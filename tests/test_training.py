"""End-to-end training runs on tiny synthetic data (CPU, resnet18 at 64 px): the run folder, the checkpoint the
detector package loads, exact resume after a real Ctrl-C, the NaN guard, bad images, plots and compare.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint, read_meta, read_state_dict
from detector.coco_eval import STAT_NAMES, SWEEP_THRESHOLDS
from detector.predictor import Predictor
from detector.provenance import TrainingData
from training.__main__ import main
from training.synth import generate_dataset

ROOT = Path(__file__).resolve().parent.parent
# small and fast: ~0.5 s per step on this 2-core machine; multi-scale, so exact resume covers its random sizes
TINY = ["--preset", "resnet18", "min_size=64", "max_size=128", "box_batch_size_per_image=32",
        "rpn_batch_size_per_image=64", "batch=4", "workers=0", "progress=false", "train_sizes=48,80"]
CORRUPT = "3.png"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = generate_dataset(tmp_path_factory.mktemp("synth") / "data", {"train": 8, "valid": 4, "test": 0}, seed=0,
                           workers=1)
    image = out / "train" / CORRUPT
    image.write_bytes(image.read_bytes()[:60])  # a truncated PNG: must be reported and skipped, not fatal
    return out


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """A second validation set in held-out synthetic styles, evaluated every epoch via extra_val."""
    return generate_dataset(tmp_path_factory.mktemp("synth") / "heldout", {"train": 0, "valid": 3, "test": 0},
                            seed=5, styles="heldout", workers=1)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def run(data, heldout, project) -> Path:
    rc = main(["train", "--data", str(data), *TINY, "epochs=2", f"project={project}", "name=tiny",
               f"extra_val={heldout}"])
    assert rc == 0
    return project / "tiny"


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_has_config_metrics_log_and_weights(run):
    for name in ("config.json", "metrics.jsonl", "train.log", "threshold_sweep.json", "weights/last.safetensors",
                 "weights/last_state.pt", "weights/best.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 2 and config["batch"] == 4 and config["lr"] == 4e-4  # resnet18's preset lr
    assert config["model"] == {"min_size": 64, "max_size": 128, "box_batch_size_per_image": 32,
                               "rpn_batch_size_per_image": 64}
    assert config["train_sizes"] == [48, 80]  # training only: the checkpoint keeps min_size
    assert load_checkpoint(run / "weights" / "best.safetensors").model.transform.min_size == (64,)
    records = _metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["steps"] == 2 and r["images_per_s"] > 0 and r["lr"] > 0
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("loss", "loss_classifier", "loss_box_reg",
                                                                "loss_objectness", "loss_rpn_box_reg"))
        valid = r["valid"]
        assert set(STAT_NAMES) <= set(valid) and {f"{s}_at_val_score" for s in STAT_NAMES} <= set(valid)
        assert 0.0 <= valid["number_accuracy"] <= 1.0 and valid["images"] == 4
        assert -1.0 <= valid["AP"] <= 1.0
        assert r["extra"]["heldout"]["images"] == 3 and set(STAT_NAMES) <= set(r["extra"]["heldout"])
    assert records[0]["lr"] > records[1]["lr"]  # cosine schedule, stepped per epoch
    log = (run / "train.log").read_text()
    assert "epoch 2/2" in log and "done: best valid mAP" in log and "heldout mAP" in log


def test_bad_image_is_reported_once_by_name_and_skipped(run):
    log = (run / "train.log").read_text()
    lines = [line for line in log.splitlines() if "skipping unreadable image" in line]
    assert len(lines) == 1, lines  # two epochs met it; reported once
    assert f"train/{CORRUPT}" in lines[0]


def test_best_checkpoint_loads_in_detector_and_predicts(run, data):
    best = run / "weights" / "best.safetensors"
    predictor = Predictor.from_checkpoint(best, device="cpu")
    meta = predictor.meta
    assert meta.config.preset == "resnet18" and meta.config.min_size == 64
    assert meta.thresholds.number_score in SWEEP_THRESHOLDS
    assert meta.thresholds.score == meta.thresholds.number_score
    assert meta.training["counts"] == {"train": 8, "valid": 4, "heldout": 3}
    assert meta.training["synth"]["seed"] == 0  # synth_meta.json's generator settings travel with the weights
    assert Path(meta.training["data"]) == data.resolve() and "train" in meta.training["command"]
    assert [p["threshold"] for p in meta.metrics["threshold_sweep"]] == list(SWEEP_THRESHOLDS)
    # the images it learned from are recorded by content: a review of its train split is flagged as unfair
    seen = TrainingData.from_meta(meta.training)
    train_images = sorted((data / "train").glob("*.png"))
    assert [(o.used_as, o.shared, o.basis) for o in seen.overlaps(data, "train", train_images)] == [
        ("train", len(train_images), "images")]
    calibration = meta.metrics["calibration"]  # detector.calibration's summary: 4 images, too few for per-digit ones
    assert calibration["images"] == 4 and calibration["thresholds"] == meta.thresholds.to_dict()
    assert calibration["number_accuracy"] == meta.metrics["number_accuracy_calibrated"]
    candidates = predictor.candidates([data / "valid" / "1.png"])
    assert len(candidates) == 1 and candidates[0].boxes.shape[1] == 4
    best_epoch = max(_metrics(run), key=lambda r: r["valid"]["AP"])["epoch"]
    assert meta.training["epoch"] == best_epoch
    assert load_checkpoint(run / "weights" / "last.safetensors").meta.training["epoch"] == 2


def test_last_state_is_tensor_only(run):
    state = torch.load(run / "weights" / "last_state.pt", map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "best_map", "state_id"} <= set(state)
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 2
    assert state["state_id"] == read_meta(run / "weights" / "last.safetensors").training["state_id"]


def test_plots_are_written(run):
    for name in ("loss.png", "map.png", "ap_ar.png", "ap_ar_heldout.png", "threshold_sweep.png"):
        path = run / "plots" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000, name


@pytest.fixture(scope="module")
def interrupted(data, heldout, project) -> tuple[Path, subprocess.CompletedProcess]:
    """A real run (own process) Ctrl-C'd as soon as its first epoch's checkpoint exists."""
    run_dir = project / "interrupted"
    command = [sys.executable, "-m", "training", "train", "--data", str(data), *TINY, "epochs=2",
               f"project={project}", "name=interrupted", f"extra_val={heldout}", "plots=false"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = run_dir / "weights" / "last_state.pt"
    deadline = time.monotonic() + 900  # generous: a loaded 2-core machine
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=900)
    return run_dir, subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_ctrl_c_saves_last_and_exits_cleanly(interrupted):
    run_dir, result = interrupted
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Resume with: python -m training train resume=" in result.stderr
    assert "Traceback" not in result.stderr
    state = torch.load(run_dir / "weights" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1  # stopped inside (or right after) epoch 2, before finishing it
    assert state["state_id"] == read_meta(run_dir / "weights" / "last.safetensors").training["state_id"]
    assert [r["epoch"] for r in _metrics(run_dir)] == [1]


def test_resume_continues_exactly_where_ctrl_c_stopped(interrupted, run):
    run_dir, _ = interrupted
    assert main(["train", f"resume={run_dir}", "progress=false"]) == 0
    assert [r["epoch"] for r in _metrics(run_dir)] == [1, 2]  # each epoch once, in order
    resumed, _ = read_state_dict(run_dir / "weights" / "last.safetensors")
    reference, _ = read_state_dict(run / "weights" / "last.safetensors")
    assert resumed.keys() == reference.keys()
    # same model, optimizer, scheduler, RNG and data order: the uninterrupted run's weights, bit for bit
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    # the epoch the interrupt cut in two reports the same mean losses as the uninterrupted run
    assert _metrics(run_dir)[1]["loss"] == pytest.approx(_metrics(run)[1]["loss"])
    assert "resumed" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "config.json").read_text()) == json.loads((run / "config.json").read_text()) | {
        "name": "interrupted", "plots": False}


def test_resume_refuses_to_change_the_recipe(run):
    assert main(["train", f"resume={run}", "lr=1e-3"]) == 2


def test_nan_loss_stops_with_message_and_keeps_good_checkpoints(data, project, caplog):
    # lr=1e10: the first step is finite but wrecks the weights, so epoch 2's first loss is NaN
    args = ["train", "--data", str(data), *TINY, "batch=16", "lr=1e10", "warmup_iters=0", "epochs=3",
            f"project={project}", "name=nan", "plots=false", "cache=true"]
    assert main(args) == 3
    run_dir = project / "nan"
    log = (run_dir / "train.log").read_text()
    assert "loss is not finite at epoch 2, step 1" in log and "untouched" in log
    assert "cached 11 images in RAM" in log and log.count("skipping unreadable image") == 1
    assert [r["epoch"] for r in _metrics(run_dir)] == [1]
    state = torch.load(run_dir / "weights" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1
    last = load_checkpoint(run_dir / "weights" / "last.safetensors")
    assert last.meta.training["state_id"] == state["state_id"] and last.meta.training["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last.model.state_dict().values() if v.is_floating_point())
    assert load_checkpoint(run_dir / "weights" / "best.safetensors").meta.training["epoch"] == 1


def test_compare_overlays_runs_and_prints_best_metrics(run, interrupted, capsys, tmp_path):
    out = tmp_path / "compare.png"
    assert main(["compare", str(run), str(interrupted[0]), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "tiny (resnet18, original)" in table and "interrupted" in table and "best_epoch" in table
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_clear(data, capsys):
    assert main(["train", "--data", str(data), "epochz=3"]) == 2
    assert "unknown option 'epochz'" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "loss=smooth"]) == 2
    assert "loss='smooth': choose from original" in capsys.readouterr().err
    assert main(["train", "epochs=3"]) == 2
    assert "--data DATA" in capsys.readouterr().err


def test_resume_true_finds_the_newest_run(run, interrupted, project):
    from training.train import find_resume_dir

    for run_dir, age in ((run, 0), (interrupted[0], 100)):
        stamp = time.time() + 1000 - age  # newer than any run the other tests made
        os.utime(run_dir / "weights" / "last_state.pt", (stamp, stamp))
    assert find_resume_dir("true", str(project)) == run
    assert find_resume_dir(str(run / "weights" / "last_state.pt"), str(project)) == run
