"""Does the annotation review find label errors? Plant known ones, run the model, score the suspect rankings.

A synthetic validation split (held-out styles) gets `--rate` of its boxes planted of each of four kinds, one
error per image (training.label_noise: swapped class, box shifted or resized to IoU 0.3-0.6, box deleted,
spurious box added). The shipped model's raw candidates (score floor 0.01, NMS off: what the app caches) are
computed once and cached. Rankings of the same predictions:
- previous review: detector.matching.find_annotation_suspects at minimum score 0.7 and the checkpoint's
  thresholds, what the app's review ran before detector.label_quality (kept here only as this baseline); an
  image scores its strongest suggestion;
- new: detector.label_quality.judge_labels, every suspicion; an image scores its strongest suspicion;
- app: studio.review.find_suggestions, the app's review call today: the new ranking cut at the app's default
  minimum score (images without a suggestion tie at 0);
- ObjectLab: cleanlab.object_detection.rank.get_label_quality_scores (optional, benchmark only:
  `pip install cleanlab`) on the same candidates, per class as it asks; an image scores 1 - its quality.
Per error kind: AP of the image ranking (positives: images holding an error of that kind; negatives: clean
images; other kinds left out) and precision at the top 50 / 100 of that ranking; 'all' ranks every image.
recall@5% / @20%: the share of planted errors that a reviewer reading a method's box-level suggestions, most
suspicious first, would meet within 5% / 20% of the number of labelled boxes (each place read once: see
`distinct`): a suggestion on the very label (or, for a deleted box, a suggested box at IoU >= 0.5 with it),
whatever kind it names. With 4 kinds at 4% each, 5% of the boxes can reach at most about 31% of the errors.
Then, for the minimum score: at each of MIN_SCORES, the app's suggestions per image, the share of them that point
at a planted error (each place once), and the share of the planted errors they find.

    python benchmarks/label_errors.py [--images 600] [--rate 0.04] [--seed 1] [--checkpoint CKPT] [--data DATA]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.checkpoint import DEFAULT_CHECKPOINT, read_meta
from detector.detections import Detections
from detector.fileio import atomic_write_text
from detector.hw2 import ImageRecord, load_split
from detector.label_quality import judge_labels
from detector.matching import find_annotation_suspects, match_records
from detector.predictor import DEFAULT_MAX_CANDIDATES, DEFAULT_SCORE_FLOOR, Predictor
from detector.refilter import refilter_many
from studio import cache
from studio.paths import user_cache_dir
from studio.review import DEFAULT_MIN_SCORE, find_suggestions
from training.label_noise import ERROR_KINDS, PlantedError, plant_label_errors
from training.synth import generate_dataset

CLEANLAB_INSTALL = "pip install cleanlab"
REVIEW_SHARES = (0.05, 0.20)  # recall when reviewing this share of the number of labelled boxes
PRECISION_AT = (50, 100)
FOUND_IOU = 0.5  # a suggested box this close to a deleted one finds it
PREVIOUS_MIN_SCORE = 0.7  # the app's default with the previous review
MIN_SCORES = (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97)


@dataclass(frozen=True)
class Flag:
    """One box-level suggestion: which label (gt_index) or which place (box, gt_index -1) it points at."""

    image_id: int
    gt_index: int
    box: tuple[float, float, float, float]
    score: float


@dataclass
class Ranking:
    name: str
    image_scores: dict[int, float]
    flags: list[Flag]  # most suspicious first
    seconds: float


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall steps; tied scores form one step (as sklearn's average_precision_score)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    if not y.any():
        return float("nan")
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp, seen = np.cumsum(y)[ends], ends + 1
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tp / seen))


def precision_at(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, kind="stable")[:k]
    return float(positive[top].mean()) if len(top) else float("nan")


def found(error: PlantedError, flags: Sequence[Flag]) -> bool:
    return any(points_at(f, error) for f in flags)


def points_at(f: Flag, error: PlantedError) -> bool:
    """Whether a suggestion is on the erroneous label, or (for a deleted box) suggests a box at IoU >= 0.5 with it."""
    if f.image_id != error.image_id:
        return False
    if error.gt_index >= 0:
        return f.gt_index == error.gt_index
    return f.gt_index < 0 and _iou(f.box, error.true_box) >= FOUND_IOU


def min_score_table(records: Sequence[ImageRecord], candidates: dict[int, Detections],
                    planted: Sequence[PlantedError]) -> list[dict[str, float]]:
    """At each minimum score, the app's suggestions (each place once): per image, the share that point at a
    planted error, and the share of the planted errors found."""
    by_image: dict[int, list[PlantedError]] = {}
    for e in planted:
        by_image.setdefault(e.image_id, []).append(e)
    rows = []
    for m in MIN_SCORES:
        flags = distinct([Flag(s.image_id, s.gt_index, s.box, s.confidence)
                          for s in find_suggestions(records, candidates, m)])
        real = sum(any(points_at(f, e) for e in by_image.get(f.image_id, ())) for f in flags)
        rows.append({"min_score": m, "suggestions": len(flags), "per_image": len(flags) / len(records),
                     "real": real / len(flags) if flags else float("nan"),
                     "found": float(np.mean([found(e, flags) for e in planted])) if planted else float("nan")})
    return rows


def distinct(flags: Sequence[Flag]) -> list[Flag]:
    """A reviewer reads each place once: later flags on the same label, or (for added boxes) at IoU >= 0.5 with
    an earlier flag's box in the same image, are dropped (ObjectLab on NMS-free candidates repeats one place)."""
    kept: list[Flag] = []
    seen: dict[int, list[Flag]] = {}
    for f in flags:
        earlier = seen.setdefault(f.image_id, [])
        if any((f.gt_index >= 0 and f.gt_index == e.gt_index) or (f.gt_index < 0 and e.gt_index < 0
               and _iou(f.box, e.box) >= FOUND_IOU) for e in earlier):
            continue
        earlier.append(f)
        kept.append(f)
    return kept


