"""Dataset statistics (training.stats) and the anchor check and fit (training.anchors), against torchvision's own
resize, backbone grid and anchors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import resnet18
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou

from detector.hw2 import ImageRecord, load_split
from training.anchors import anchor_recall, best_anchor_iou, fit_anchors, input_scale, refine_anchors, scale_boxes
from training.stats import main, parse_anchor_sizes

STRIDES = (4, 8, 16, 32, 64)


@pytest.fixture()
def one_thread():
    """Tiny tensors: torch's thread pool only adds contention on a busy 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def record(image_id: int, width: int, height: int, boxes: list, categories: list | None = None) -> ImageRecord:
    boxes_np = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    cats = np.asarray(categories or [1] * len(boxes_np), dtype=np.int64)
    return ImageRecord(image_id, f"{image_id}.png", width, height, Path(f"{image_id}.png"), boxes_np, cats)


def random_records(seed: int, count: int) -> list[ImageRecord]:
    """SVHN-like images: wide crops with a row of tall digits, some touching the image edges."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        w, h = int(rng.integers(30, 240)), int(rng.integers(14, 110))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            bh = float(rng.uniform(0.3, 0.95) * h)
            bw = bh * float(rng.uniform(0.25, 0.8))
            x1, y1 = float(rng.uniform(0, max(w - bw, 1e-3))), float(rng.uniform(0, h - bh))
            boxes.append([x1, y1, min(x1 + bw, w), y1 + bh])
        records.append(record(i + 1, w, h, boxes))
    return records


def test_matches_brute_force_over_torchvisions_full_anchor_grid(one_thread):
    """Resize with GeneralizedRCNNTransform, take feature sizes from a real ResNet-FPN, generate every anchor
    with AnchorGenerator and take the max IoU: best_anchor_iou must agree box by box."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet18(weights=None), 5).eval()
    records = random_records(1, 12) + [record(99, 100, 47, [[0, 0, 20, 47], [80, 10, 100, 47]])]
    # 160 px wide stays 160 at (64, 160): the pool level has 3 columns 53 px apart, so a box centred at
    # x >= 159 lies past the last grid column and must still be matched to it
    edge = [record(100, 160, 64, [[158, 2, 160, 60], [150, 0, 160, 64]])]
    configs = [((4,), (8,), (12,), (24,), (48,)), ((10,), (20,), (30, 45), (60,), (90,))]
    for case, min_size, max_size in ((records, 96, 200), (records, 50, 130), (edge, 64, 160)):
        transform = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3)
        expected = {i: [] for i in range(len(configs))}
        for r in case:
            image = torch.zeros(3, r.height, r.width)
            target = {"boxes": torch.from_numpy(r.boxes), "labels": torch.ones(len(r.boxes))}
            images, targets = transform([image], [target])
            with torch.no_grad():
                features = list(backbone(images.tensors).values())
            for i, sizes in enumerate(configs):
                generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
                anchors = generator(ImageList(images.tensors, images.image_sizes), features)[0]
                expected[i].append(box_iou(targets[0]["boxes"], anchors).max(dim=1).values)
        boxes, hw = scale_boxes(case, min_size, max_size)
        for i, sizes in enumerate(configs):
            best, level = best_anchor_iou(boxes, hw, sizes, (0.5, 1.0, 2.0), STRIDES)
            torch.testing.assert_close(best, torch.cat(expected[i]), atol=2e-4, rtol=0)
            assert level.min() >= 0


def test_grid_not_shape_only():
    # One level, stride 32, a 16 px anchor: a 16x16 box between grid points overlaps little although its
    # shape matches exactly. Box [4,0,20,16], nearest anchor [-8,-8,8,8]: overlap 4 x 8 = 32, union 480.
    r = record(1, 64, 64, [[4, 0, 20, 16], [24, 24, 40, 40]])
    best, level = best_anchor_iou(r.boxes, [[64, 64], [64, 64]], ((16,),), (1.0,), (32,))
    assert best[0].item() == pytest.approx(32 / 480)
    assert best[1].item() == pytest.approx(1.0)  # centred on the grid point (32, 32)
    result = anchor_recall([r], ((16,),), (1.0,), (32,), min_size=64, max_size=64)
    assert result["recall@0.5"] == 0.5 and result["recall@0.7"] == 0.5 and result["boxes"] == 2


