"""Hostile and odd inputs to the detector package (issue 11's probe): each costs its own item, with a clear
one-line error, never a traceback, a stalled run or a huge allocation."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from detector.checkpoint import FORMAT_ID, CheckpointError, load_checkpoint, read_meta, read_state_dict, save_checkpoint
from detector.hw2 import AnnotationError, list_images, load_split, scan_images
from detector.images import ImageLoadError
from detector.models import WeightsUnavailableError, build_model, finalize_config, get_preset
from detector.predictor import Predictor
from detector.results_io import PredictionFileError, validate_pred_json

ROOT = Path(__file__).resolve().parent.parent
THIN = (600, 1)  # over max_size:1 for every preset (the tiny checkpoint's max_size is 128)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detector", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def read_csv_rows(path: Path) -> dict[int, str]:
    with path.open() as f:
        return {int(r[0]): r[1] for r in list(csv.reader(f))[1:]}


# ---------------------------------------------------------------------------------- 1. too-thin images
def test_predict_gives_a_too_thin_image_its_own_row_and_warning(tiny_hw2: Path, tiny_checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    test_dir = tiny_hw2 / "test"
    Image.new("RGB", THIN, (200, 200, 200)).save(test_dir / "3.png")
    Image.new("RGB", THIN[::-1], (200, 200, 200)).save(test_dir / "4.png")
    out = tmp_path / "out"
    proc = run_cli("predict", "--checkpoint", str(tiny_checkpoint), "--images", str(test_dir), "--out", str(out),
                   "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = read_csv_rows(out / "pred.csv")
    assert sorted(rows) == [1, 2, 3, 4] and rows[3] == rows[4] == "-1"
    for name, size in (("3.png", "600x1"), ("4.png", "1x600")):
        line = next(line for line in proc.stderr.splitlines() if name in line)
        assert line.startswith("warning:") and size in line and "too thin" in line
    assert {r["image_id"] for r in json.loads((out / "pred.json").read_text())} <= {1, 2}


def test_one_bad_image_never_costs_the_rest_of_its_batch(tiny_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    good = Image.new("RGB", (104, 47), (200, 200, 200))
    results = predictor.candidates_or_errors([good, Image.new("RGB", THIN), good, b"not an image",
                                              Image.new("RGB", (128, 1))], batch_size=8)
    assert [type(r).__name__ for r in results] == ["Detections", "ImageLoadError", "Detections", "ImageLoadError",
                                                  "Detections"]  # 128x1 is exactly max_size:1, still 1 px tall
    assert "image 2 of 5" in str(results[1]) and "too thin" in str(results[1])
    assert "image 4 of 5" in str(results[3])
    assert all(r.boxes.shape[1] == 4 for r in results if not isinstance(r, ImageLoadError))
    with pytest.raises(ImageLoadError, match="too thin"):  # the all-or-error form names the image, no RuntimeError
        predictor.candidates([good, Image.new("RGB", THIN)])


class _Unchecked(Predictor):
    """The real model with the size check switched off: torchvision's own failure must stay on its image."""

    def check_fits(self, image: Image.Image, label: str) -> None:
        return None


