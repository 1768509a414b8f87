"""Faults a training run must survive: a kill -9 or a full disk while the last checkpoint pair is replaced, the temp
files a crash leaves, clear resume messages, and divergence (an exploding loss, NaN weights), which must never
reach a checkpoint. Tiny resnet18 runs at 64 px on 8 rectangle 'digits': one step per epoch.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from detector.checkpoint import read_state_dict
from detector.fileio import atomic_write_text, nonfinite_tensors
from tests.conftest import write_tiny_hw2
from training.__main__ import main
from training.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "resnet18", "min_size=64", "max_size=128", "box_batch_size_per_image=32",
        "rpn_batch_size_per_image=64", "batch=8", "workers=0", "progress=false", "plots=false", "warmup_iters=0"]
PAIR = ["best.safetensors", "last.safetensors", "last_state.pt"]

# Runs `python -m training train ARGS` and dies by SIGKILL halfway through writing epoch 2's last_state: a kill -9
# between the two files of the last pair, with no cleanup code running (the old code had replaced last.safetensors
# by then).
KILL_WHILE_SAVING_EPOCH_2_STATE = r"""
import io, os, signal, sys
import torch

real_save = torch.save

def dying_save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and "state_id" in obj and obj.get("epoch") == 2:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if hasattr(f, "write"):
            f.write(half)
            f.flush()
        else:
            with open(f, "wb") as out:
                out.write(half)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

torch.save = dying_save
from training.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_hw2(tmp_path_factory.mktemp("faults") / "DATA", n_train=8, n_valid=2, n_test=0)


def _args(data: Path, project: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--data", str(data), *TINY, f"project={project}", f"name={name}", *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted run every recovered run must match bit for bit (eval only at the end: cheaper)."""
    project = tmp_path_factory.mktemp("runs")
    assert main(_args(data, project, "reference", "epochs=2", "eval_every=2")) == 0
    return project / "reference"


def _pair_epoch(run_dir: Path) -> int:
    """The epoch of the run's last pair, after checking that its two files belong together."""
    state = torch.load(run_dir / "weights" / "last_state.pt", map_location="cpu", weights_only=True)
    weights, meta = read_state_dict(run_dir / "weights" / "last.safetensors")
    assert meta.training["state_id"] == state["state_id"]
    assert meta.training["epoch"] == state["epoch"]
    assert not nonfinite_tensors(weights)
    return state["epoch"]


def _same_weights(run_dir: Path, reference: Path) -> bool:
    resumed, _ = read_state_dict(run_dir / "weights" / "last.safetensors")
    expected, _ = read_state_dict(reference / "weights" / "last.safetensors")
    return resumed.keys() == expected.keys() and all(torch.equal(resumed[k], expected[k]) for k in expected)


def _error(run_dir: Path) -> str:
    """The message the run stopped with, from its train.log (console and log file get the same line)."""
    errors = [line.split(" ERROR ", 1)[1] for line in (run_dir / "train.log").read_text().splitlines()
              if " ERROR " in line]
    assert len(errors) == 1, errors
    return errors[0]


def _epochs(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------- the last pair, kill -9
def test_kill_9_between_the_two_files_of_the_pair_still_resumes_exactly(data, reference, tmp_path):
    command = [sys.executable, "-c", KILL_WHILE_SAVING_EPOCH_2_STATE,
               *_args(data, tmp_path, "killed", "epochs=2", "eval_every=2")]
    killed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)  # a loaded machine
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = tmp_path / "killed"
    assert _pair_epoch(run_dir) == 1  # the previous pair is whole and current
    weights = run_dir / "weights"
    leftovers = [p.name for p in weights.iterdir() if p.name not in PAIR]
    assert any(name.endswith(".tmp") for name in leftovers), leftovers  # the half-written state file's temp file
    (run_dir / ".metrics.jsonl.x1y2z3.tmp").write_text("half a line")  # as a kill in atomic_write leaves it

    assert main(["train", f"resume={run_dir}"]) == 0
    assert _same_weights(run_dir, reference)
    assert _epochs(run_dir) == [1, 2]
    assert sorted(p.name for p in weights.iterdir()) == PAIR  # the leftovers are gone ...
    assert not list(run_dir.glob(".*.tmp"))
    log = (run_dir / "train.log").read_text()
    for name in (*leftovers, ".metrics.jsonl.x1y2z3.tmp"):  # ... and the log says so, file by file
        assert f"removed {run_dir / 'weights' / name if name in leftovers else run_dir / name}" in log


def test_a_kill_at_any_instant_of_a_save_leaves_one_whole_pair(tmp_path, monkeypatch):
    """Every rename and delete of a save is an instant a kill can hit: the folder as it is at each of them must
    resume one whole pair, the old one before the commit and the new one after it."""
    from training.last_checkpoint import STATE, WEIGHTS, recover, save_pair

    weights = tmp_path / "weights"
    weights.mkdir()

    def save(epoch: int) -> None:
        save_pair(weights, lambda path: atomic_write_text(path, f"weights {epoch}"),
                  lambda path: atomic_write_text(path, f"state {epoch}"), f"e{epoch}")

    save(1)
    snapshots: list[Path] = []

    def snapshot() -> None:
        snapshots.append(shutil.copytree(weights, tmp_path / f"at{len(snapshots)}"))

    real_replace, real_unlink = os.replace, Path.unlink
    monkeypatch.setattr(os, "replace", lambda *a, **k: (snapshot(), real_replace(*a, **k))[1])
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (snapshot(), real_unlink(self, *a, **k))[1])
    save(2)
    monkeypatch.undo()
    snapshot()
    assert len(snapshots) >= 6  # 2 files + the commit, 2 moves, the commit's removal, the end
    seen = []
    for folder in snapshots:
        recover([folder])
        seen.append(((folder / WEIGHTS).read_text(), (folder / STATE).read_text()))
        assert sorted(p.name for p in folder.iterdir()) == [WEIGHTS, STATE], folder
    assert set(seen) == {("weights 1", "state 1"), ("weights 2", "state 2")}, seen
    assert seen[0] == ("weights 1", "state 1") and seen[-1] == ("weights 2", "state 2")


