"""`python -m detector predict|evaluate|info|convert`: the command line for trained checkpoints.

predict writes Task 1's pred.json (every detection above a low floor after NMS: cutting the JSON at the
display threshold would cost mAP) and Task 2's pred.csv (numbers read at the checkpoint's calibrated number
threshold unless --number-threshold is given).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from detector.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, CheckpointMeta, read_meta, save_checkpoint
from detector.coco_eval import BACKENDS as COCO_BACKENDS
from detector.hw2 import IMAGE_SUFFIXES, AnnotationError, load_split, scan_images
from detector.images import ImageLoadError
from detector.models import WeightsUnavailableError
from detector.scoring import MAP_SCORE_FLOOR as JSON_SCORE_FLOOR
from detector.thresholds import Thresholds

if TYPE_CHECKING:  # imported lazily at run time: `--help` stays fast
    from detector.detections import Detections
    from detector.number import NumberReading


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help=f"checkpoint file (.safetensors); default: the shipped {DEFAULT_CHECKPOINT.name}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--nms-iou", type=float, default=None, help="NMS IoU threshold (default: the checkpoint's)")
    p.add_argument("--class-agnostic", action=argparse.BooleanOptionalAction, default=None,
                   help="NMS across classes (digits never overlap) or per class (default: the checkpoint's)")
    p.add_argument("--number-threshold", type=float, default=None,
                   help="score threshold for reading numbers (default: the checkpoint's calibrated one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _thresholds(args: argparse.Namespace, checkpoint: Thresholds) -> Thresholds:
    """The checkpoint's thresholds with the command line's over them: the one way to override them."""
    return checkpoint.override(nms_iou=args.nms_iou, class_agnostic=args.class_agnostic,
                               number_score=args.number_threshold)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="write pred.json and pred.csv for a folder of images")
    _add_common(p)
    p.add_argument("--images", type=Path, required=True, help="folder of <id>.png images (e.g. DATA/test)")
    p.add_argument("--out", type=Path, required=True, help="output folder for pred.json and pred.csv")
    p.add_argument("--score-floor", type=float, default=JSON_SCORE_FLOOR,
                   help=f"lowest score written to pred.json (default {JSON_SCORE_FLOOR})")

    p = sub.add_parser("evaluate", help="COCO mAP (12 stats) and number accuracy on a labelled split")
    _add_common(p)
    p.add_argument("--data", type=Path, required=True, help="HW2 data folder with valid.json and valid/")
    p.add_argument("--split", default="valid", choices=("train", "valid"))
    p.add_argument("--backend", default="pycocotools", choices=COCO_BACKENDS)
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")

    p = sub.add_parser("info", help="print a checkpoint's metadata (without loading its weights)")
    p.add_argument("checkpoint", type=Path)

    p = sub.add_parser("convert", help="turn a trusted tensors-only state dict (.pt/.pth) into a checkpoint")
    p.add_argument("--weights", type=Path, required=True, help="state dict file, loaded with weights_only=True")
    p.add_argument("--preset", required=True)
    p.add_argument("--out", type=Path, required=True)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    from detector.predictor import Predictor
    from detector.refilter import above_score, refilter
    from detector.results_io import write_pred_csv, write_pred_json

    folder = scan_images(args.images)
    for message in folder.skipped:
        print(f"warning: skipped {message}", file=sys.stderr)
    items = folder.items
    if not items:
        raise AnnotationError(f"{args.images}: no images named <id>.<ext> found ({' '.join(IMAGE_SUFFIXES)})")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    t = _thresholds(args, predictor.meta.thresholds)
    detections: dict[int, Detections] = {}
    readings: dict[int, NumberReading | int] = {}
    failed: list[str] = []
    for image_id, result in predictor.candidates_for_paths(items, args.batch_size, progress=not args.no_progress):
        if isinstance(result, Exception):
            failed.append(str(result))
            readings[image_id] = -1
            continue
        # one NMS at the lower of the two cuts: pred.json's floor does not change the numbers read (see refilter)
        final = refilter(result, min(args.score_floor, t.number_score), t.nms_iou, t.class_agnostic)
        detections[image_id] = above_score(final, args.score_floor)
        readings[image_id] = t.number(final)
    ids = [i for i, _ in items]
    json_path = write_pred_json(args.out / "pred.json", detections, image_ids=ids)
    csv_path = write_pred_csv(args.out / "pred.csv", readings, image_ids=ids)
    n_boxes = sum(len(d) for d in detections.values())
    print(f"wrote {json_path} ({n_boxes} boxes, score >= {args.score_floor}) and {csv_path} "
          f"({len(ids)} rows, number threshold {t.number_score:.2f}, NMS IoU {t.nms_iou:.2f}"
          f"{', class-agnostic' if t.class_agnostic else ''})")
    for message in failed:
        print(f"warning: no prediction for an unreadable or unusable image (pred_label -1): {message}",
              file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from detector.coco_eval import STAT_NAMES
    from detector.predictor import Predictor
    from detector.scoring import score_split

    split = load_split(args.data, args.split)
    print(split.report.summary())
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    t = _thresholds(args, predictor.meta.thresholds)
    score = score_split(predictor, split, t, backend=args.backend, batch_size=args.batch_size,
                        progress=not args.no_progress)
    width = max(len(n) for n in STAT_NAMES)
    for name in STAT_NAMES:
        print(f"{name:<{width}}  {score.metrics[name]:.4f}")
    print(f"{'number accuracy':<{width}}  {score.number_accuracy:.4f}  (number threshold {t.number_score:.2f})")
    if args.json:
        args.json.write_text(json.dumps(score.row(), indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    meta = read_meta(args.checkpoint)
    print(json.dumps({"config": meta.config.to_dict(), "class_names": meta.class_names,
                      "thresholds": meta.thresholds.to_dict(), "metrics": meta.metrics, "training": meta.training,
                      "code_version": meta.code_version, "created": meta.created}, indent=2))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from detector.checkpoint import load_checkpoint
    from detector.models import build_model, get_preset

    config = get_preset(args.preset)
    model = build_model(config, weights=str(args.weights))
    path = save_checkpoint(args.out, model.state_dict(), CheckpointMeta(config=config,
                           training={"converted_from": str(args.weights)}))
    load_checkpoint(path)  # prove it loads strictly
    print(f"wrote {path}")
    return 0


COMMANDS = {"predict": cmd_predict, "evaluate": cmd_evaluate, "info": cmd_info, "convert": cmd_convert}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CheckpointError, AnnotationError, ImageLoadError, WeightsUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written for this run", file=sys.stderr)
        return 130
