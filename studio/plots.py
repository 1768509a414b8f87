"""Matplotlib figures for the failure browser: confusion matrix, precision-recall curve, threshold sweep.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so concurrent requests never draw
into each other's axes.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure

from detector.coco_eval import CocoMetrics, ThresholdSweep
from detector.matching import CONFUSION_LABELS


def confusion_figure(cm: np.ndarray, normalise: bool = True) -> Figure:
    """Rows = ground truth, columns = prediction; the last row/column is background (FP / missed)."""
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    ax = fig.add_subplot()
    counts = np.asarray(cm, dtype=np.float64)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalise else counts
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    ticks = np.arange(len(CONFUSION_LABELS))
    labels = [("bg" if name == "background" else name) for name in CONFUSION_LABELS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted (bg = missed)")
    ax.set_ylabel("true (bg = false positive)")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalise else ""))
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def pr_figure(metrics: CocoMetrics) -> Figure:
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for curve, label in ((metrics.precision_50, f"IoU 0.5 (AP50 {metrics['AP50']:.3f})"),
                         (metrics.precision_mean, f"IoU .5:.95 (mAP {metrics['AP']:.3f})")):
        values = np.asarray(curve, dtype=np.float64)
        if values.size and (values > -1).any():
            ax.plot(metrics.recall, np.where(values < 0, np.nan, values), label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall (mean over digits)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return fig


def sweep_figure(accuracy: ThresholdSweep, maps: ThresholdSweep | None = None, current: float | None = None) -> Figure:
    """Number accuracy (fine grid) and mAP (coarse grid) against the score threshold, best of each marked."""
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = fig.add_subplot()
    t = [p.threshold for p in accuracy.points]
    ax.plot(t, [p.number_accuracy for p in accuracy.points], marker=".", label="number accuracy", color="#16a34a")
    ax.plot([accuracy.best_threshold], [accuracy.best_accuracy], marker="*", markersize=13, color="#16a34a")
    ax.annotate(f"best {accuracy.best_threshold:.2f}: {accuracy.best_accuracy:.3f}",
                (accuracy.best_threshold, accuracy.best_accuracy), textcoords="offset points", xytext=(6, 6),
                color="#16a34a")
    points = [p for p in (maps.points if maps else []) if p.mAP is not None]
    if points:
        best = max(points, key=lambda p: p.mAP)
        ax.plot([p.threshold for p in points], [p.mAP for p in points], marker=".", label="mAP @[.5:.95]",
                color="#2563eb")
        ax.plot([best.threshold], [best.mAP], marker="*", markersize=13, color="#2563eb")
        ax.annotate(f"best {best.threshold:.2f}: {best.mAP:.3f}", (best.threshold, best.mAP),
                    textcoords="offset points", xytext=(6, -14), color="#2563eb")
    if current is not None:
        ax.axvline(current, color="grey", linestyle=":", label=f"current number threshold {current:.2f}")
    ax.set_xlabel("score threshold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title("Threshold sweep (at the current NMS setting)")
    return fig
