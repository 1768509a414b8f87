"""Write a synthetic dataset in exactly the HW2 layout, in parallel and reproducibly.

DATA/{train,valid,test}/<id>.png, DATA/train.json, DATA/valid.json (COCO), no labels for test, and
DATA/synth_meta.json (generator settings and every image's style). Each image is seeded from
(seed, split, index) alone, so the bytes do not depend on the number of worker processes or on
which worker drew which image.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from detector.coco_format import coco_dict, write_coco
from training.synth.fonts import all_typefaces, font_search_paths, probe_state, use_probe_state
from training.synth.geometry import GEOMETRY_FILE, read_coco
from training.synth.render import VISIBLE_INK_MIN, render_sample, render_twin
from training.synth.styles import check_share, heldout_members

SPLITS = ("train", "valid", "test")
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
DEFAULT_COUNTS = {"train": 1000, "valid": 200, "test": 200}
SYNTH_VERSION = "1.0"

# (split, index, seed, share, twin layout or None, negative)
Task = tuple[str, int, int, str, tuple[int, int, list, list, int] | None, bool]
NEGATIVE_STREAM = 3  # a SeedSequence key of its own: choosing negatives does not shift any image's randomness


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The one place an image's randomness comes from: (seed, split, index), nothing else."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def is_negative(seed: int, index: int, rate: float) -> bool:
    """Whether train image `index` is a negative (no number): decided by (seed, index) alone."""
    if rate <= 0:
        return False
    return bool(np.random.default_rng(np.random.SeedSequence([int(seed), NEGATIVE_STREAM, int(index)])).random() < rate)


def code_version() -> str:
    """Version plus a hash of the generator's source and figures: two datasets with equal strings were
    drawn by the same code."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for p in sorted(here.glob("*.py")) + [GEOMETRY_FILE]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return f"{SYNTH_VERSION}+{h.hexdigest()[:12]}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _render_task(task: Task, out: str) -> tuple[str, int, int, int, list, list, dict]:
    split, index, seed, share, twin, negative = task
    rng = image_rng(seed, split, index)
    if twin is None:
        image, boxes, cats, meta = render_sample(rng, share, negative=negative)  # type: ignore[arg-type]
    else:
        width, height, twin_boxes, twin_cats, source_id = twin
        image, _, _, meta = render_twin(rng, width, height, np.array(twin_boxes), np.array(twin_cats),
                                        share)  # type: ignore[arg-type]
        boxes, cats = np.array(twin_boxes, np.float32).reshape(-1, 4), np.array(twin_cats, np.int64)
        meta["layout_image_id"] = source_id
    path = Path(out) / split / f"{index}.png"
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"{path}: could not write image")
    return split, index, int(image.shape[1]), int(image.shape[0]), boxes.tolist(), cats.tolist(), meta


def _worker_init(probe: tuple) -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only contend
    use_probe_state(probe)