def _iou(a: Sequence[float], b: Sequence[float] | None) -> float:
    """One pair's IoU in plain Python: these loops call it per pair, where a tensor per call would dominate."""
    if b is None:
        return 0.0
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_ranking(ranking: Ranking, records: Sequence[ImageRecord], planted: Sequence[PlantedError]) -> dict[str, dict]:
    kind_of = {e.image_id: e.kind for e in planted}
    ids = [r.image_id for r in records]
    scores = np.array([ranking.image_scores.get(i, 0.0) for i in ids])
    kinds = np.array([kind_of.get(i, "clean") for i in ids])
    n_boxes = sum(len(r.category_ids) for r in records)
    flags = distinct(ranking.flags)
    reviewed = {share: flags[:math.ceil(share * n_boxes)] for share in REVIEW_SHARES}
    out = {}
    for kind in (*ERROR_KINDS, "all"):
        use = np.ones(len(ids), bool) if kind == "all" else (kinds == kind) | (kinds == "clean")
        positive = (kinds != "clean") if kind == "all" else (kinds == kind)
        errors = [e for e in planted if kind in ("all", e.kind)]
        out[kind] = {"AP": average_precision(scores[use], positive[use]),
                     **{f"P@{k}": precision_at(scores[use], positive[use], k) for k in PRECISION_AT},
                     **{f"recall@{share:.0%}": float(np.mean([found(e, reviewed[share]) for e in errors]))
                        for share in REVIEW_SHARES},
                     "positives": int(positive[use].sum())}
    return out


def previous_review(records: Sequence[ImageRecord], candidates: dict[int, Detections], t: Any) -> Ranking:
    """The review before detector.label_quality; `t`: the checkpoint's thresholds, which it used."""
    start = time.perf_counter()
    final = refilter_many({r.image_id: candidates[r.image_id] for r in records}, min(t.score, PREVIOUS_MIN_SCORE),
                          t.nms_iou, t.class_agnostic)
    suspects = find_annotation_suspects(match_records(records, final), min_score=PREVIOUS_MIN_SCORE)
    seconds = time.perf_counter() - start
    flags = [Flag(s.image_id, s.gt_index, s.box, s.confidence) for s in suspects]  # already most confident first
    return Ranking(f"previous review (min score {PREVIOUS_MIN_SCORE})", _image_max(flags), flags, seconds)