def test_a_model_failure_inside_a_batch_lands_on_the_image_that_caused_it(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    predictor = _Unchecked(model=loaded.model, meta=loaded.meta, device=torch.device("cpu"))
    good = Image.new("RGB", (104, 47), (200, 200, 200))
    results = predictor.candidates_or_errors([good, Image.new("RGB", THIN), good])
    assert [type(r).__name__ for r in results] == ["Detections", "ImageLoadError", "Detections"]
    assert "image 2 of 3: the model failed on this 600x1 image (RuntimeError" in str(results[1])


# ---------------------------------------------------------------------------------- 2. checkpoint metadata
def _crafted(tmp_path: Path, config: object, meta: object = None, name: str = "c.safetensors",
             raw_config: str | None = None) -> Path:
    """A checkpoint-shaped file with hand-written metadata and one tiny tensor: nothing big is ever built."""
    header = {"format": FORMAT_ID, "config": raw_config if raw_config is not None else json.dumps(config)}
    if meta is not None:
        header["meta"] = meta if isinstance(meta, str) else json.dumps(meta)
    path = tmp_path / name
    save_file({"w": torch.zeros(1)}, str(path), metadata=header)
    return path


def _config(**changes: object) -> dict:
    return {**get_preset("effnet_lite0").to_dict(), **changes}


@pytest.mark.parametrize("config, meta, message", [
    ([1, 2], None, "model config should be a JSON object, got list"),
    (_config(anchor_sizes={"a": 1}), None, "anchor_sizes must be a list"),
    (_config(anchor_sizes=[[32, 48], [64]] + [[128, 192], [256, 384]]), None, "same number of sizes"),
    (_config(anchor_sizes=[[32]] * 3), None, "anchor_sizes has 3 levels but efficientnet_lite0_fpn gives 4"),
    (_config(anchor_sizes=[list(range(1, 17))] * 4), None, "anchors per location"),
    (_config(aspect_ratios=[1.0] * 1000), None, "aspect_ratios must be a list of 1..16"),
    (_config(aspect_ratios=["wide"]), None, "aspect ratios must be numbers"),
    (_config(roi_featmap_names=["9"]), None, "roi_featmap_names must be distinct names"),
    (_config(roi_featmap_names=[0, 1]), None, "roi_featmap_names must be distinct names"),
    (_config(roi_featmap_names="012"), None, "roi_featmap_names must be a list"),
    (_config(extra={"backbone_kwargs": {"evil": 1}}), None, "unknown extra.backbone_kwargs"),
    (_config(extra={"backbone_kwargs": {"include_stride4": "yes"}}), None, "include_stride4 has a bad value"),
    (_config(extra={"backbone_kwargs": [1]}), None, "backbone_kwargs must be an object"),
    (_config(fpn_channels=10**6), None, "fpn_channels must be in 1..1024"),
    (_config(representation_size=10**7), None, "representation_size must be in 1..4096"),
    (_config(roi_output_size=1000), None, "roi_output_size must be in 1..32"),
    (_config(min_size=10**6, max_size=10**6), None, "min_size must be in 16..4096"),
    (_config(max_size=None), None, "max_size must be an integer"),
    (_config(rpn_pre_nms_top_n_test=10**9), None, "rpn_pre_nms_top_n_test must be in 1..20000"),
    (_config(box_detections_per_img=True), None, "box_detections_per_img must be an integer"),
    (_config(fpn_channels=1024, roi_output_size=32, representation_size=4096), None, "box head too large"),
    (_config(num_classes=11.0), None, "num_classes must be 11"),
    (_config(), [1], "meta should be an object, got list"),
    (_config(), {"thresholds": [0.5]}, "thresholds should be an object"),
    (_config(), {"thresholds": {"score": None}}, r"thresholds.score should be a number in \[0, 1\]"),
    (_config(), {"thresholds": {"nms_iou": 7}}, r"thresholds.nms_iou should be a number in \[0, 1\]"),
    (_config(), {"thresholds": {"number_score": "0.5"}}, "thresholds.number_score should be a number"),
    (_config(), {"thresholds": {"class_agnostic": "yes"}}, "class_agnostic should be true or false"),
    (_config(), {"class_names": {"0": "zero"}}, "class_names should be a list of 10 names"),
    (_config(), {"training": [1]}, "training should be an object"),
])
def test_bad_checkpoint_metadata_is_one_clear_error(tmp_path: Path, config: object, meta: object,
                                                     message: str) -> None:
    path = _crafted(tmp_path, config, meta)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"checkpoint metadata is damaged .*{message}"):
        read_meta(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)  # refused before any model is built
    assert time.perf_counter() - start < 5


def test_deeply_nested_or_huge_int_metadata_is_refused_fast(tmp_path: Path) -> None:
    for name, raw in (("deep", "[" * 100_000), ("ints", json.dumps(_config())[:-1] + ', "x": ' + "9" * 5000 + "}")):
        path = _crafted(tmp_path, None, name=f"{name}.safetensors", raw_config=raw)
        with pytest.raises(CheckpointError, match="checkpoint metadata is damaged .*(nested too deeply|digits)"):
            read_meta(path)
    path = _crafted(tmp_path, _config(), meta='{"a": ' * 50_000, name="deepmeta.safetensors")
    with pytest.raises(CheckpointError, match="meta: JSON nested too deeply"):
        read_meta(path)


def test_every_preset_and_the_shipped_checkpoint_pass_validation() -> None:
    from detector.checkpoint import DEFAULT_CHECKPOINT
    from detector.models import PRESETS, ModelConfig

    for config in PRESETS.values():
        assert ModelConfig.from_dict(json.loads(config.to_json())) == config
    assert read_meta(DEFAULT_CHECKPOINT).config.preset == "effnet_lite0"


def _tiny_config():  # type: ignore[no-untyped-def]
    return get_preset("resnet18").replace(min_size=64, max_size=128)


