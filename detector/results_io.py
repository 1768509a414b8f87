"""Task 1 / Task 2 output files: pred.json (COCO detection results) and pred.csv (one number per image).

Writes are atomic (temp file in the same folder + os.replace), so an interrupted run never leaves a
half-written file that looks valid. The validators check a file the way a grader would and raise
PredictionFileError naming the file, the record and the field.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from detector.boxes import xyxy_to_xywh
from detector.categories import is_category_id
from detector.detections import Detections
from detector.fileio import atomic_write_text
from detector.jsonsafe import JSONInputError, is_number, loads
from detector.number import NO_NUMBER, NumberReading

BBOX_DECIMALS = 2  # 1/100 px: far below annotation noise, keeps pred.json small
SCORE_DECIMALS = 5  # enough that rounding never reorders distinct scores in practice
RESULT_KEYS = ("image_id", "bbox", "score", "category_id")
CSV_HEADER = ("image_id", "pred_label")


class PredictionFileError(ValueError):
    """A pred.json / pred.csv that a grader would reject."""


def detections_to_coco_results(dets_by_id: Mapping[int, Detections]) -> list[dict]:
    """COCO result records, by image id then score: bbox [x, y, w, h] in original pixels, category_id 1..10."""
    results = []
    for image_id in sorted(dets_by_id):
        dets = dets_by_id[image_id].to("cpu")
        order = dets.scores.argsort(descending=True, stable=True)
        boxes = xyxy_to_xywh(dets.boxes[order].double()).tolist()
        for box, score, label in zip(boxes, dets.scores[order].tolist(), dets.labels[order].tolist(), strict=False):
            if not is_category_id(label):
                raise PredictionFileError(f"image {image_id}: label {label} is not a category id 1..10")
            results.append({"image_id": int(image_id), "bbox": [round(v, BBOX_DECIMALS) for v in box],
                            "score": round(score, SCORE_DECIMALS), "category_id": label})
    return results


def write_pred_json(path: str | Path, detections: Mapping[int, Detections] | list[dict],
                    image_ids: Iterable[int] | None = None) -> Path:
    """Write Task 1's pred.json from detections by image id (or ready result records), validated first."""
    results = detections_to_coco_results(detections) if isinstance(detections, Mapping) else detections
    validate_pred_json(results, image_ids)
    return atomic_write_text(path, json.dumps(results, separators=(",", ":")))


def write_pred_csv(path: str | Path, readings_by_id: Mapping[int, NumberReading | int],
                   image_ids: Iterable[int] | None = None) -> Path:
    """Write Task 2's pred.csv: `image_id,pred_label`, one row per image by id, -1 where no number was read."""
    values = {int(i): r.value if isinstance(r, NumberReading) else int(r) for i, r in readings_by_id.items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((image_id, values[image_id]) for image_id in sorted(values))
    text = buffer.getvalue()
    _check_csv_rows(str(path), list(csv.reader(io.StringIO(text))), image_ids)
    return atomic_write_text(path, text)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_pred_json(path_or_list: str | Path | list, image_ids: Iterable[int] | None = None) -> list[dict]:
    """Check a pred.json (path or parsed list) and return its records; raises PredictionFileError."""
    if isinstance(path_or_list, (str, Path)):
        source = str(path_or_list)
        try:
            results = loads(Path(path_or_list).read_text(encoding="utf-8"), source)
        except (OSError, UnicodeDecodeError) as err:
            raise PredictionFileError(f"{source}: cannot read ({err})") from err
        except JSONInputError as err:
            raise PredictionFileError(str(err)) from None
    else:
        source, results = "pred.json", path_or_list
    if not isinstance(results, list):
        raise PredictionFileError(f"{source}: top level is a {type(results).__name__}, expected a list of results")
    known = None if image_ids is None else {int(i) for i in image_ids}
    for i, r in enumerate(results):
        where = f"{source}: result [{i}]"
        if not isinstance(r, dict):
            raise PredictionFileError(f"{where} is a {type(r).__name__}, expected an object")
        if set(r) != set(RESULT_KEYS):
            missing, extra = sorted(set(RESULT_KEYS) - set(r)), sorted(set(r) - set(RESULT_KEYS))
            raise PredictionFileError(f"{where} should have keys {list(RESULT_KEYS)}"
                                      + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
        if not _is_int(r["image_id"]):
            raise PredictionFileError(f"{where}.image_id should be an integer, got {r['image_id']!r}")
        if known is not None and r["image_id"] not in known:
            raise PredictionFileError(f"{where}.image_id {r['image_id']} is not one of the {len(known)} known images")
        if not is_category_id(r["category_id"]):
            raise PredictionFileError(
                f"{where}.category_id should be an integer in 1..10 (1 is digit 0), got {r['category_id']!r}")
        bbox = r["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            raise PredictionFileError(f"{where}.bbox should be 4 finite numbers [x, y, w, h], got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise PredictionFileError(f"{where}.bbox has negative width/height: {bbox!r}")
        if not (is_number(r["score"]) and 0.0 <= r["score"] <= 1.0):
            raise PredictionFileError(f"{where}.score should be a number in [0, 1], got {r['score']!r}")
    return results


def validate_pred_csv(path: str | Path, image_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Check a pred.csv and return {image_id: pred_label}; with `image_ids`, every image must have one row."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PredictionFileError(f"{path}: cannot read as CSV ({err})") from err
    return _check_csv_rows(str(path), rows, image_ids)


def _check_csv_rows(source: str, rows: list[list[str]], image_ids: Iterable[int] | None) -> dict[int, int]:
    if not rows or tuple(c.strip() for c in rows[0]) != CSV_HEADER:
        raise PredictionFileError(f"{source}: first line should be the header {','.join(CSV_HEADER)}, "
                                  f"got {rows[0] if rows else 'an empty file'}")
    values: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            if len(row) != 2:
                raise ValueError
            image_id, label = int(row[0]), int(row[1])
        except ValueError:
            raise PredictionFileError(f"{source}: line {line} should be two integers image_id,pred_label, "
                                      f"got {','.join(row)!r}") from None
        if label < NO_NUMBER:
            raise PredictionFileError(f"{source}: line {line}: pred_label {label} is negative (use {NO_NUMBER} for no number)")
        if image_id in values:
            raise PredictionFileError(f"{source}: line {line}: image_id {image_id} appears twice")
        values[image_id] = label
    if image_ids is not None:
        expected = {int(i) for i in image_ids}
        unknown, missing = sorted(set(values) - expected), sorted(expected - set(values))
        if unknown:
            raise PredictionFileError(f"{source}: {len(unknown)} unknown image id(s), e.g. {unknown[:5]}")
        if missing:
            raise PredictionFileError(f"{source}: no row for {len(missing)} image(s), e.g. {missing[:5]}")
    return values