def app_review(records: Sequence[ImageRecord], candidates: dict[int, Detections]) -> Ranking:
    start = time.perf_counter()
    suggestions = find_suggestions(records, candidates, DEFAULT_MIN_SCORE)
    seconds = time.perf_counter() - start
    flags = [Flag(s.image_id, s.gt_index, s.box, s.confidence) for s in suggestions]  # most suspicious first
    return Ranking(f"app (review tab, min score {DEFAULT_MIN_SCORE})", _image_max(flags), flags, seconds)


def new_review(records: Sequence[ImageRecord], candidates: dict[int, Detections]) -> Ranking:
    start = time.perf_counter()
    judgements = judge_labels(records, candidates)
    seconds = time.perf_counter() - start
    flags = sorted((Flag(s.image_id, s.gt_index, s.box, s.confidence) for j in judgements for s in j.suspects()),
                   key=lambda f: -f.score)
    return Ranking("new (detector.label_quality)", {j.image_id: j.score for j in judgements}, flags, seconds)


def objectlab_review(records: Sequence[ImageRecord], candidates: dict[int, Detections]) -> Ranking | str:
    """ObjectLab on every raw candidate (its best input here: per-class NMS or score cuts first scored lower)."""
    try:
        from cleanlab.object_detection import rank
    except ImportError:
        return f"ObjectLab: not run (`{CLEANLAB_INSTALL}` to add it; optional, benchmark only)"
    labels = [{"bboxes": r.boxes.astype(np.float32).reshape(-1, 4), "labels": r.category_ids.astype(np.int64) - 1}
              for r in records]
    predictions = [_per_class(candidates[r.image_id]) for r in records]
    start = time.perf_counter()
    quality = rank.get_label_quality_scores(labels, predictions, verbose=False)
    seconds = time.perf_counter() - start
    aux = rank._get_valid_inputs_for_compute_scores(rank.ALPHA, labels, predictions)  # shared by the box scores
    per_box = [rank.compute_swap_box_scores(auxiliary_inputs=aux), rank.compute_badloc_box_scores(auxiliary_inputs=aux)]
    overlooked = rank.compute_overlooked_box_scores(auxiliary_inputs=aux)
    flags = []
    for i, r in enumerate(records):
        label_quality = np.minimum(per_box[0][i], per_box[1][i])
        flags += [Flag(r.image_id, g, tuple(r.boxes[g].tolist()), 1 - float(q)) for g, q in enumerate(label_quality)]
        pred_boxes = np.concatenate([p[:, :4] for p in predictions[i]])
        flags += [Flag(r.image_id, -1, tuple(pred_boxes[j].tolist()), 1 - float(q))
                  for j, q in enumerate(overlooked[i]) if not np.isnan(q)]
    flags.sort(key=lambda f: -f.score)
    return Ranking("ObjectLab (cleanlab)", {r.image_id: 1 - float(q) for r, q in zip(records, quality, strict=True)},
                   flags, seconds)


def _per_class(d: Detections) -> list[np.ndarray]:
    """ObjectLab's prediction format: one (M_k, 5) [x1, y1, x2, y2, score] array per class, index = category id - 1."""
    rows = torch.cat([d.boxes.float(), d.scores.float()[:, None]], dim=1).numpy()
    labels = d.labels.numpy()
    return [rows[labels == k].reshape(-1, 5) for k in range(1, 11)]


def _image_max(flags: Sequence[Flag]) -> dict[int, float]:
    out: dict[int, float] = {}
    for f in flags:
        out[f.image_id] = max(out.get(f.image_id, 0.0), f.score)
    return out


def synthetic_split(n_images: int, seed: int) -> Path:
    """A held-out-style synthetic validation split, generated once per (size, seed) into the user cache."""
    root = user_cache_dir() / "label_errors" / f"heldout-valid{n_images}-seed{seed}"
    if not (root / "valid.json").exists():
        print(f"generating {n_images} synthetic validation images (held-out styles, seed {seed}) in {root}")
        generate_dataset(root, {"train": 0, "valid": n_images, "test": 0}, seed=seed, styles="heldout",
                         workers=1, overwrite=True)
    return root


