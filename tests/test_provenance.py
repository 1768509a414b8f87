"""What a checkpoint records about its training images, and the overlap a review finds from it."""
from __future__ import annotations

import shutil
from pathlib import Path

from detector.hw2 import load_split
from detector.provenance import (
    FINGERPRINT_KEY,
    Overlap,
    TrainingData,
    file_digest,
    read_fingerprint,
    split_fingerprints,
)
from tests.conftest import write_tiny_hw2


def _paths(root: Path, split: str) -> list[Path]:
    return [r.path for r in load_split(root, split).records]


def test_fingerprints_count_shared_images_by_content_not_by_name(tmp_path: Path) -> None:
    trained = write_tiny_hw2(tmp_path / "A", n_train=4, n_valid=3, seed=0)
    other = write_tiny_hw2(tmp_path / "B", n_train=4, n_valid=3, seed=1)  # same names (1.png...), other pixels
    fingerprints = split_fingerprints({"train": load_split(trained, "train").records,
                                       "valid": load_split(trained, "valid").records})
    assert fingerprints["train"]["images"] == 4
    assert read_fingerprint(fingerprints["train"]) == {file_digest(p) for p in _paths(trained, "train")}
    data = TrainingData.from_meta({"data": "/elsewhere/C", FINGERPRINT_KEY: fingerprints})

    assert data.overlaps(trained, "train", _paths(trained, "train")) == [Overlap("train", 4, 4, "images")]
    assert data.overlaps(trained, "valid", _paths(trained, "valid")) == [Overlap("valid", 3, 3, "images")]
    assert data.overlaps(other, "valid", _paths(other, "valid")) == []  # same file names, never trained on

    copied = tmp_path / "copy"  # a copy of two training images among new ones: found wherever they lie
    shutil.copytree(other / "valid", copied)
    for name in ("1.png", "2.png"):
        shutil.copy(trained / "train" / name, copied / name)
    assert data.overlaps(tmp_path, "copy", sorted(copied.iterdir())) == [Overlap("train", 2, 3, "images")]


def test_without_digests_the_data_folder_decides(tmp_path: Path) -> None:
    root = write_tiny_hw2(tmp_path / "DATA")
    data = TrainingData.from_meta({"data": str(root.resolve()), "counts": {"train": 4, "valid": 3}})
    assert data.known
    assert data.overlaps(tmp_path / "DATA", "train", _paths(root, "train")) == [Overlap("train", 4, 4, "folder")]
    assert data.overlaps(tmp_path / "DATA", "test", [root / "test" / "1.png"]) == []
    assert data.overlaps(tmp_path / "elsewhere", "train", _paths(root, "train")) == []


def test_bad_or_missing_metadata_finds_no_overlap_and_never_raises(tmp_path: Path) -> None:
    root = write_tiny_hw2(tmp_path / "DATA")
    for training in ({}, {"data": 3, "counts": "x", FINGERPRINT_KEY: "y"},
                     {FINGERPRINT_KEY: {"train": {"sha1_32": "not base64!"}, "valid": {"sha1_32": "AAA="}}}):
        data = TrainingData.from_meta(training)
        assert data.overlaps(root, "train", _paths(root, "train")) == []
    assert not TrainingData.from_meta({}).known
    assert len(read_fingerprint({"sha1_32": "AAAAAA=="}) or ()) == 1  # 4 bytes: one digest
    assert read_fingerprint({"sha1_32": "AAAAAAA="}) is None  # 5 bytes: not whole digests
