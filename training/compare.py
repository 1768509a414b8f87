"""`python -m training compare RUN RUN ... --out FILE.png`: overlay runs (e.g. the seed's original vs DIoU vs
CIoU figures) and print each run's best epoch as a table.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.plots import plt, read_metrics, save_figure, stat_value


def run_label(run_dir: Path) -> str:
    config_file = run_dir / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        return f"{run_dir.name} ({config.get('preset')}, {config.get('loss')})"
    return run_dir.name


def best_row(run_dir: Path) -> dict[str, Any]:
    """The run's best-mAP epoch as a table row."""
    records = [r for r in read_metrics(run_dir) if "valid" in r]
    if not records:
        return {"run": run_label(run_dir), "epochs": 0}
    best = max(records, key=lambda r: r["valid"]["AP"])
    all_records = read_metrics(run_dir)
    return {
        "run": run_label(run_dir), "epochs": all_records[-1]["epoch"], "best_epoch": best["epoch"],
        **{k: best["valid"][k] for k in ("AP", "AP50", "AP75", "AR100", "number_accuracy")},
        "img/s": sum(r["images_per_s"] for r in all_records) / len(all_records),
        "train_min": sum(r["time_s"] for r in all_records) / 60,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[f"{row.get(c, ''):.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) for r in cells]
    return "\n".join(lines)


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path) -> str:
    """Overlay runs' validation mAP, AP50, number accuracy and training loss in one figure; return the table."""
    runs = [Path(d) for d in run_dirs]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = (("AP", "validation mAP@[.5:.95]"), ("AP50", "validation AP50"),
              ("number_accuracy", "validation number accuracy"), ("loss", "training loss"))
    for run in runs:
        records = read_metrics(run)
        epochs = [r["epoch"] for r in records]
        label = run_label(run)
        for ax, (key, title) in zip(axes.flat, panels, strict=False):
            values = [r.get(key, math.nan) for r in records] if key == "loss" else [stat_value(r, "valid", key) for r in records]
            ax.plot(epochs, values, marker="o", ms=3, label=label)
            ax.set(xlabel="epoch", title=title)
            ax.grid(alpha=0.3)
    for ax in axes.flat:
        ax.legend(fontsize=8)
    save_figure(fig, Path(out))
    return format_table([best_row(run) for run in runs])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl)")
    parser.add_argument("--out", default="compare.png", help="figure to write [compare.png]")
    args = parser.parse_args(argv)
    print(compare_runs(args.runs, args.out))
    print(f"figure: {args.out}")
    return 0