def model_candidates(checkpoint: Path, data: Path, records: Sequence[ImageRecord], device: str) -> dict[int, Detections]:
    """The model's raw candidates, read from (and written to) the app's own candidate cache."""
    settings = f"floor={DEFAULT_SCORE_FLOOR},max={DEFAULT_MAX_CANDIDATES}"  # the app's, so the cache is shared
    path = cache.cache_path(checkpoint, cache.checkpoint_fingerprint(checkpoint),
                            cache.data_fingerprint(data / "valid.json", records), settings)
    cached = cache.load_candidates(path)
    if cached is not None and all(r.image_id in cached for r in records):
        return cached
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    out = {}
    for image_id, result in predictor.candidates_for_paths([(r.image_id, r.path) for r in records]):
        if isinstance(result, Exception):
            raise result
        out[image_id] = result
    cache.save_candidates(path, out)
    return out


def print_table(results: dict[str, dict[str, dict]], rankings: Sequence[Ranking], n_images: int) -> None:
    metrics = ("AP", *(f"P@{k}" for k in PRECISION_AT), *(f"recall@{share:.0%}" for share in REVIEW_SHARES))
    print("| error kind (images) | method | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for kind in (*ERROR_KINDS, "all"):
        for r in rankings:
            row = results[r.name][kind]
            print(f"| {kind} ({row['positives']}) | {r.name} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + " |")
    print("\nms per image (ranking only, the model's candidates cached): "
          + ", ".join(f"{r.name}: {1000 * r.seconds / n_images:.2f}" for r in rankings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=600, help="validation images (default 600)")
    parser.add_argument("--rate", type=float, default=0.04, help="share of boxes planted of each kind (default 0.04)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the synthetic split and of the planting (default 1; seed 0 was used to choose "
                             "detector.label_quality's constants)")
    parser.add_argument("--checkpoint", type=Path, default=Path(DEFAULT_CHECKPOINT))
    parser.add_argument("--data", type=Path, help="an HW2 folder whose valid split to use (default: a synthetic one, "
                                                  "generated once into the user cache)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/label_errors.json"), help="the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    data = args.data or synthetic_split(args.images, args.seed)
    records = load_split(data, "valid").records[:args.images]
    candidates = model_candidates(args.checkpoint, data, records, args.device)
    noisy, planted = plant_label_errors(records, args.rate, args.seed)
    thresholds = read_meta(args.checkpoint).thresholds
    rankings = [previous_review(noisy, candidates, thresholds), new_review(noisy, candidates),
                app_review(noisy, candidates)]
    anchor = objectlab_review(noisy, candidates)
    notes = [anchor] if isinstance(anchor, str) else []
    rankings += [] if isinstance(anchor, str) else [anchor]
    results = {r.name: score_ranking(r, noisy, planted) for r in rankings}
    n_boxes = sum(len(r.category_ids) for r in noisy)
    print(f"{len(records)} images, {n_boxes} labelled boxes after planting {len(planted)} errors "
          f"({args.rate:.0%} of the boxes of each kind, seed {args.seed}); data {data}; checkpoint {args.checkpoint}\n")
    print_table(results, rankings, len(records))
    for note in notes:
        print(note)
    by_min_score = min_score_table(noisy, candidates, planted)
    print("\n| minimum score | suggestions per image | share of them real | planted errors found |\n|---|---|---|---|")
    for row in by_min_score:
        print(f"| {row['min_score']:.2f} | {row['per_image']:.2f} ({row['suggestions']}) | {row['real']:.0%} "
              f"| {row['found']:.0%} |")
    payload = {"images": len(records), "boxes": n_boxes, "rate": args.rate, "seed": args.seed, "data": str(data),
               "checkpoint": str(args.checkpoint), "app_min_score": DEFAULT_MIN_SCORE,
               "previous_min_score": PREVIOUS_MIN_SCORE,
               "previous_thresholds": {k: getattr(thresholds, k) for k in ("score", "nms_iou", "class_agnostic")},
               "by_min_score": by_min_score,
               "results": results, "ms_per_image": {r.name: 1000 * r.seconds / len(records) for r in rankings},
               "notes": notes, "planted": [asdict(e) for e in planted], "machine": platform.platform()}
    atomic_write_text(args.out, json.dumps(payload, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
