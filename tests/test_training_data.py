"""Training settings, augmentation and data loading, without training anything."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.hw2 import ImageRecord
from training.augment import build_train_transform, make_sample
from training.config import ConfigError, TrainConfig, help_text, parse_overrides, resolve
from training.data import BadImageLog, EpochSampler, EvalDataset, TrainDataset, collate_train


def _config(**changes) -> TrainConfig:
    return resolve({"data": "DATA", **changes})


def test_seed_preset_is_the_seed_recipe():
    c = _config(preset="seed")
    assert (c.optimizer, c.lr, c.weight_decay, c.batch, c.epochs, c.min_lr) == ("adamw", 1e-4, 1e-4, 8, 15, 1e-6)
    assert (c.color_p, c.color_jitter, c.blur_p, c.blur_kernel, c.blur_sigma) == (0.3, 0.2, 0.3, 3, (0.3, 0.8))
    assert (c.affine_p, c.perspective_p, c.warmup_iters, c.amp, c.loss) == (0.0, 0.0, 0, "none", "original")
    assert (c.iou_start_epoch, c.iou_lambda, c.iou_lambda_step, c.iou_lambda_max) == (6, 0.1, 0.05, 0.5)
    assert c.model_config().min_size == 800


def test_overrides_parse_types_aliases_and_model_fields():
    train, model = parse_overrides(["epochs=3", "lr=1e-3", "cache=true", "extra_val=a,b", "imgsz=96", "loss=ciou_box"])
    assert train == {"epochs": 3, "lr": 1e-3, "cache": True, "extra_val": ("a", "b"), "loss": "ciou_box"}
    assert model == {"min_size": 96}
    c = resolve({"data": "DATA", "preset": "resnet18", **train}, model)
    assert c.model_config().min_size == 96 and c.model_config().max_size == 512  # preset's max_size kept
    assert resolve({"data": "D", "preset": "resnet18"}, {"min_size": 640}).model_config().max_size == 640
    assert c.batch == 16  # the light preset's own default, not the seed's


@pytest.mark.parametrize("item, message", [
    ("epochs=two", "epochs='two'"), ("foo=1", "unknown option 'foo'"), ("epochs", "key=value"),
    ("cache=maybe", "true/false"), ("loss=iou", "choose from"), ("min_size=8", "min_size"),
])
def test_bad_overrides_name_the_option(item, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        train, model = parse_overrides([item])
        resolve({"data": "DATA", **train}, model)


def test_a_mistyped_option_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"unknown option 'epcohs'; did you mean epochs\?"):
        parse_overrides(["epcohs=3"])
    with pytest.raises(ConfigError, match=r"did you mean min_size\?"):
        parse_overrides(["min_sise=96"])
    with pytest.raises(ConfigError) as info:
        parse_overrides(["zzz=1"])
    assert "did you mean" not in str(info.value)


def test_help_lists_every_option_with_its_default():
    text = help_text()
    for f in fields(TrainConfig):
        if f.name != "model":
            assert f"  {f.name} " in text
    assert "[0.0001]" in text and "min_size" in text


def _picture(tmp_path: Path, name: str = "1.png") -> tuple[Path, np.ndarray]:
    """A black 60x100 image with a white 20x30 block at x 30..50, y 15..45, and its box."""
    array = np.zeros((60, 100, 3), dtype=np.uint8)
    array[15:45, 30:50] = 255
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path, np.array([[30.0, 15.0, 50.0, 45.0]], dtype=np.float32)


def test_seed_transform_scales_pixels_without_normalising_or_moving_boxes(tmp_path):
    path, boxes = _picture(tmp_path)
    transform = build_train_transform(_config(color_p=0.0, blur_p=0.0))
    image, target = transform(*make_sample(Image.open(path), boxes, np.array([4])))
    assert image.dtype == torch.float32 and image.max().item() == 1.0 and image.min().item() == 0.0
    assert torch.equal(target["boxes"], torch.tensor(boxes))
    assert target["labels"].tolist() == [4]


def test_geometric_transform_moves_the_box_with_the_pixels(tmp_path):
    path, boxes = _picture(tmp_path)
    config = _config(color_p=0.0, blur_p=0.0, affine_p=1.0, degrees=0.0, translate=0.2, scale=0.0)
    transform = build_train_transform(config)
    torch.manual_seed(3)
    image, target = transform(*make_sample(Image.open(path), boxes, np.array([4])))
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    ink = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    assert not torch.equal(target["boxes"][0], torch.tensor(boxes[0]))  # it did move
    assert torch.allclose(target["boxes"][0], ink, atol=1.5)


def test_train_samples_are_a_function_of_epoch_and_index(tmp_path):
    records = []
    for i in range(1, 4):
        path, boxes = _picture(tmp_path, f"{i}.png")
        records.append(ImageRecord(i, path.name, 100, 60, path, boxes, np.array([i], dtype=np.int64)))
    dataset = TrainDataset(records, build_train_transform(_config(color_p=1.0, blur_p=1.0)), seed=0)
    torch.manual_seed(123)
    first = dataset[(0, 1)]
    torch.manual_seed(456)  # the global RNG (or which worker loads it) does not matter
    again = dataset[(0, 1)]
    assert torch.equal(first[0], again[0])
    other_epoch = dataset[(1, 1)]
    assert not torch.equal(first[0], other_epoch[0])  # a new draw every epoch
    assert first[1]["labels"].tolist() == [2]


def _good_and_bad(tmp_path: Path, bad_bytes: bytes) -> list[ImageRecord]:
    """Record 1 is a readable picture, record 2 a file that is not a readable image."""
    good, boxes = _picture(tmp_path, "1.png")
    (tmp_path / "2.png").write_bytes(bad_bytes)
    return [ImageRecord(1, "1.png", 100, 60, good, boxes, np.array([1])),
            ImageRecord(2, "2.png", 100, 60, tmp_path / "2.png", boxes, np.array([2]))]


def test_unreadable_image_is_replaced_and_reported(tmp_path):
    records = _good_and_bad(tmp_path, b"not a png at all")
    bad = records[1].path
    dataset = TrainDataset(records, build_train_transform(_config()), seed=0)
    images, targets, reported = collate_train([dataset[(0, 1)], dataset[(0, 0)]])
    assert len(images) == 2 and [t["labels"].tolist() for t in targets] == [[1], [1]]
    assert [b.image_id for b in reported] == [2] and "2.png" in reported[0].path
    image_id, item = EvalDataset(records)[(0, 1)]
    assert image_id == 2 and item.path == str(bad)  # evaluation skips it (and leaves it out of the GT)
    log = BadImageLog()
    log.report(reported + reported)
    assert list(log.seen) == [str(bad)]


def test_cache_preloads_and_reports_bad_images(tmp_path):
    records = _good_and_bad(tmp_path, b"\x89PNG\r\n\x1a\n truncated")
    dataset = EvalDataset(records)
    reported = dataset.preload(threads=2)
    records[0].path.unlink()  # served from RAM from now on
    assert [b.image_id for b in reported] == [2]
    assert dataset[(0, 0)][1].shape == (60, 100, 3)


def test_sampler_order_is_seeded_per_epoch_and_resumes_mid_epoch():
    data = list(range(10))
    sampler = EpochSampler(data, shuffle=True, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    assert all(epoch == 2 for epoch, _ in full) and sorted(i for _, i in full) == data
    sampler.set_epoch(3)
    assert [i for _, i in sampler] != [i for _, i in full]
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    shards = [EpochSampler(data, shuffle=True, seed=0, rank=r, world=2) for r in (0, 1)]
    for shard in shards:
        shard.set_epoch(2)
    assert sorted(i for shard in shards for _, i in shard) == data