def test_box_past_the_last_grid_column():
    # 160 x 64 px, stride 64: a 1 x 3 grid whose columns are 160 // 3 = 53 px apart (x = 0, 53, 106), as
    # AnchorGenerator spaces them; a box centred at x = 159 is nearest the last column
    anchors = AnchorGenerator(((128,),), ((1.0,),)).grid_anchors([[1, 3]], [[torch.tensor(64), torch.tensor(53)]])[0]
    box = torch.tensor([[158.0, 0.0, 160.0, 64.0]])
    expected = box_iou(box, anchors).max().item()
    best, _ = best_anchor_iou(box.numpy(), [[64, 160]], ((128,),), (1.0,), (64,))
    assert expected > 0 and best.item() == pytest.approx(expected)


def test_input_scale_follows_torchvision():
    h, w = input_scale(np.array([104, 30, 876]), np.array([47, 300, 501]), 800, 1333)
    for width, height, new_h, new_w in zip((104, 30, 876), (47, 300, 501), h, w, strict=False):
        image, _ = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).resize(torch.zeros(3, height, width), None)
        assert tuple(image.shape[-2:]) == (new_h, new_w)


def test_fit_anchors_recovers_clusters_and_beats_bad_anchors():
    rng = np.random.default_rng(0)
    small = np.array([10.0, 20.0]) * rng.uniform(0.9, 1.1, (300, 1))
    large = np.array([40.0, 80.0]) * rng.uniform(0.9, 1.1, (300, 1))
    fit = fit_anchors(np.concatenate([small, large]), scale=2.0, n_sizes=2, n_ratios=1)
    (small_size,), (large_size,) = fit.anchor_sizes
    assert small_size == pytest.approx(2 * np.sqrt(200), rel=0.05)
    assert large_size == pytest.approx(2 * np.sqrt(3200), rel=0.05)
    assert fit.aspect_ratios[0] == pytest.approx(2.0, abs=0.02)
    assert fit.shape_iou > 0.8
    given = fit_anchors(np.concatenate([small, large]), n_sizes=4, ratios=(1.0, 2.0), n_levels=2)
    assert given.aspect_ratios == (1.0, 2.0) and len(given.anchor_sizes) == 2 and len(given.anchor_sizes[0]) == 2
    with pytest.raises(ValueError, match="multiple"):
        fit_anchors(small, n_sizes=3, n_levels=2)

    records = random_records(2, 40)
    boxes, _ = scale_boxes(records, 128, 512)
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    proposal = fit_anchors(wh, n_sizes=5, n_ratios=3)
    seed = anchor_recall(records, ((4,), (8,), (12,), (24,), (48,)), (0.5, 1.0, 1.5, 2.0), STRIDES, 128, 512)
    fitted = anchor_recall(records, proposal.anchor_sizes, proposal.aspect_ratios, STRIDES, 128, 512)
    assert fitted["recall@0.5"] > seed["recall@0.5"] and fitted["mean_best_iou"] > seed["mean_best_iou"]


def test_refine_improves_on_the_grid():
    records = random_records(3, 30)
    boxes, hw = scale_boxes(records, 96, 384)
    start = ((12,), (16,), (20,), (24,), (28,))
    sizes, ratios = refine_anchors(boxes, hw, start, (1.0,), STRIDES, rounds=2)
    before = best_anchor_iou(boxes, hw, start, (1.0,), STRIDES)[0]
    after = best_anchor_iou(boxes, hw, sizes, ratios, STRIDES)[0]
    assert (after >= 0.5).float().mean() > (before >= 0.5).float().mean()


