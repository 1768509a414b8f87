"""The pretrained light preset end to end: a tiny CPU fine-tune from the pip-installed ImageNet weights whose
checkpoint rebuilds the same network and predicts."""
from __future__ import annotations

from pathlib import Path

import torch

from detector.checkpoint import load_checkpoint, read_meta
from detector.models import build_model, finalize_config, get_preset
from detector.predictor import Predictor
from training.__main__ import main
from training.synth import generate_dataset


def test_tiny_imagenet_finetune_checkpoint_predicts(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", {"train": 6, "valid": 3, "test": 0}, seed=1, styles="train", workers=1)
    rc = main(["train", "--data", str(data), "--preset", "effnet_lite0", "weights=imagenet", "epochs=1", "batch=3",
               "min_size=64", "max_size=128", "workers=0", "progress=false", "plots=false",
               f"project={tmp_path / 'runs'}", "name=ft"])
    assert rc == 0
    best = tmp_path / "runs" / "ft" / "weights" / "best.safetensors"
    meta = read_meta(best)
    assert meta.config.preset == "effnet_lite0" and meta.config.norm == "frozen_bn"
    assert meta.training["config"]["weights"] == "imagenet"

    # the frozen stem still holds exactly the ImageNet tensors the training started from
    pretrained = build_model(finalize_config(get_preset("effnet_lite0"), "imagenet"), weights="imagenet").state_dict()
    tuned = load_checkpoint(best).model.state_dict()
    stem = [k for k in pretrained if k.startswith("backbone.body.stem.")]
    assert stem and all(torch.equal(pretrained[k], tuned[k]) for k in stem)

    predictor = Predictor.from_checkpoint(best, device="cpu")
    image = next((data / "valid").glob("*.png"))
    [candidates] = predictor.candidates([image])
    assert candidates.boxes.shape[1] == 4 and bool(torch.isfinite(candidates.boxes).all())
