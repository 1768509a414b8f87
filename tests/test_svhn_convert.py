"""SVHN digitStruct.mat -> HW2 layout, on a small HDF5 file shaped like MATLAB v7.3 writes SVHN's."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from detector.hw2 import LoadReport, load_annotation_file, load_split
from training.svhn_convert import (
    CONVERTED,
    COPIED,
    LINKED,
    DigitStructError,
    convert,
    main,
    read_digit_struct,
    select_indices,
)

# name, image size (w, h), digits as (left, top, width, height, label); label 10 is the digit 0
ENTRIES = [
    ("1.png", (60, 30), [(5, 3, 10, 22, 1), (17, 4, 11, 21, 9)]),
    ("2.png", (40, 24), [(12, 2, 12, 20, 10)]),  # one digit: fields stored inline
    ("3.png", (80, 35), [(10, 5, 12, 25, 2), (24, 5, 12, 25, 10), (38, 6, 12, 24, 5)]),
    ("4.jpg", (50, 26), [(40, 3, 15, 22, 7)]),  # a JPEG; its box reaches past the right edge (SVHN has these)
    ("5.png", (44, 28), [(3, 2, 9, 20, 3), (14, 2, 9, 20, 4)]),
]


def write_digit_struct(path: Path, entries: list) -> None:
    """A digitStruct.mat as MATLAB -v7.3 stores it: object references into '#refs#'."""
    with h5py.File(path, "w") as h5:
        refs = h5.create_group("#refs#")
        group = h5.create_group("digitStruct")
        names = group.create_dataset("name", (len(entries), 1), dtype=h5py.ref_dtype)
        bboxes = group.create_dataset("bbox", (len(entries), 1), dtype=h5py.ref_dtype)
        counter = 0

        def new_name() -> str:
            nonlocal counter
            counter += 1
            return f"r{counter}"

        for i, (name, _, digits) in enumerate(entries):
            chars = refs.create_dataset(new_name(), data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            names[i, 0] = chars.ref
            box = refs.create_group(new_name())
            for field_index, key in enumerate(("left", "top", "width", "height", "label")):
                values = [float(d[field_index]) for d in digits]
                if len(values) == 1:
                    box.create_dataset(key, data=np.array([[values[0]]]))
                else:
                    column = box.create_dataset(key, (len(values), 1), dtype=h5py.ref_dtype)
                    for j, v in enumerate(values):
                        column[j, 0] = refs.create_dataset(new_name(), data=np.array([[v]])).ref
            bboxes[i, 0] = box.ref


@pytest.fixture()
def svhn(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "svhn"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h), _ in ENTRIES:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    mat = images / "digitStruct.mat"
    write_digit_struct(mat, ENTRIES)
    return mat, images


def test_reads_inline_and_referenced_fields(svhn):
    mat, _ = svhn
    entries = read_digit_struct(mat)
    assert [e.name for e in entries] == [name for name, _, _ in ENTRIES]
    for entry, (_, _, digits) in zip(entries, ENTRIES, strict=False):
        np.testing.assert_allclose(entry.boxes_xywh, [d[:4] for d in digits])
        assert entry.digits.tolist() == [d[4] % 10 for d in digits]


def test_the_conversion_reports_its_repairs_as_the_loader_does(svhn, tmp_path):
    mat, images = svhn
    report = convert(mat, images, tmp_path / "DATA", "test")
    assert isinstance(report, LoadReport)  # one report type for loading and converting
    assert report.warnings == ["1 boxes clipped to the image (e.g. 4.jpg bbox [40.0, 3.0, 15.0, 22.0])"]
    assert report.summary().startswith(f"{mat} -> test: loaded 5 images, 9 boxes (")
    assert "1 converted to PNG); 1 boxes clipped to the image" in report.summary()


def test_test_split_takes_everything_and_loads_clean(svhn, tmp_path):
    mat, images = svhn
    out = tmp_path / "DATA"
    report = convert(mat, images, out, "test")
    assert report.images == len(ENTRIES) and report.clipped_boxes == 1 and report.dropped_degenerate_boxes == 0
    assert report.placed[CONVERTED] == 1 and report.placed[LINKED] + report.placed[COPIED] == len(ENTRIES) - 1
    assert sorted(p.name for p in (out / "test").iterdir()) == [f"{i}.png" for i in range(1, len(ENTRIES) + 1)]
    split = load_annotation_file(out / "test.json", out / "test")
    assert split.report.warnings == []
    assert [r.number for r in split.records] == ["19", "0", "205", "7", "34"]
    for record, (_, (w, h), digits) in zip(split.records, ENTRIES, strict=False):
        assert (record.width, record.height) == (w, h)
        with Image.open(record.path) as image:
            assert image.format == "PNG" and image.size == (w, h)
        assert record.category_ids.tolist() == [d[4] % 10 + 1 for d in digits]
    jpeg_record = split.records[3]  # the box 40..55 on a 50 px wide image was clipped to 40..50
    np.testing.assert_allclose(jpeg_record.boxes, [[40, 3, 50, 25]])
    np.testing.assert_allclose(split.records[2].boxes[1], [24, 5, 36, 30])


def test_train_and_valid_partition_the_file(svhn, tmp_path):
    mat, images = svhn
    out = tmp_path / "DATA"
    assert main(["--mat", str(mat), "--images", str(images), "--out", str(out), "--split", "train",
                 "--valid-fraction", "0.4", "--seed", "3", "--copy"]) == 0
    assert main(["--mat", str(mat), "--images", str(images), "--out", str(out), "--split", "valid",
                 "--valid-fraction", "0.4", "--seed", "3"]) == 0
    train, valid = load_split(out, "train"), load_split(out, "valid")
    assert train.report.warnings == [] and valid.report.warnings == []
    assert (len(train), len(valid)) == (3, 2)
    names = [img["svhn_name"] for s in ("train", "valid")
             for img in json.loads((out / f"{s}.json").read_text())["images"]]
    assert sorted(names) == sorted(name for name, _, _ in ENTRIES)
    assert [r.image_id for r in train] == [1, 2, 3] and [r.image_id for r in valid] == [1, 2]
    assert select_indices(5, "valid", 0.4, 3) == sorted(set(range(5)) - set(select_indices(5, "train", 0.4, 3)))


def test_refuses_to_overwrite_unless_asked(svhn, tmp_path):
    mat, images = svhn
    out = tmp_path / "DATA"
    convert(mat, images, out, "valid", valid_fraction=1.0)
    with pytest.raises(DigitStructError, match="--overwrite"):
        convert(mat, images, out, "valid", valid_fraction=1.0)
    report = convert(mat, images, out, "valid", valid_fraction=0.4, overwrite=True)
    assert len(list((out / "valid").iterdir())) == report.images == 2


def test_clear_errors(svhn, tmp_path, capsys):
    mat, images = svhn
    text_file = tmp_path / "digitStruct.mat"
    text_file.write_text("MATLAB 5.0 MAT-file")
    with pytest.raises(DigitStructError, match="not an HDF5 file"):
        read_digit_struct(text_file)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("x", data=[1, 2])
    with pytest.raises(DigitStructError, match="digitStruct"):
        read_digit_struct(other)
    bad_label = tmp_path / "bad_label.mat"
    write_digit_struct(bad_label, [("1.png", (60, 30), [(5, 3, 10, 22, 11)])])
    with pytest.raises(DigitStructError, match=r"entry 1 \(1.png\): labels must be 1..10"):
        read_digit_struct(bad_label)
    (images / "3.png").unlink()
    assert main(["--mat", str(mat), "--images", str(images), "--out", str(tmp_path / "D"), "--split", "test"]) == 2
    assert "3.png: image named in digitStruct not found" in capsys.readouterr().err
