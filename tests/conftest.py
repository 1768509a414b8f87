"""Shared fixtures: a tiny HW2 folder written with PIL, and a tiny untrained checkpoint.

Both are real files in the real formats; they are small so that the suite stays fast on 2 cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from detector.categories import coco_categories

torch.set_num_threads(2)


def write_tiny_hw2(root: Path, n_train: int = 4, n_valid: int = 3, n_test: int = 2, seed: int = 0) -> Path:
    """Dark 'digits' (filled rectangles) on light noise; enough for data-layer and plumbing tests."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(1, n + 1):
            w, h = int(rng.integers(60, 120)), int(rng.integers(30, 60))
            img = Image.fromarray((200 + rng.integers(0, 40, (h, w, 3))).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            x = 4
            for _ in range(int(rng.integers(1, 4))):
                bw, bh = int(rng.integers(8, 14)), int(rng.integers(h // 2, h - 4))
                y = int(rng.integers(1, h - bh))
                draw.rectangle([x, y, x + bw - 1, y + bh - 1], fill=(20, 20, 20))
                annotations.append({"id": len(annotations) + 1, "image_id": i, "bbox": [x, y, bw, bh],
                                    "category_id": int(rng.integers(1, 11)), "area": bw * bh})
                x += bw + 4
            img.save(root / split / f"{i}.png")
            images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        if split != "test":
            (root / f"{split}.json").write_text(json.dumps(
                {"images": images, "annotations": annotations, "categories": coco_categories()}))
    return root


@pytest.fixture
def tiny_hw2(tmp_path: Path) -> Path:
    return write_tiny_hw2(tmp_path / "DATA")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained light model at a small input scale: real format, real architecture, random weights."""
    from detector.checkpoint import CheckpointMeta, save_checkpoint
    from detector.models import build_model, get_preset

    torch.manual_seed(0)
    config = get_preset("resnet18").replace(min_size=64, max_size=128)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, build_model(config).state_dict(), CheckpointMeta(config=config))
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A skipped browser test hides in a green run: say so loudly, with the command that fixes it."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "chromium" in str(r.longrepr).lower()]
    if skipped:
        terminalreporter.write_line(
            f"WARNING: {len(skipped)} browser test(s) skipped because Chromium is not installed; install it with "
            "`apt-get update && apt-get install -y chromium` and run the tests again", yellow=True, bold=True)


# The markers of the slow modules, in one place (declared in pyproject.toml): `-m "not slow"` runs the quick ones.
MODULE_MARKERS: dict[str, tuple[str, ...]] = {
    "test_ddp": ("ddp", "slow"),
    "test_app": ("app", "slow"),
    "test_app_faults": ("app", "slow"),
    "test_browser": ("browser", "app", "slow"),
    "test_effnet_finetune": ("finetune", "slow"),
    "test_training": ("slow",),
    "test_training_faults": ("slow",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in MODULE_MARKERS.get(item.module.__name__.rsplit(".", 1)[-1] if item.module else "", ()):
            item.add_marker(name)