def write_hw2(root: Path, records: list[ImageRecord]) -> None:
    (root / "train").mkdir(parents=True)
    images, annotations = [], []
    for r in records:
        Image.new("RGB", (r.width, r.height), (120, 90, 60)).save(root / "train" / r.file_name)
        images.append({"id": r.image_id, "file_name": r.file_name, "width": r.width, "height": r.height})
        for box, cid in zip(r.boxes.tolist(), r.category_ids.tolist(), strict=False):
            annotations.append({"id": len(annotations) + 1, "image_id": r.image_id, "category_id": cid,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    (root / "train.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def test_cli_on_a_data_folder_and_on_a_gzipped_layouts_file(tmp_path, capsys):
    records = random_records(4, 8)
    data = tmp_path / "DATA"
    write_hw2(data, records)
    assert main([str(data), "--propose", "5", "--min-size", "128,64", "--max-size", "512"]) == 0
    summary = json.loads((data / "stats" / "stats.json").read_text())
    assert summary["images"] == 8 and summary["boxes"] == sum(len(r.boxes) for r in records)
    assert sum(summary["digits_per_image"].values()) == 8
    assert [(s["min_size"], s["max_size"]) for s in summary["scales"]] == [(128, 512), (64, 512)]
    first = summary["scales"][0]
    assert first["configured"]["anchor_sizes"] == [[4], [8], [12], [24], [48]]
    loaded = load_split(data, "train").records
    assert first["configured"] == anchor_recall(loaded, parse_anchor_sizes("4,8,12,24,48"), (0.5, 1, 1.5, 2),
                                                STRIDES, 128, 512)
    assert len(first["proposal"]["anchor_sizes"]) == 5 and len(first["proposal"]["aspect_ratios"]) == 4
    assert {p.name for p in (data / "stats").glob("*.png")} >= {"box_sizes.png", "anchor_iou_128.png", "images.png"}
    assert "recall" not in capsys.readouterr().err

    layouts = tmp_path / "layouts.json.gz"
    with gzip.open(layouts, "wt") as fh:
        fh.write((data / "train.json").read_text())
    out = tmp_path / "out"
    assert main(["--layouts", str(layouts), "--anchors", "8/12,16,32", "--strides", "8,16,32", "--ratios", "2",
                 "--out", str(out), "--no-plots"]) == 0
    again = json.loads((out / "stats.json").read_text())
    assert again["boxes"] == summary["boxes"]
    assert again["scales"][0]["configured"]["anchor_sizes"] == [[8, 12], [16], [32]]
    assert not list(out.glob("*.png"))


def test_cli_errors(tmp_path, capsys):
    data = tmp_path / "DATA"
    write_hw2(data, random_records(5, 2))
    assert main([str(data), "--anchors", "4,8,x"]) == 2
    assert "--anchors" in capsys.readouterr().err
    assert main([str(data), "--anchors", "4,8", "--no-plots"]) == 2
    assert "strides" in capsys.readouterr().err
    assert main(["--layouts", str(tmp_path / "missing.json.gz")]) == 2
    assert "missing.json.gz" in capsys.readouterr().err


def test_preset_reads_model_config(tmp_path):
    models = pytest.importorskip("detector.models")
    config = models.get_preset("resnet18")
    data = tmp_path / "DATA"
    write_hw2(data, random_records(6, 4))
    assert main([str(data), "--preset", "resnet18", "--no-plots"]) == 0
    configured = json.loads((data / "stats" / "stats.json").read_text())["scales"][0]["configured"]
    assert configured["strides"] == list(STRIDES)  # measured on the preset's ResNet-FPN
    assert configured["anchor_sizes"] == [list(level) for level in config.anchor_sizes]
    assert (configured["min_size"], configured["max_size"]) == (config.min_size, config.max_size)