# ------------------------------------------------------------------------------------- the last pair, full disk
def test_full_disk_while_saving_stops_clearly_and_the_run_still_resumes(data, reference, tmp_path, monkeypatch):
    real_save = torch.save

    def disk_fills_up(obj, f, *args, **kwargs):
        """Epoch 2's state file: half of it fits, then the disk is full."""
        if isinstance(obj, dict) and "state_id" in obj and obj.get("epoch") == 2:
            (f if hasattr(f, "write") else open(f, "wb")).write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    run_dir = tmp_path / "full"
    assert main(_args(data, tmp_path, "full", "epochs=2", "eval_every=2")) == 4
    assert _error(run_dir) == (f"disk full while saving epoch 2; the last good checkpoint is epoch 1 "
                       f"({run_dir / 'weights' / 'last.safetensors'}); free space and resume with "
                       f"`python -m training train resume={run_dir}`")
    assert sorted(p.name for p in (run_dir / "weights").iterdir()) == PAIR  # nothing half-written is left
    assert _pair_epoch(run_dir) == 1  # and the epoch-1 pair is whole
    # best is written before the pair, so epoch 2's best fitted; the resume redoes epoch 2 and writes it again
    assert read_state_dict(run_dir / "weights" / "best.safetensors")[1].training["epoch"] == 2

    monkeypatch.undo()
    assert main(["train", f"resume={run_dir}"]) == 0
    assert _same_weights(run_dir, reference)
    assert _epochs(run_dir) == [1, 2]


def test_disk_full_is_recognised_however_the_writer_reports_it():
    from training.train import is_disk_full

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert is_disk_full(full) and is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:  # torch.save into a Python file: the OSError is the context of torch's RuntimeError
        try:
            raise full
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904 (context, as torch does)
    except RuntimeError as err:
        assert is_disk_full(err)
    # safetensors reports it in its message only (what save_file raised on a real full tmpfs)
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and not is_disk_full(RuntimeError("boom"))


# ------------------------------------------------------------------------------------- resume messages
def test_resume_messages_name_what_is_really_missing(tmp_path):
    from training.train import find_resume_dir

    run_dir = tmp_path / "runs" / "early"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as err:  # config.json is there: the checkpoint is what is missing
        find_resume_dir(str(run_dir), str(tmp_path / "runs"))
    assert "has config.json but no weights/last_state.pt" in str(err.value) and "no config.json" not in str(err.value)
    (run_dir / "config.json").unlink()
    with pytest.raises(ConfigError, match="has no config.json, so it is not a run folder"):
        find_resume_dir(str(run_dir), str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="no such run folder"):
        find_resume_dir(str(tmp_path / "nowhere"), str(tmp_path / "runs"))
    # a first save committed (last.json) but not yet moved into place when the run was killed: resumable
    (run_dir / "config.json").write_text("{}")
    (run_dir / "weights" / "last.json").write_text("{}")
    assert find_resume_dir(str(run_dir), str(tmp_path / "runs")) == run_dir
    assert find_resume_dir("true", str(tmp_path / "runs")) == run_dir


# ------------------------------------------------------------------------------------- divergence
def _saved_weights(run_dir: Path) -> dict[str, dict]:
    return {p.name: read_state_dict(p)[0] for p in (run_dir / "weights").glob("*.safetensors")}


def test_exploding_loss_stops_the_run_before_it_saves_anything(data, tmp_path):
    """The probe: lr=1e3 used to finish epoch 1 with a loss of ~1e11 and save it as best and last."""
    run_dir = tmp_path / "lr1e3"
    assert main(_args(data, tmp_path, "lr1e3", "batch=4", "lr=1e3", "epochs=2")) == 3
    message = _error(run_dir)
    assert "loss exploded" in message and "at epoch 1, step 2 of 2" in message and "Lower lr" in message
    assert _saved_weights(run_dir) == {} and not (run_dir / "weights" / "last_state.pt").exists()
    assert not (run_dir / "metrics.jsonl").exists() or _epochs(run_dir) == []


def test_nonfinite_weights_are_never_saved_and_the_previous_pair_stays(data, tmp_path, monkeypatch):
    """A step can overflow the weights while its loss is still finite; here the last step of epoch 2 does."""
    import training.train

    real_epoch = training.train.train_one_epoch

    def overflowing_epoch(model, *args, **kwargs):
        finished = real_epoch(model, *args, **kwargs)
        if kwargs["epoch"] == 1:
            with torch.no_grad():
                next(model.parameters())[0] = float("inf")
                next(b for b in model.buffers() if b.is_floating_point()).fill_(float("nan"))
        return finished

    monkeypatch.setattr(training.train, "train_one_epoch", overflowing_epoch)
    run_dir = tmp_path / "overflow"
    assert main(_args(data, tmp_path, "overflow", "epochs=2")) == 3
    message = _error(run_dir)
    assert "weights became non-finite in epoch 2" in message and "(2 of" in message and "Lower lr" in message
    saved = _saved_weights(run_dir)
    assert sorted(saved) == ["best.safetensors", "last.safetensors"]
    assert all(not nonfinite_tensors(weights) for weights in saved.values())
    assert _pair_epoch(run_dir) == 1 and _epochs(run_dir) == [1]
    assert read_state_dict(run_dir / "weights" / "best.safetensors")[1].training["epoch"] == 1