def test_weights_path_truncated_or_wrong_shape_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    state, _ = read_state_dict(tiny_checkpoint)
    good = tmp_path / "w.safetensors"
    save_file(state, str(good))
    data = good.read_bytes()
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsUnavailableError, match="trunc.safetensors: .*truncated or damaged"):
        finalize_config(_tiny_config(), str(truncated))  # what training does first with weights=PATH
    with pytest.raises(WeightsUnavailableError, match="trunc.safetensors: a truncated or damaged safetensors"):
        build_model(_tiny_config(), weights=str(truncated))
    key = "roi_heads.box_predictor.cls_score.weight"
    wrong = tmp_path / "wrong.safetensors"
    save_file({**state, key: torch.zeros(5, 3)}, str(wrong))
    with pytest.raises(WeightsUnavailableError, match=rf"1 tensor\(s\) have the wrong shape .*{key}: \(5, 3\) in the file"):
        build_model(_tiny_config(), weights=str(wrong))
    torch.save(state, tmp_path / "w.pt")
    pt = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(pt[: len(pt) // 2])
    with pytest.raises(WeightsUnavailableError, match="trunc.pt: not a tensor-only weights file"):
        build_model(_tiny_config(), weights=str(tmp_path / "trunc.pt"))


# ---------------------------------------------------------------------------------- 3. non-finite weights
def test_nan_or_inf_weights_are_refused_with_a_count(tiny_checkpoint: Path, tmp_path: Path) -> None:
    state, meta = read_state_dict(tiny_checkpoint)
    names = [k for k, v in state.items() if v.is_floating_point()]
    state[names[0]] = state[names[0]].clone().fill_(float("nan"))
    state[names[-1]] = state[names[-1]].clone().fill_(float("inf"))
    path = save_checkpoint(tmp_path / "nan.safetensors", state, meta)
    with pytest.raises(CheckpointError, match=rf"nan.safetensors: 2 of {len(state)} weight tensors hold NaN or Inf"):
        load_checkpoint(path)
    save_file(state, str(tmp_path / "nan_weights.safetensors"))
    with pytest.raises(WeightsUnavailableError, match="2 of .* tensors hold NaN or Inf"):
        build_model(_tiny_config(), weights=str(tmp_path / "nan_weights.safetensors"))


def test_backbone_weights_go_through_the_same_reader(tmp_path: Path) -> None:
    """The EfficientNet backbone reads weights= PATH as the detector does: nested layouts unwrapped, NaN refused."""
    from detector.backbones.efficientnet_lite import BackboneWeightsError, efficientnet_lite_fpn

    state = efficientnet_lite_fpn("lite0", weights="none").body.state_dict()
    torch.save({"model": state}, tmp_path / "nested.pth")  # a training script's checkpoint layout
    loaded = efficientnet_lite_fpn("lite0", weights=str(tmp_path / "nested.pth")).body.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())  # frozen BN keeps no batch counter
    key = next(k for k, v in state.items() if v.is_floating_point())
    save_file({**state, key: torch.full_like(state[key], float("nan"))}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(BackboneWeightsError, match=rf"nan.safetensors: 1 of {len(state)} tensors hold NaN or Inf"):
        efficientnet_lite_fpn("lite0", weights=str(tmp_path / "nan.safetensors"))


# ---------------------------------------------------------------------------------- 4. hostile JSON files
def test_deeply_nested_annotation_file_is_a_clear_error(tiny_hw2: Path) -> None:
    (tiny_hw2 / "valid.json").write_text("[" * 100_000)
    with pytest.raises(AnnotationError, match="valid.json: JSON nested too deeply"):
        load_split(tiny_hw2, "valid")


def test_huge_integers_fail_fast(tiny_hw2: Path) -> None:
    record = '{"id": %s, "file_name": "1.png", "width": 10, "height": 10}' % ("9" * 5000)
    text = '{"annotations": [], "images": [' + ",".join([record] * 2000) + "]}"  # ~10 MB
    (tiny_hw2 / "valid.json").write_text(text)
    start = time.perf_counter()
    with pytest.raises(AnnotationError, match="valid.json: .*an integer with 5,000 digits"):
        load_split(tiny_hw2, "valid")
    assert time.perf_counter() - start < 2.0


def test_long_digit_runs_inside_strings_still_load(tiny_hw2: Path) -> None:
    coco = json.loads((tiny_hw2 / "valid.json").read_text())
    long_name = "1" * 40 + ".png"
    (tiny_hw2 / "valid" / long_name).write_bytes((tiny_hw2 / "valid" / "1.png").read_bytes())
    coco["images"][0]["file_name"] = long_name
    (tiny_hw2 / "valid.json").write_text(json.dumps(coco))
    split = load_split(tiny_hw2, "valid")
    assert split.records[0].file_name == long_name and split.report.warnings == []


def test_hostile_pred_json_is_a_prediction_file_error(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(PredictionFileError, match="deep.json: JSON nested too deeply"):
        validate_pred_json(tmp_path / "deep.json")
    (tmp_path / "int.json").write_text('[{"image_id": %s}]' % ("7" * 5000))
    with pytest.raises(PredictionFileError, match="int.json: .*5,000 digits"):
        validate_pred_json(tmp_path / "int.json")


# ---------------------------------------------------------------------------------- 5. every image format
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "gif": "GIF", "webp": "WEBP", "tif": "TIFF"}


def _image_folder(folder: Path) -> dict[int, str]:
    """One image per supported format (ids 1..7), plus entries predict cannot use."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = {}
    for image_id, (suffix, fmt) in enumerate(FORMATS.items(), start=1):
        image = Image.fromarray(rng.integers(0, 255, (40, 90, 3), dtype=np.uint8))
        image.save(folder / f"{image_id}.{suffix.upper() if suffix == 'bmp' else suffix}", fmt)
        ids[image_id] = suffix
    (folder / "notes.txt").write_text("not an image")
    Image.new("RGB", (90, 40)).save(folder / "house.png")
    (folder / "nested").mkdir()
    return ids


def test_predict_reads_every_supported_format_and_warns_about_the_rest(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ids = _image_folder(tmp_path / "images")
    out = tmp_path / "out"
    proc = run_cli("predict", "--checkpoint", str(tiny_checkpoint), "--images", str(tmp_path / "images"),
                   "--out", str(out), "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_csv_rows(out / "pred.csv")) == sorted(ids)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, proc.stderr
    assert any("notes.txt" in w and "not an image type" in w for w in warnings)
    assert any("house.png" in w and "<integer id>" in w for w in warnings)
    assert any("nested" in w and "not searched" in w for w in warnings)


def test_scan_images_lists_skipped_entries_and_list_images_stays_strict(tmp_path: Path) -> None:
    ids = _image_folder(tmp_path / "images")
    scan = scan_images(tmp_path / "images")
    assert [i for i, _ in scan.items] == sorted(ids) and len(scan.skipped) == 3
    with pytest.raises(AnnotationError, match="house.png: file name is not '<integer id>"):
        list_images(tmp_path / "images")
    Image.new("RGB", (9, 9)).save(tmp_path / "images" / "1.jpeg")
    with pytest.raises(AnnotationError, match=r"share image id\(s\) \(1: 1.jpeg, 1.png\)"):
        scan_images(tmp_path / "images")


# ---------------------------------------------------------------------------------- 6. file_name escapes
def test_file_names_outside_the_image_folder_are_dropped_and_counted(tiny_hw2: Path) -> None:
    secret = tiny_hw2.parent / "secret.png"
    Image.new("RGB", (10, 10)).save(secret)  # a real image outside the split: it must not be read
    coco = json.loads((tiny_hw2 / "valid.json").read_text())
    coco["images"][0]["file_name"] = "../../secret.png"
    coco["images"][1]["file_name"] = str(secret.resolve())
    coco["images"][2]["file_name"] = "../valid/" + coco["images"][2]["file_name"]  # climbs out and back: fine
    (tiny_hw2 / "valid.json").write_text(json.dumps(coco))
    split = load_split(tiny_hw2, "valid")
    assert [r.image_id for r in split.records] == [coco["images"][2]["id"]]
    assert split.report.outside_image_dir == 2 and split.report.missing_files == 0
    assert "2 images whose file_name leaves the image folder dropped" in split.report.summary()
    assert "../../secret.png" in split.report.summary()
    with pytest.raises(AnnotationError, match="file_name '../../secret.png' points outside the image folder"):
        load_split(tiny_hw2, "valid", strict=True)


def test_an_image_reads_the_same_alone_and_batched_with_larger_neighbours(tiny_checkpoint) -> None:
    """torchvision pads a batch to its largest image; a small image's candidates must not depend on that."""
    from detector.predictor import Predictor

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)
    large = rng.integers(0, 255, (84, 278, 3), dtype=np.uint8)
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_floor=0.0)
    alone = predictor.candidates([small])[0]
    batched = predictor.candidates([large, small, large])[1]
    assert len(alone) > 0
    assert torch.equal(alone.boxes, batched.boxes) and torch.equal(alone.scores, batched.scores)