def _run(tasks: list[Task], out: Path, workers: int) -> Iterable[tuple]:
    if workers <= 1:
        for t in tasks:
            yield _render_task(t, str(out))
        return
    # forkserver, not fork: a parent that already ran OpenCV (or torch) has thread pools that a forked
    # child inherits half-dead, and it hangs; the fork server is a clean process with our modules preloaded
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["training.synth.writer"])
    chunk = max(1, min(32, len(tasks) // (workers * 8)))
    with ctx.Pool(workers, initializer=_worker_init, initargs=(probe_state(),)) as pool:
        yield from pool.imap_unordered(_task_star, [(t, str(out)) for t in tasks], chunksize=chunk)


def _task_star(args: tuple[Task, str]) -> tuple:
    return _render_task(*args)


def _coco(results: list[tuple]) -> dict:
    """The split's COCO dict: boxes to 0.01 px, clipped to the image, empty ones left out."""
    from detector.boxes import xyxy_to_xywh  # imports torch: kept off the worker start-up path

    images, annotations = [], []
    for _, index, width, height, boxes, cats, _ in results:
        images.append({"id": index, "file_name": f"{index}.png", "width": width, "height": height})
        xyxy = np.round(np.array(boxes, np.float64).reshape(-1, 4), 2)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        for (x, y, w, h), c in zip(xyxy_to_xywh(xyxy).tolist(), cats, strict=False):
            w, h = round(w, 2), round(h, 2)  # area is w * h of the rounded size
            if w > 0 and h > 0:
                annotations.append((index, (x, y, w, h), c))
    return coco_dict(images, annotations, decimals=2)


def _twin_layouts(path: str | Path) -> list[tuple[int, int, list, list, int]]:
    from detector.hw2 import AnnotationError, parse_coco

    coco = read_coco(path)
    records, report = parse_coco(coco, str(path), Path("."), require_files=False)
    if report.warnings:
        print(f"note: {report.summary()}")
    usable = [r for r in records if len(r.boxes)]
    if not usable:
        raise AnnotationError(f"{path}: no image with a usable box to render a twin of")
    if len(usable) < len(records):
        print(f"note: {len(records) - len(usable)} layout image(s) without boxes skipped")
    return [(r.width, r.height, r.boxes.tolist(), r.category_ids.tolist(), r.image_id) for r in usable]


def _prepare(out: Path, overwrite: bool) -> None:
    owned = [out / s for s in SPLITS] + [out / "train.json", out / "valid.json", out / "synth_meta.json"]
    present = [p for p in owned if p.exists() and (p.is_file() or any(p.iterdir()))]
    if present and not overwrite:
        raise FileExistsError(f"{out}: already holds {', '.join(p.name for p in present)}; "
                              "choose another folder or pass overwrite=True (--overwrite)")
    for p in present:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)


def generate_dataset(out: str | Path, counts: dict[str, int] | None = None, seed: int = 0, styles: str = "all",
                     layouts: str | Path | None = None, workers: int | None = None, overwrite: bool = False,
                     progress: bool = False, negatives: float = 0.0) -> Path:
    """Write a synthetic HW2 dataset to `out` and return it.

    counts: images per split (missing splits use DEFAULT_COUNTS; 0 leaves a split empty). With
    `layouts` (any COCO file) the train split is a twin of that file, image for image and box for box
    (its count, if given, takes the first N layouts); valid and test are drawn as usual.
    negatives: share of train images drawn as negatives (scene, plaque and clutter, no number, no box);
    valid and test always hold a number, as HW2's do.
    workers: processes (None: all cores). The output is identical for every worker count. With more
    than one, workers start from a fork server that imports the calling script's __main__ module, so a
    calling script needs the usual `if __name__ == "__main__":` guard.
    """
    share = check_share(styles)
    requested = dict(counts or {})
    counts = {**DEFAULT_COUNTS, **requested}
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) in counts: {sorted(unknown)}; expected {SPLITS}")
    if any(int(n) < 0 for n in counts.values()):
        raise ValueError(f"counts must be >= 0, got {counts}")
    if not 0.0 <= negatives < 1.0:
        raise ValueError(f"negatives is a share of the train images in [0, 1), got {negatives}")
    out = Path(out)
    twins = _twin_layouts(layouts) if layouts else None
    if twins is not None:
        if "train" in requested:
            twins = twins[:int(requested["train"])]
        counts["train"] = len(twins)
    _prepare(out, overwrite)
    tasks: list[Task] = []
    for split in SPLITS:
        for index in range(1, int(counts[split]) + 1):
            twin = twins[index - 1] if (twins is not None and split == "train") else None
            negative = twin is None and split == "train" and is_negative(seed, index, negatives)
            tasks.append((split, index, int(seed), share, twin, negative))
    n_workers = max(1, int(workers if workers is not None else (mp.cpu_count() or 1)))
    results: dict[str, list[tuple]] = {s: [] for s in SPLITS}
    for r in tqdm(_run(tasks, out, min(n_workers, max(1, len(tasks)))), total=len(tasks), desc="synth",
                  unit="img", disable=not progress):
        results[r[0]].append(r)
    for split in SPLITS:
        results[split].sort(key=lambda r: r[1])
    for split in ("train", "valid"):
        write_coco(out / f"{split}.json", _coco(results[split]))
    meta = {
        "generator": {
            "version": code_version(), "seed": int(seed), "styles": share,
            "counts": {s: int(counts[s]) for s in SPLITS}, "layouts": str(layouts) if layouts else None,
            "edge_rule": f"a digit is labelled only when fully visible (at least {VISIBLE_INK_MIN:.0%} of its ink "
                         "inside the image); a digit cut by the edge stays in the pixels, unlabelled",
            "boxes": "SVHN's convention: the glyph ink box after all geometric transforms, widened by an "
                     "annotator's margins (render.BoxConvention)" if not layouts else
                     "train: the layout file's boxes verbatim (glyph ink drawn inside them with SVHN's margins)",
            "negatives": float(negatives),
            "typefaces": [f.name for f in all_typefaces()], "font_paths": font_search_paths(),
            "heldout": heldout_members(),
        },
        "splits": {s: [{"id": r[1], "file_name": f"{r[1]}.png", **r[6]} for r in results[s]] for s in SPLITS},
    }
    (out / "synth_meta.json").write_text(json.dumps(meta, default=_jsonable), encoding="utf-8")
    return out
