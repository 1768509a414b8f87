"""Command line: `python -m training train ...`, `compare ...`, `stats ...` and `soup ...`.

  python -m training train --data DATA --preset seed epochs=3 batch=8 lr=1e-4 loss=ciou device=cuda
  python -m training train resume=runs/train/seed-original          (or resume=true: the newest run)
  torchrun --nproc_per_node=2 -m training train --data DATA --preset fast
  python -m training compare runs/train/a runs/train/b --out compare.png
  python -m training stats DATA --preset effnet_lite0                  (box statistics and the anchor check)
  python -m training soup --out soup.safetensors A.safetensors B.safetensors   (weight averaging of fine-tunes)
Options are Ultralytics-style key=value; `python -m training train --help` lists every one with its default.
Exit status: 0 done, 2 bad option or data, 3 training diverged (NaN/exploding loss or weights), 4 disk full
(the run still resumes), 130 stopped by Ctrl-C (resumes).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from detector.hw2 import AnnotationError
from detector.models import PRESETS, WeightsUnavailableError
from training.config import ConfigError, help_text, parse_overrides, resolve


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a Faster R-CNN digit detector; everything goes into one run folder "
                    "(config.json, weights/{last,best}.safetensors, weights/last_state.pt, metrics.jsonl, train.log, plots/).",
        epilog=help_text())
    parser.add_argument("--data", help="data folder (same as data=DATA)")
    parser.add_argument("--preset", choices=tuple(PRESETS), help="model preset (same as preset=NAME) [seed]")
    parser.add_argument("--resume", help="run folder to continue, or true (same as resume=...)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="options listed below")
    return parser


def train_main(argv: Sequence[str]) -> int:
    args = _train_parser().parse_args(argv)
    try:
        overrides, model_overrides = parse_overrides(args.overrides)
        for key in ("data", "preset", "resume"):
            if getattr(args, key):
                overrides[key] = getattr(args, key)
        from training.train import DiskFullError, TrainingInterrupted, resume_config, train

        if overrides.get("resume"):
            if model_overrides:
                raise ConfigError(f"model options {sorted(model_overrides)} cannot change when resuming")
            config, _ = resume_config(overrides["resume"], overrides, overrides.get("project", "runs/train"))
        else:
            if not overrides.get("data"):
                raise ConfigError("--data DATA (or data=DATA) is required; see --help")
            config = resolve(overrides, model_overrides)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from training.engine import NonFiniteLossError

    try:
        run_dir = train(config, command=shlex.join(["python", "-m", "training", "train", *argv]))
    except TrainingInterrupted as stop:
        print(f"\ninterrupted: {stop}", file=sys.stderr)
        return 130
    except NonFiniteLossError as err:
        logging.getLogger("training").error("%s", err)  # console and train.log (rank 0)
        return 3
    except DiskFullError as err:
        logging.getLogger("training").error("%s", err)
        return 4
    except (AnnotationError, WeightsUnavailableError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return train_main(argv[1:])
    if argv and argv[0] == "compare":
        from training.compare import main as compare_main

        return compare_main(argv[1:])
    if argv and argv[0] == "soup":
        from training.soup import main as soup_main

        return soup_main(argv[1:])
    if argv and argv[0] == "stats":
        from training.stats import main as stats_main

        return stats_main(argv[1:])
    print(__doc__)
    return 0 if argv and argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
