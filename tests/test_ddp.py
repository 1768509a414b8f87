"""`torchrun --nproc_per_node=2 -m training train` on CPU with the gloo backend: two real processes, one run folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from detector.checkpoint import load_checkpoint
from training.synth import generate_dataset

ROOT = Path(__file__).resolve().parent.parent


def test_two_process_ddp_run_writes_one_run_folder_from_rank_0(tmp_path):
    data = generate_dataset(tmp_path / "data", {"train": 8, "valid": 5, "test": 0}, seed=1, workers=1)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training", "train", "--data", str(data), "--preset", "resnet18", "epochs=1", "batch=2",
               "min_size=64", "max_size=128", "box_batch_size_per_image=32", "rpn_batch_size_per_image=64",
               "workers=0", "progress=false", "plots=false", f"project={tmp_path / 'runs'}", "name=ddp",
               "device=cpu", "loss=diou", "iou_start_epoch=1"]  # the seed's IoU-mix loss, under DDP
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["best.safetensors", "last.safetensors",
                                                                  "last_state.pt"]
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    assert not (tmp_path / "runs" / "ddp2").exists()  # rank 1 did not make a run folder of its own
    assert result.stdout.count("run folder:") == 1  # only rank 0 reports
    log = (run / "train.log").read_text()
    assert "x 2 processes" in log and log.count("epoch 1/1") == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    # 8 images over 2 ranks at batch 2: 2 steps each; every valid image evaluated once, gathered on rank 0
    assert records[0]["steps"] == 2 and records[0]["valid"]["images"] == 5
    assert records[0]["iou_lambda"] == 0.1 and records[0]["loss_iou"] > 0
    state = torch.load(run / "weights" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1
    loaded = load_checkpoint(run / "weights" / "best.safetensors")
    assert loaded.meta.config.preset == "resnet18" and "number_score" in loaded.meta.thresholds.to_dict()
