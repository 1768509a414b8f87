"""The HW2 data layer: reads `DATA/{train,valid,test}/` and `DATA/{train,valid}.json`, validates them,
and hands training, prediction and the app one clean view of each split.

What is fatal and what is repaired:
- Fatal (AnnotationError naming file and problem): unreadable or malformed JSON, missing top-level keys,
  records missing required keys or with wrong types, duplicate image ids.
- Repaired and counted: boxes partly outside the image are clipped; boxes of zero or negative size are
  dropped; annotations with an unknown image id or a category id outside 1..10 are dropped (or fatal with
  `strict=True`); duplicate annotation ids are renumbered; images whose file is missing are dropped, and so
  are images whose file_name points outside the split's image folder ("../../etc/passwd", "/abs/path").
Every repair is listed in the split's `LoadReport`, whose `summary()` is the one line users see; the SVHN
converter makes the same box repairs (`repair_boxes`) and reports them in the same type.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.boxes import clip_xyxy, xywh_to_xyxy, xyxy_to_xywh
from detector.categories import digits_to_string, is_category_id
from detector.coco_format import coco_dict
from detector.jsonsafe import JSONInputError, loads

SPLITS_WITH_LABELS = ("train", "valid")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # GIF: its first frame
_IMAGE_KEYS = {"id": int, "file_name": str, "width": int, "height": int}
_ANNOTATION_KEYS = {"id": int, "image_id": int, "bbox": list, "category_id": int}
_EXAMPLES_KEPT = 5


class AnnotationError(ValueError):
    """An annotation file that cannot be used as it is."""


@dataclass(frozen=True)
class ImageRecord:
    """One image with its ground truth: boxes are xyxy float32 in original pixels, labels are category ids."""

    image_id: int
    file_name: str
    width: int
    height: int
    path: Path
    boxes: np.ndarray = field(repr=False)
    category_ids: np.ndarray = field(repr=False)

    @property
    def number(self) -> str:
        """The house number the ground truth spells, digits left to right by box centre."""
        order = np.argsort((self.boxes[:, 0] + self.boxes[:, 2]) / 2, kind="stable")
        return digits_to_string(self.category_ids[order].tolist())


@dataclass
class LoadReport:
    """What was loaded (or converted) and every repair made on the way; `warnings` is empty for a clean file."""

    source: str
    images: int = 0
    boxes: int = 0
    clipped_boxes: int = 0
    dropped_degenerate_boxes: int = 0
    dropped_unknown_image: int = 0
    dropped_bad_category: int = 0
    renumbered_annotation_ids: int = 0
    missing_files: int = 0
    outside_image_dir: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)  # a conversion's image files by how they got there

    def note(self, kind: str, example: str) -> None:
        kept = self.examples.setdefault(kind, [])
        if len(kept) < _EXAMPLES_KEPT:
            kept.append(example)

    @property
    def warnings(self) -> list[str]:
        counts = {
            "boxes clipped to the image": self.clipped_boxes,
            "zero/negative-size boxes dropped": self.dropped_degenerate_boxes,
            "annotations with unknown image_id dropped": self.dropped_unknown_image,
            "annotations with category_id outside 1..10 dropped": self.dropped_bad_category,
            "duplicate annotation ids renumbered": self.renumbered_annotation_ids,
            "images whose file is missing dropped": self.missing_files,
            "images whose file_name leaves the image folder dropped": self.outside_image_dir,
        }
        out = []
        for text, count in counts.items():
            if count:
                examples = "; ".join(self.examples.get(text, []))
                out.append(f"{count} {text}" + (f" (e.g. {examples})" if examples else ""))
        return out

    def summary(self) -> str:
        head = f"{self.source}: loaded {self.images} images, {self.boxes} boxes"
        if self.placed:
            head += " (" + ", ".join(f"{n} {how}" for how, n in self.placed.items()) + ")"
        return head + ("; " + "; ".join(self.warnings) if self.warnings else "; no problems found")


@dataclass
class Split:
    """A labelled split: its records and its load report (`records_to_coco` gives pycocotools' view)."""

    name: str
    root: Path
    records: list[ImageRecord]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def by_id(self) -> dict[int, ImageRecord]:
        return {r.image_id: r for r in self.records}


def image_entry(record: ImageRecord) -> dict[str, Any]:
    """A record's entry in a COCO file's `images` list."""
    return {"id": record.image_id, "file_name": record.file_name, "width": record.width, "height": record.height}


def records_to_coco(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Ground truth as COCO, with `iscrowd` and the exact `area` filled in, ready for pycocotools' COCO()."""
    annotations = ((r.image_id, box, cid) for r in records
                   for box, cid in zip(xyxy_to_xywh(r.boxes).tolist(), r.category_ids.tolist(), strict=False))
    return coco_dict([image_entry(r) for r in records], annotations, round_area=False)


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise AnnotationError(f"{path}: annotation file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: cannot read annotation file ({err})") from err
    try:
        return loads(text, str(path))
    except JSONInputError as err:
        raise AnnotationError(str(err)) from None


def _check_record(source: str, kind: str, index: int, record: Any, schema: dict[str, type]) -> None:
    if not isinstance(record, dict):
        raise AnnotationError(f"{source}: {kind}[{index}] is a {type(record).__name__}, expected an object")
    missing = [k for k in schema if k not in record]
    if missing:
        raise AnnotationError(f"{source}: {kind}[{index}] is missing key(s) {missing}: {json.dumps(record)[:200]}")
    for key, expected in schema.items():
        value = record[key]
        ok = isinstance(value, expected) and not isinstance(value, bool)
        if expected is int and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            raise AnnotationError(
                f"{source}: {kind}[{index}].{key} should be {expected.__name__}, got {value!r}"
            )


def is_inside(path: Path, folder: Path) -> bool:
    """Whether `path` names something under `folder` once '..' and absolute parts are applied.

    Lexical on purpose: a symlinked image file (git-annex, DVC and similar keep images as links into a store
    elsewhere) is the data owner's choice and stays usable; a file_name string in a JSON file must not climb out.
    """
    base = os.path.normpath(os.path.abspath(folder))
    target = os.path.normpath(os.path.abspath(path))
    return target != base and os.path.commonpath([base, target]) == base


def repair_boxes(boxes_xywh: Sequence[Sequence[float]], width: int, height: int, report: LoadReport,
                 where: str) -> tuple[np.ndarray, np.ndarray]:
    """Clip one image's xywh boxes to the image and drop those left empty, counting both in `report`.

    Returns the kept boxes as xyxy float32 and the keep mask over the input (to filter labels alike).
    """
    raw = xywh_to_xyxy(np.array(boxes_xywh, dtype=np.float32).reshape(-1, 4))
    clipped = clip_xyxy(raw, width, height)
    moved = np.any(np.abs(clipped - raw) > 1e-3, axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    for j in np.flatnonzero(~keep):
        report.dropped_degenerate_boxes += 1
        report.note("zero/negative-size boxes dropped", f"{where} bbox {boxes_xywh[int(j)]}")
    for j in np.flatnonzero(moved & keep):
        report.clipped_boxes += 1
        report.note("boxes clipped to the image", f"{where} bbox {boxes_xywh[int(j)]}")
    return clipped[keep], keep


def parse_coco(
    coco: Any, source: str, image_dir: Path, *, strict: bool = False, require_files: bool = True
) -> tuple[list[ImageRecord], LoadReport]:
    """Validate a COCO dict in HW2's shape and turn it into records; see the module docstring for the rules."""
    if not isinstance(coco, dict):
        raise AnnotationError(f"{source}: top level is a {type(coco).__name__}, expected an object")
    for key in ("images", "annotations"):
        if key not in coco:
            raise AnnotationError(f"{source}: missing top-level key '{key}'")
        if not isinstance(coco[key], list):
            raise AnnotationError(f"{source}: '{key}' should be a list")
    report = LoadReport(source=source)
    images: dict[int, dict] = {}
    for i, img in enumerate(coco["images"]):
        _check_record(source, "images", i, img, _IMAGE_KEYS)
        image_id = int(img["id"])
        if image_id in images:
            raise AnnotationError(f"{source}: duplicate image id {image_id} (images[{i}])")
        if img["width"] <= 0 or img["height"] <= 0:
            raise AnnotationError(f"{source}: images[{i}] has non-positive size {img['width']}x{img['height']}")
        images[image_id] = img

    per_image: dict[int, list[tuple[list[float], int]]] = {i: [] for i in images}
    seen_ann_ids: Counter[int] = Counter()
    for i, ann in enumerate(coco["annotations"]):
        _check_record(source, "annotations", i, ann, _ANNOTATION_KEYS)
        bbox = ann["bbox"]
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise AnnotationError(f"{source}: annotations[{i}].bbox should be 4 numbers [x,y,w,h], got {bbox!r}")
        seen_ann_ids[int(ann["id"])] += 1
        if seen_ann_ids[int(ann["id"])] == 2:
            report.renumbered_annotation_ids += 1
            report.note("duplicate annotation ids renumbered", f"id {ann['id']}")
        image_id = int(ann["image_id"])
        if image_id not in images:
            if strict:
                raise AnnotationError(f"{source}: annotations[{i}] refers to unknown image_id {image_id}")
            report.dropped_unknown_image += 1
            report.note("annotations with unknown image_id dropped", f"annotation id {ann['id']} -> image {image_id}")
            continue
        cid = ann["category_id"]
        cid = int(cid) if isinstance(cid, float) and cid.is_integer() else cid
        if not is_category_id(cid):
            if strict:
                raise AnnotationError(f"{source}: annotations[{i}] has category_id {cid!r}, expected 1..10 (1 is digit 0)")
            report.dropped_bad_category += 1
            report.note("annotations with category_id outside 1..10 dropped", f"annotation id {ann['id']}: {cid!r}")
            continue
        per_image[image_id].append(([float(v) for v in bbox], cid))

    records: list[ImageRecord] = []
    for image_id, img in images.items():
        path = image_dir / img["file_name"]
        if not is_inside(path, image_dir):
            if strict:
                raise AnnotationError(f"{source}: image id {image_id}: file_name {img['file_name']!r} points outside "
                                      f"the image folder {image_dir}")
            report.outside_image_dir += 1
            report.note("images whose file_name leaves the image folder dropped",
                        f"image {image_id}: {img['file_name']!r}")
            continue
        if require_files and not path.is_file():
            report.missing_files += 1
            report.note("images whose file is missing dropped", str(path))
            continue
        w, h = int(img["width"]), int(img["height"])
        anns = per_image[image_id]
        boxes, keep = repair_boxes([a[0] for a in anns], w, h, report, f"image {image_id}")
        labels = np.array([a[1] for a in anns], dtype=np.int64).reshape(-1)
        records.append(
            ImageRecord(image_id=image_id, file_name=img["file_name"], width=w, height=h, path=path,
                        boxes=boxes, category_ids=labels[keep])
        )
        report.boxes += int(keep.sum())
    report.images = len(records)
    return records, report


def load_split(data_dir: str | Path, split: str, *, strict: bool = False, require_files: bool = True) -> Split:
    """Load `DATA/<split>.json` with the images under `DATA/<split>/`."""
    if split not in SPLITS_WITH_LABELS:
        raise ValueError(f"split must be one of {SPLITS_WITH_LABELS} (test has no labels: use list_images)")
    root = Path(data_dir)
    if not root.is_dir():
        raise AnnotationError(f"{root}: data folder not found "
                              "(expected DATA/{train,valid,test}/ and DATA/train.json, DATA/valid.json)")
    ann_path = root / f"{split}.json"
    records, report = parse_coco(read_json(ann_path), str(ann_path), root / split, strict=strict,
                                 require_files=require_files)
    return Split(name=split, root=root, records=records, report=report)


def load_annotation_file(ann_path: str | Path, image_dir: str | Path, *, strict: bool = False) -> Split:
    """Load any COCO file in HW2's shape whose images live in `image_dir` (e.g. an extra validation set)."""
    ann_path = Path(ann_path)
    records, report = parse_coco(read_json(ann_path), str(ann_path), Path(image_dir), strict=strict)
    return Split(name=ann_path.stem, root=ann_path.parent, records=records, report=report)


def image_id_from_path(path: Path) -> int:
    """HW2 test images are `<id>.png` with image_id = int(stem)."""
    try:
        return int(path.stem)
    except ValueError as err:
        raise AnnotationError(f"{path}: file name is not '<integer id>.<ext>' as HW2 test images are") from err


@dataclass
class ImageFolder:
    """A folder's images by id, and one line for every entry that is not used, saying why."""

    items: list[tuple[int, Path]]
    skipped: list[str]


def scan_images(folder: str | Path, *, strict_names: bool = False) -> ImageFolder:
    """(image_id, path) for every `<id>.<image suffix>` file, sorted by id; everything else is listed as skipped
    (with `strict_names`, an image file not named `<id>.<ext>` is an AnnotationError instead)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(f"{folder}: image folder not found")
    items, skipped = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            skipped.append(f"{path}: not a regular file (a sub-folder or a broken link); not searched")
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{path}: not an image type this reads ({' '.join(IMAGE_SUFFIXES)})")
        else:
            try:
                items.append((image_id_from_path(path), path))
            except AnnotationError as err:
                if strict_names:
                    raise
                skipped.append(f"{err}; rename it to <id>{path.suffix}")
    by_id: dict[int, list[str]] = {}
    for image_id, path in items:
        by_id.setdefault(image_id, []).append(path.name)
    dupes = {i: names for i, names in by_id.items() if len(names) > 1}
    if dupes:
        examples = "; ".join(f"{i}: {', '.join(names)}" for i, names in sorted(dupes.items())[:5])
        raise AnnotationError(f"{folder}: several files share image id(s) ({examples}); keep one file per id")
    return ImageFolder(sorted(items), skipped)


def list_images(folder: str | Path) -> list[tuple[int, Path]]:
    """(image_id, path) for every image in a folder, sorted by id; ids come from the file names."""
    return scan_images(folder, strict_names=True).items
