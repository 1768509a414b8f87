"""Figures for the failure browser: the confusion matrix (a clickable, shaded table), precision-recall curve,
threshold sweep, TIDE's error decomposition, and each digit's precision / recall / F1 curves.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so concurrent requests never draw
into each other's axes.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure

from detector.categories import NUM_DIGITS, digit_to_category
from detector.coco_eval import CocoMetrics, ThresholdSweep
from detector.matching import CONFUSION_LABELS
from detector.score_curves import ScoreCurves
from detector.thresholds import Thresholds
from detector.tide import ERROR_KINDS, ERROR_NAMES, SPECIAL_KINDS, TideResult

TIDE_COLOURS = {"Cls": "#dc2626", "Loc": "#f59e0b", "Both": "#a855f7", "Dupe": "#0ea5e9", "Bkg": "#64748b",
                "Miss": "#2563eb", "FalsePos": "#cbd5e1", "FalseNeg": "#cbd5e1"}
CONFUSION_CORNER = "true \\ predicted"


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


def confusion_table(cm: np.ndarray):
    """The confusion matrix as a table a user can click (a pandas Styler: counts, shaded by row share).

    Row i, column j+1 of the table is cell (i, j) of `cm`; column 0 holds the true digit.
    """
    import pandas as pd

    counts = np.asarray(cm, dtype=np.int64)
    labels = [("bg" if name == "background" else name) for name in CONFUSION_LABELS]
    columns = [*labels[:-1], "missed"]
    frame = pd.DataFrame(counts, columns=columns)
    frame.insert(0, CONFUSION_CORNER, [*labels[:-1], "FP"])
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    def shade(column: pd.Series) -> list[str]:
        if column.name == CONFUSION_CORNER:
            return ["font-weight: bold"] * len(column)
        j = columns.index(str(column.name))
        return [f"background-color: rgba(37, 99, 235, {0.08 + 0.8 * share[i, j]:.2f})" if counts[i, j] else ""
                for i in range(len(column))]

    return frame.style.apply(shade, axis=0)


def tide_figure(result: TideResult, thresholds: Thresholds | None = None) -> Figure:
    """AP50 points gained by fixing each TIDE error kind alone (and the two special fixes), with error counts."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    kinds = [*ERROR_KINDS, *SPECIAL_KINDS]
    values = [100 * result.delta_ap[k] for k in ERROR_KINDS] + [100 * result.special[k] for k in SPECIAL_KINDS]
    counts = result.counts()
    y = np.arange(len(kinds))[::-1]
    ax.barh(y, values, color=[TIDE_COLOURS[k] for k in kinds])
    names = [f"{k} ({ERROR_NAMES[k]})" if k in ERROR_NAMES else k for k in kinds]
    ax.set_yticks(y, names, fontsize=8)
    top = max([*values, 1.0])
    for yi, k, v in zip(y, kinds, values, strict=True):
        note = f"{v:.2f}" + (f"  ({counts[k]} errors)" if k in counts else "")
        ax.text(v + 0.01 * top, yi, note, va="center", fontsize=8)
    ax.axhline(len(SPECIAL_KINDS) - 0.5, color="#94a3b8", linewidth=0.8)
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("AP50 points gained by fixing only that kind (dAP)")
    where = f" on boxes at score ≥ {thresholds.score:.2f}" if thresholds is not None else ""
    ax.set_title(f"TIDE: AP50 {100 * result.ap:.1f}{where}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def f1_figure(curves: ScoreCurves, thresholds: Thresholds) -> Figure:
    """Precision, recall and F1 of each digit against the score threshold; the digit's number threshold (its own
    or the global one) marked with a dashed line, the score slider dotted, the best F1 starred."""
    fig = Figure(figsize=(12.0, 5.2), layout="constrained")
    axes = fig.subplots(2, 5, sharex=True, sharey=True)
    t = curves.thresholds
    own = dict(thresholds.number_score_by_digit)
    for digit, ax in zip(range(NUM_DIGITS), axes.flat, strict=True):
        ax.plot(t, curves.precision[digit], color="#2563eb", label="precision")
        ax.plot(t, curves.recall[digit], color="#16a34a", label="recall")
        ax.plot(t, curves.f1[digit], color="#111827", linewidth=2, label="F1")
        cut = thresholds.number_score_of(digit_to_category(digit))
        ax.axvline(cut, color="#dc2626", linestyle="--", linewidth=1.2,
                   label="number threshold (own)" if digit in own else "number threshold")
        ax.axvline(thresholds.score, color="grey", linestyle=":", linewidth=1, label="score threshold")
        if (best := curves.best_f1(digit)) is not None:
            ax.plot([best[0]], [best[1]], marker="*", markersize=10, color="#111827")
        mark = " (own cut)" if digit in own else ""
        ax.set_title(f"digit {digit}: {curves.ground_truths[digit]} boxes{mark}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("score threshold")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle("Precision / recall / F1 per digit (IoU 0.5) against the score threshold", fontsize=10)
    return fig
