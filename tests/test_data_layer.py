"""The HW2 data layer: what it loads, what it repairs, and the errors it gives."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.boxes import xywh_to_xyxy, xyxy_to_xywh
from detector.categories import CategoryError, category_to_digit, digit_to_category, digits_to_string
from detector.hw2 import AnnotationError, list_images, load_split, records_to_coco
from detector.images import ImageLoadError, load_rgb


def test_category_mapping_round_trip_and_rejects_out_of_range() -> None:
    assert category_to_digit(1) == 0 and category_to_digit(10) == 9
    assert all(category_to_digit(digit_to_category(d)) == d for d in range(10))
    assert digits_to_string([2, 1, 10]) == "109"
    for bad in (0, 11, -1, 1.5, True, "3"):
        with pytest.raises(CategoryError):
            category_to_digit(bad)  # type: ignore[arg-type]


def test_box_conversions_agree_for_numpy_and_torch() -> None:
    xywh = np.array([[1.0, 2.0, 3.0, 4.0], [10, 20, 5, 6]], dtype=np.float32)
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[1, 2, 4, 6], [10, 20, 15, 26]]
    assert np.allclose(xyxy_to_xywh(xyxy), xywh)
    assert torch.allclose(xywh_to_xyxy(torch.from_numpy(xywh)), torch.from_numpy(xyxy))


def test_clean_split_loads_without_warnings(tiny_hw2: Path) -> None:
    split = load_split(tiny_hw2, "valid")
    assert len(split) == 3 and split.report.warnings == []
    assert "no problems found" in split.report.summary()
    gt = records_to_coco(split.records)
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in gt["annotations"])
    assert [i for i, _ in list_images(tiny_hw2 / "test")] == [1, 2]


def _rewrite(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    coco = json.loads((root / "valid.json").read_text())
    edit(coco)
    (root / "valid.json").write_text(json.dumps(coco))


def test_repairs_are_counted(tiny_hw2: Path) -> None:
    def edit(coco: dict) -> None:
        img = coco["images"][0]
        anns = coco["annotations"]
        anns.append({"id": 900, "image_id": img["id"], "bbox": [img["width"] - 5, 1, 20, 10], "category_id": 2})
        anns.append({"id": 901, "image_id": img["id"], "bbox": [3, 3, 0, 8], "category_id": 2})
        anns.append({"id": 902, "image_id": 999, "bbox": [3, 3, 4, 8], "category_id": 2})
        anns.append({"id": 903, "image_id": img["id"], "bbox": [3, 3, 4, 8], "category_id": 11})
        anns.append({"id": 903, "image_id": img["id"], "bbox": [3, 3, 4, 8], "category_id": 1})
        coco["images"].append({"id": 50, "file_name": "50.png", "width": 10, "height": 10})

    _rewrite(tiny_hw2, edit)
    rep = load_split(tiny_hw2, "valid").report
    assert (rep.clipped_boxes, rep.dropped_degenerate_boxes, rep.dropped_unknown_image, rep.dropped_bad_category,
            rep.renumbered_annotation_ids, rep.missing_files) == (1, 1, 1, 1, 1, 1)
    assert len(rep.warnings) == 6 and "50.png" in rep.summary()
    with pytest.raises(AnnotationError, match="image_id 999"):
        load_split(tiny_hw2, "valid", strict=True)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("annotations"), "missing top-level key 'annotations'"),
        (lambda c: c["annotations"][0].pop("bbox"), r"annotations\[0\] is missing key\(s\) \['bbox'\]"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "4 numbers"),
        (lambda c: c["images"].append(dict(c["images"][0])), "duplicate image id"),
        (lambda c: c["images"][0].update(width="wide"), r"images\[0\].width should be int"),
    ],
)
def test_structural_errors_name_the_problem(tiny_hw2: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    _rewrite(tiny_hw2, edit)
    with pytest.raises(AnnotationError, match=message):
        load_split(tiny_hw2, "valid")


def test_malformed_json_gives_line_and_column(tiny_hw2: Path) -> None:
    (tiny_hw2 / "valid.json").write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(AnnotationError, match="malformed JSON at line 2"):
        load_split(tiny_hw2, "valid")


def test_image_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    arr16 = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    cases = {
        "gray16.png": Image.fromarray(arr16),
        "gray.png": Image.new("L", (30, 20), 128),
        "rgba.png": Image.new("RGBA", (30, 20), (255, 0, 0, 0)),
        "palette.png": Image.new("P", (30, 20), 3),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        loaded = load_rgb(tmp_path / name)
        assert loaded.mode == "RGB" and loaded.size == (30, 20), name
    assert np.asarray(load_rgb(tmp_path / "rgba.png")).min() == 255  # transparent -> white, not black
    assert np.asarray(load_rgb(tmp_path / "gray16.png")).max() == 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").size == (20, 40)


def test_bad_images_give_errors_that_name_the_file(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "trunc.png").write_bytes(buffer.getvalue()[:2000])
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match="trunc.png: unreadable or truncated"):
        load_rgb(tmp_path / "trunc.png")
    with pytest.raises(ImageLoadError, match="text.png: not an image"):
        load_rgb(tmp_path / "text.png")
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_rgb(tmp_path / "trunc.png", max_pixels=100)
