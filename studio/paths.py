"""Where the studio finds its shipped assets and where it may write when a folder is read-only."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
from detector.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402,F401  (one place defines it)

DEFAULT_DATA = ASSETS  # the shipped validation set: assets/valid.json + assets/valid/
SAMPLES_DIR = ASSETS / "samples"
APP_NAME = "hw2-digit-studio"
VALID_SPLIT = "valid"


def annotation_paths(data_dir: Path, split: str = VALID_SPLIT) -> tuple[Path, Path]:
    """HW2 layout: DATA/<split>.json annotates the images in DATA/<split>/."""
    return data_dir / f"{split}.json", data_dir / split


def user_data_dir() -> Path:
    """Per-user place for review files whose data folder cannot be written (XDG, else ~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_NAME


def can_write_in(folder: Path) -> bool:
    """Really try: os.access lies for root and on read-only mounts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{APP_NAME}-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False
