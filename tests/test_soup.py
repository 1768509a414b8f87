"""Weight averaging (training.soup): the mean of real checkpoints, loadable by the detector, and clear refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.checkpoint import CheckpointMeta, load_checkpoint, read_state_dict, save_checkpoint
from detector.models import build_model, get_preset
from training.__main__ import main
from training.soup import parse_part


@pytest.fixture(scope="module")
def second(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint's architecture with other weights, as a fine-tune from it would have."""
    state, meta = read_state_dict(tiny_checkpoint)
    torch.manual_seed(1)
    moved = {k: v + torch.randn_like(v) * 0.01 if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path_factory.mktemp("soup") / "second.safetensors"
    save_checkpoint(path, moved, meta)
    return path


def test_soup_is_the_weighted_mean_and_loads(tiny_checkpoint: Path, second: Path, tmp_path: Path) -> None:
    out = tmp_path / "soup.safetensors"
    assert main(["soup", "--out", str(out), f"{tiny_checkpoint}:3", f"{second}:1"]) == 0
    a, _ = read_state_dict(tiny_checkpoint)
    b, _ = read_state_dict(second)
    soup, meta = read_state_dict(out)
    floats = [k for k, v in a.items() if v.is_floating_point()]
    assert floats and all(torch.allclose(soup[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6) for k in floats)
    assert all(torch.equal(soup[k], a[k]) for k in a if not a[k].is_floating_point())
    assert [p["weight"] for p in meta.training["soup"]] == [0.75, 0.25]
    assert meta.metrics == {}  # no part's validation figures pass for the soup's
    load_checkpoint(out)  # strict load into the architecture its config describes


def test_soup_refuses_another_architecture(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    config = get_preset("resnet18").replace(min_size=96, max_size=128, fpn_channels=64)
    other = save_checkpoint(tmp_path / "other.safetensors", build_model(config).state_dict(), CheckpointMeta(config=config))
    assert main(["soup", "--out", str(tmp_path / "x.safetensors"), str(tiny_checkpoint), str(other)]) == 2
    assert "only checkpoints of one model config can be averaged" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert main(["soup", "--out", str(tmp_path / "x.safetensors"), str(tiny_checkpoint)]) == 2  # one is no soup


def test_parse_part_reads_a_trailing_weight_only() -> None:
    assert parse_part("runs/a/best.safetensors:0.3") == (Path("runs/a/best.safetensors"), 0.3)
    assert parse_part("C:/runs/best.safetensors") == (Path("C:/runs/best.safetensors"), 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        parse_part("a.safetensors:0")


def test_soup_keeps_the_union_of_its_parts_training_images(tiny_checkpoint: Path, second: Path, tmp_path: Path) -> None:
    """The review warns on images a model trained on: a soup has trained on every part's."""
    from detector.checkpoint import update_meta
    from detector.provenance import FINGERPRINT_KEY, TrainingData, fingerprint

    images = []
    for i in range(3):
        images.append(tmp_path / f"{i}.png")
        images[-1].write_bytes(bytes([i]) * 10)
    update_meta(tiny_checkpoint, to=tmp_path / "a.safetensors",
                training={FINGERPRINT_KEY: {"train": fingerprint(images[:2])}})
    update_meta(second, to=tmp_path / "b.safetensors", training={FINGERPRINT_KEY: {"train": fingerprint(images[1:])}})
    assert main(["soup", "--out", str(tmp_path / "s.safetensors"), str(tmp_path / "a.safetensors"),
                 str(tmp_path / "b.safetensors")]) == 0
    known = TrainingData.from_meta(read_state_dict(tmp_path / "s.safetensors")[1].training)
    assert [(o.used_as, o.shared) for o in known.overlaps(tmp_path, "valid", images)] == [("train", 3)]
