"""`python -m detector predict|evaluate|calibrate|info|convert`: the command line for trained checkpoints.

predict writes Task 1's pred.json (every detection above a low floor after NMS: cutting the JSON at the
display threshold would cost mAP) and Task 2's pred.csv (numbers read at the checkpoint's calibrated number
thresholds, per digit where it has them, unless --number-threshold / --no-per-digit say otherwise).
calibrate chooses those thresholds on a labelled split and writes them into a copy of the checkpoint.
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
    from detector.predictor import Predictor


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help=f"checkpoint file (.safetensors); default: the shipped {DEFAULT_CHECKPOINT.name}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--nms-iou", type=float, default=None, help="NMS IoU threshold (default: the checkpoint's)")
    p.add_argument("--class-agnostic", action=argparse.BooleanOptionalAction, default=None,
                   help="NMS across classes (digits never overlap) or per class (default: the checkpoint's)")
    p.add_argument("--number-threshold", type=float, default=None,
                   help="score threshold for reading numbers, for digits without their own (default: the "
                        "checkpoint's calibrated one)")
    p.add_argument("--per-digit", action=argparse.BooleanOptionalAction, default=None,
                   help="use the checkpoint's per-digit number thresholds where it has them (default); "
                        "--no-per-digit reads every digit at the number threshold")
    p.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=True,
                   help="re-read a number that is small in the model's input from a crop around it (default; "
                        "detector.zoom); --no-zoom: one pass per image")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_predictor(args: argparse.Namespace) -> Predictor:
    from detector.predictor import Predictor
    from detector.zoom import ZoomConfig

    return Predictor.from_checkpoint(args.checkpoint, device=args.device, zoom=ZoomConfig() if args.zoom else None)


def _thresholds(args: argparse.Namespace, checkpoint: Thresholds) -> Thresholds:
    """The checkpoint's thresholds with the command line's over them: the one way to override them."""
    return checkpoint.override(nms_iou=args.nms_iou, class_agnostic=args.class_agnostic,
                               number_score=args.number_threshold, per_digit=args.per_digit)


def describe_number_thresholds(t: Thresholds) -> str:
    """'number threshold 0.65' or 'number threshold 0.65 (digit 1: 0.80, digit 7: 0.55)'."""
    own = ", ".join(f"digit {d}: {v:.2f}" for d, v in t.number_score_by_digit)
    return f"number threshold {t.number_score:.2f}" + (f" ({own})" if own else "")


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

    p = sub.add_parser("calibrate", help="choose the number thresholds (global and per digit) on a labelled split "
                                         "and write them into a copy of the checkpoint")
    _add_common(p)
    p.add_argument("--data", type=Path, required=True, help="HW2 data folder with valid.json and valid/")
    p.add_argument("--split", default="valid", choices=("train", "valid"))
    p.add_argument("--out", type=Path, default=None,
                   help="the calibrated copy (default: CHECKPOINT with .calibrated before .safetensors)")
    p.add_argument("--min-digit-count", type=int, default=None,
                   help="ground-truth boxes a digit needs in the split before it may get its own threshold "
                        "(default: detector.calibration.MIN_DIGIT_COUNT)")

    p = sub.add_parser("info", help="print a checkpoint's metadata (without loading its weights)")
    p.add_argument("checkpoint", type=Path)

    p = sub.add_parser("convert", help="turn a trusted tensors-only state dict (.pt/.pth) into a checkpoint")
    p.add_argument("--weights", type=Path, required=True, help="state dict file, loaded with weights_only=True")
    p.add_argument("--preset", required=True)
    p.add_argument("--out", type=Path, required=True)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    from detector.refilter import above_score
    from detector.results_io import write_pred_csv, write_pred_json

    folder = scan_images(args.images)
    for message in folder.skipped:
        print(f"warning: skipped {message}", file=sys.stderr)
    items = folder.items
    if not items:
        raise AnnotationError(f"{args.images}: no images named <id>.<ext> found ({' '.join(IMAGE_SUFFIXES)})")
    predictor = _load_predictor(args)
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
        final = t.final_down_to(result, args.score_floor)
        detections[image_id] = above_score(final, args.score_floor)
        readings[image_id] = t.number(final)
    ids = [i for i, _ in items]
    json_path = write_pred_json(args.out / "pred.json", detections, image_ids=ids)
    csv_path = write_pred_csv(args.out / "pred.csv", readings, image_ids=ids)
    n_boxes = sum(len(d) for d in detections.values())
    print(f"wrote {json_path} ({n_boxes} boxes, score >= {args.score_floor}) and {csv_path} "
          f"({len(ids)} rows, {describe_number_thresholds(t)}, NMS IoU {t.nms_iou:.2f}"
          f"{', class-agnostic' if t.class_agnostic else ''})")
    for message in failed:
        print(f"warning: no prediction for an unreadable or unusable image (pred_label -1): {message}",
              file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from detector.coco_eval import STAT_NAMES
    from detector.scoring import score_split

    split = load_split(args.data, args.split)
    print(split.report.summary())
    predictor = _load_predictor(args)
    t = _thresholds(args, predictor.meta.thresholds)
    score = score_split(predictor, split, t, backend=args.backend, batch_size=args.batch_size,
                        progress=not args.no_progress)
    width = max(len(n) for n in STAT_NAMES)
    for name in STAT_NAMES:
        print(f"{name:<{width}}  {score.metrics[name]:.4f}")
    print(f"{'number accuracy':<{width}}  {score.number_accuracy:.4f}  ({describe_number_thresholds(t)})")
    if args.json:
        args.json.write_text(json.dumps(score.row(), indent=2))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from detector.calibration import MIN_DIGIT_COUNT, calibrate
    from detector.checkpoint import update_meta
    from detector.scoring import predict_split

    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}.calibrated{args.checkpoint.suffix}")
    if out.resolve() == args.checkpoint.resolve():
        raise ValueError(f"--out {out} is the checkpoint itself; calibrate writes a copy: give another --out")
    if args.min_digit_count is not None and args.min_digit_count < 0:
        raise ValueError(f"--min-digit-count should be 0 or more, got {args.min_digit_count}")
    split = load_split(args.data, args.split)
    print(split.report.summary())
    predictor = _load_predictor(args)
    own = _thresholds(args, predictor.meta.thresholds)
    candidates = predict_split(predictor, split, args.batch_size, progress=not args.no_progress)
    min_count = MIN_DIGIT_COUNT if args.min_digit_count is None else args.min_digit_count
    result = calibrate(split.records, candidates, own, per_digit=args.per_digit is not False, min_count=min_count)
    summary = {**result.summary(), "data": str(args.data), "split": args.split}
    update_meta(args.checkpoint, to=out, thresholds=result.thresholds, metrics={"calibration": summary})
    t = result.thresholds
    print(f"number accuracy on {args.split} ({result.images} images): {result.accuracy_global:.4f} at the global "
          f"threshold, {result.accuracy:.4f} with {describe_number_thresholds(t)}; NMS IoU {t.nms_iou:.2f}"
          f"{', class-agnostic' if t.class_agnostic else ''}")
    digits_short = [str(d) for d, n in result.digit_counts.items() if n < min_count]
    if digits_short:
        print(f"digits with fewer than {min_count} boxes in the split keep the global threshold: "
              f"{' '.join(digits_short)}")
    print(f"wrote {out}")
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


COMMANDS = {"predict": cmd_predict, "evaluate": cmd_evaluate, "calibrate": cmd_calibrate, "info": cmd_info,
            "convert": cmd_convert}


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
