import contextlib
import io
import json

import pytest
import torch
from pycocotools.coco import COCO

from detector.categories import coco_categories
from detector.detections import Detections
from detector.number import read_number
from detector.results_io import (
    PredictionFileError,
    detections_to_coco_results,
    validate_pred_csv,
    validate_pred_json,
    write_pred_csv,
    write_pred_json,
)

DETS = {
    7: Detections(torch.tensor([[10.123456, 5.0, 20.0, 25.555555], [30.0, 5.0, 41.0, 25.0]]),
                  torch.tensor([0.5, 0.912345678]), torch.tensor([2, 10])),
    3: Detections(torch.tensor([[1.0, 2.0, 4.0, 8.0]]), torch.tensor([0.7]), torch.tensor([1])),
    5: Detections.empty(),
}


def test_coco_results_are_xywh_rounded_sorted_by_image_then_score():
    results = detections_to_coco_results(DETS)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(3, 1), (7, 10), (7, 2)]
    assert results[0]["bbox"] == [1.0, 2.0, 3.0, 6.0]
    assert results[2]["bbox"] == [10.12, 5.0, 9.88, 20.56]
    assert results[1]["score"] == 0.91235
    assert all(isinstance(r["category_id"], int) and isinstance(r["image_id"], int) for r in results)


def test_label_outside_categories_is_refused():
    with pytest.raises(PredictionFileError, match="label 0"):
        detections_to_coco_results({1: Detections(torch.zeros(1, 4), torch.ones(1), torch.zeros(1, dtype=torch.int64))})


def test_pred_json_loads_in_pycocotools(tmp_path):
    path = write_pred_json(tmp_path / "out" / "pred.json", DETS, image_ids=[3, 5, 7])
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "width": 50, "height": 30, "file_name": f"{i}.png"} for i in (3, 5, 7)],
                  "annotations": [], "categories": coco_categories()}
    gt.createIndex()
    with contextlib.redirect_stdout(io.StringIO()):
        res = gt.loadRes(str(path))
    assert len(res.getAnnIds()) == 3 and sorted(res.getImgIds(imgIds=[3, 7])) == [3, 7]
    assert validate_pred_json(path, image_ids=[3, 5, 7]) == json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["pred.json"]  # no temp file left behind


@pytest.mark.parametrize("record,message", [
    ({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "missing \\['category_id'\\]"),
    ({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "category_id": 1, "id": 4}, "unexpected \\['id'\\]"),
    ({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "category_id": 0}, "category_id .* 1..10"),
    ({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "category_id": 11}, "category_id"),
    ({"image_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5, "category_id": 1}, "negative width/height"),
    ({"image_id": 1, "bbox": [0, 0, 1], "score": 0.5, "category_id": 1}, "4 finite numbers"),
    ({"image_id": 1, "bbox": [0, 0, 1, float("nan")], "score": 0.5, "category_id": 1}, "4 finite numbers"),
    ({"image_id": "1", "bbox": [0, 0, 1, 1], "score": 0.5, "category_id": 1}, "image_id should be an integer"),
    ({"image_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5, "category_id": 1}, "image_id 2 is not one of"),
    ({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.5, "category_id": 1}, "score"),
])
def test_malformed_pred_json_records(record, message):
    with pytest.raises(PredictionFileError, match=message):
        validate_pred_json([record], image_ids=[1])


def test_malformed_pred_json_files(tmp_path):
    bad = tmp_path / "pred.json"
    bad.write_text('[{"image_id": 1,')
    with pytest.raises(PredictionFileError, match="pred.json: malformed JSON"):
        validate_pred_json(bad)
    bad.write_text('{"image_id": 1}')
    with pytest.raises(PredictionFileError, match="expected a list"):
        validate_pred_json(bad)
    assert validate_pred_json([]) == []


def test_failed_validation_leaves_existing_file_alone(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text("[]")
    with pytest.raises(PredictionFileError):
        write_pred_json(path, DETS, image_ids=[3, 5])
    assert path.read_text() == "[]" and len(list(tmp_path.iterdir())) == 1


def test_pred_csv_round_trip(tmp_path):
    readings = {i: read_number(d, 0.6) for i, d in DETS.items()}
    path = write_pred_csv(tmp_path / "pred.csv", readings, image_ids=[3, 5, 7])
    assert path.read_text() == "image_id,pred_label\n3,0\n5,-1\n7,9\n"
    assert validate_pred_csv(path, image_ids=[3, 5, 7]) == {3: 0, 5: -1, 7: 9}


def test_pred_csv_writes_integers_without_leading_zeros(tmp_path):
    path = write_pred_csv(tmp_path / "pred.csv", {2: 7, 1: 120})
    assert path.read_text().splitlines() == ["image_id,pred_label", "1,120", "2,7"]


@pytest.mark.parametrize("text,message", [
    ("", "header"),
    ("id,label\n1,2\n", "header"),
    ("image_id,pred_label\n1,2,3\n", "line 2 should be two integers"),
    ("image_id,pred_label\n1,x\n", "line 2 should be two integers"),
    ("image_id,pred_label\n1,-2\n", "negative"),
    ("image_id,pred_label\n1,2\n1,3\n", "appears twice"),
    ("image_id,pred_label\n1,2\n9,3\n", "unknown image id"),
    ("image_id,pred_label\n", "no row for 1 image"),
])
def test_malformed_pred_csv(tmp_path, text, message):
    path = tmp_path / "pred.csv"
    path.write_text(text)
    with pytest.raises(PredictionFileError, match=message):
        validate_pred_csv(path, image_ids=[1])
