"""Figures (matplotlib, Agg) from a run's metrics.jsonl: the seed's training-loss, validation-mAP and per-epoch
AP/AR curves, and the threshold sweep (`training.compare` overlays several runs with the same helpers); and
from a dataset's boxes: the histograms of `python -m training.stats`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from detector.coco_eval import STAT_NAMES  # noqa: E402
from detector.hw2 import ImageRecord  # noqa: E402
from training.anchors import IOU_THRESHOLDS, gather_boxes, recall_label  # noqa: E402

AP_STATS = STAT_NAMES[:6]
AR_STATS = STAT_NAMES[6:]
LOSS_LABELS = {"loss": "total", "loss_classifier": "classifier", "loss_box_reg": "box regression",
               "loss_objectness": "RPN objectness", "loss_rpn_box_reg": "RPN box", "loss_iou": "IoU term (lambda x)"}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (is {run_dir} a training run folder?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stat_value(record: dict[str, Any], split: str, stat: str) -> float:
    """A stat of an epoch, NaN when not evaluated or undefined (COCO's -1), so lines just break there."""
    source = record.get("valid") if split == "valid" else record.get("extra", {}).get(split)
    if not source or stat not in source or source[stat] is None or source[stat] < 0:
        return math.nan
    return float(source[stat])


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    for ax in fig.axes:
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_losses(records: Sequence[dict[str, Any]], path: Path) -> Path:
    epochs = [r["epoch"] for r in records]
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    for key, label in LOSS_LABELS.items():
        if any(key in r for r in records):
            ax.plot(epochs, [r.get(key, math.nan) for r in records], marker="o", ms=3, label=label,
                    lw=2.2 if key == "loss" else 1.2)
    ax.set(xlabel="epoch", ylabel="mean loss per step", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax_lr.plot(epochs, [r["lr"] for r in records], marker="o", ms=3, color="tab:gray")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate", yscale="log")
    ax_lr.grid(alpha=0.3)
    return save_figure(fig, path)


def _splits(records: Sequence[dict[str, Any]]) -> list[str]:
    names = ["valid"]
    for r in records:
        names += [n for n in r.get("extra", {}) if n not in names]
    return names


def plot_map(records: Sequence[dict[str, Any]], path: Path) -> Path:
    epochs = [r["epoch"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for split in _splits(records):
        line = ax.plot(epochs, [stat_value(r, split, "AP") for r in records], marker="o", ms=3, label=f"{split} mAP")[0]
        ax.plot(epochs, [stat_value(r, split, "AP50") for r in records], ls="--", color=line.get_color(),
                label=f"{split} AP50")
        ax.plot(epochs, [stat_value(r, split, "number_accuracy") for r in records], ls=":", color=line.get_color(),
                label=f"{split} number accuracy")
    ax.set(xlabel="epoch", ylabel="score", title="Validation mAP@[.5:.95], AP50 and number accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_ap_ar(records: Sequence[dict[str, Any]], path: Path, split: str = "valid") -> Path:
    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, stats, title in ((axes[0], AP_STATS, "Average precision"), (axes[1], AR_STATS, "Average recall")):
        for stat in stats:
            ax.plot(epochs, [stat_value(r, split, stat) for r in records], marker="o", ms=3, label=stat)
        ax.set(xlabel="epoch", title=f"{title} per epoch ({split})", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_sweep(sweep_file: Path, path: Path) -> Path:
    data = json.loads(sweep_file.read_text(encoding="utf-8"))
    points = data["points"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["threshold"] for p in points], [p["number_accuracy"] for p in points], marker="o", ms=3)
    best = data["best"]["number_score"]
    ax.axvline(best, color="tab:red", ls="--", label=f"chosen {best:.2f}")
    ax.set(xlabel="score threshold", ylabel="number accuracy (valid)", title="Score threshold sweep", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Every figure of one run under RUN/plots/; returns the files written."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        return []
    out = run_dir / "plots"
    written = [plot_losses(records, out / "loss.png")]
    evaluated = [r for r in records if "valid" in r]
    if evaluated:
        written += [plot_map(evaluated, out / "map.png"), plot_ap_ar(evaluated, out / "ap_ar.png")]
        for split in _splits(evaluated)[1:]:
            written.append(plot_ap_ar(evaluated, out / f"ap_ar_{split}.png", split))
    sweep = run_dir / "threshold_sweep.json"
    if sweep.is_file():
        written.append(plot_sweep(sweep, out / "threshold_sweep.png"))
    return written


# ------------------------------------------------------------------------------------------- dataset figures
def plot_dataset(
    records: Sequence[ImageRecord], scales: Sequence[dict[str, Any]], best_ious: Sequence[dict[str, np.ndarray]],
    out: Path,
) -> list[Path]:
    """PNG histograms of the figures training.stats.dataset_stats summarises, plus best-anchor IoU per input scale
    (`scales`: stats.json's entries, `best_ious`: each box's best IoU per configuration at that scale)."""
    boxes, _ = gather_boxes(records)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    written: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        written.append(save_figure(fig, out / name, dpi=90))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, values, label in zip(axes, (w, h), ("box width (px)", "box height (px)"), strict=False):
        ax.hist(values, bins=60)
        ax.set_xlabel(label)
        ax.set_ylabel("boxes")
    save(fig, "box_sizes.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, values, label in zip(axes, (w / h, h / w), ("w / h", "h / w (torchvision aspect ratio)"), strict=False):
        ax.hist(np.clip(values, 0, np.quantile(values, 0.995)), bins=60)
        ax.set_xlabel(label)
        ax.set_ylabel("boxes")
    save(fig, "aspect_ratios.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    iw = np.array([r.width for r in records])
    ih = np.array([r.height for r in records])
    axes[0].hist2d(iw, ih, bins=50, cmin=1, norm=matplotlib.colors.LogNorm())  # most images are tiny
    axes[0].set_xlabel("image width (px)")
    axes[0].set_ylabel("image height (px)")
    counts = np.array([len(r.boxes) for r in records])
    values, freq = np.unique(counts, return_counts=True)
    axes[1].bar(values, freq)
    axes[1].set_xlabel("digits per image")
    axes[1].set_ylabel("images")
    save(fig, "images.png")

    for entry, ious in zip(scales, best_ious, strict=False):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for key, values in ious.items():
            ax.hist(values, bins=50, range=(0, 1), alpha=0.5, label=f"{key}: {recall_label(entry[key])}")
        for t in IOU_THRESHOLDS:
            ax.axvline(t, color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"best anchor IoU at min_size {entry['min_size']} / max_size {entry['max_size']}")
        ax.set_ylabel("boxes")
        ax.legend(fontsize=7)
        save(fig, f"anchor_iou_{entry['min_size']}.png")
    return written
