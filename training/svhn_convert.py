"""Convert original SVHN "format 1" data (digitStruct.mat plus its PNGs) into the HW2 layout.

SVHN ships its boxes in a MATLAB v7.3 file, which is HDF5: /digitStruct/name and /digitStruct/bbox hold one
object reference per image. A name points at a uint16 character array; a bbox points at a group with the
fields height, left, top, width, label, each a (1, 1) number for a one-digit image and a column of
references to (1, 1) numbers otherwise. Label 10 is the digit 0.

    python -m training.svhn_convert --mat train/digitStruct.mat --images train --out DATA --split train
    python -m training.svhn_convert --mat train/digitStruct.mat --images train --out DATA --split valid

train and valid with the same --valid-fraction and --seed partition one digitStruct file without overlap
(--valid-fraction 1 puts a whole file, e.g. SVHN's test set, into valid); --split test takes every image.
Images become DATA/<split>/<id>.png (ids 1..N in the file's order, hard-linked when possible, converted
when not PNG) and DATA/<split>.json is COCO with category_id = digit + 1. Boxes reaching outside the image
(SVHN has some) are clipped, and those left empty dropped, so the result loads without repairs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from detector.boxes import xyxy_to_xywh
from detector.categories import digit_to_category
from detector.coco_format import coco_dict, write_coco
from detector.hw2 import LoadReport, repair_boxes
from detector.images import ImageLoadError, load_rgb

BBOX_FIELDS = ("height", "left", "top", "width", "label")
SPLITS = ("train", "valid", "test")


class DigitStructError(ValueError):
    """A file that is not a readable SVHN digitStruct.mat, or images that do not match it."""


@dataclass(frozen=True)
class SvhnEntry:
    """One image of a digitStruct file: its file name and its digits' boxes (xywh) and digits 0..9."""

    name: str
    boxes_xywh: np.ndarray  # (n, 4) float32, as stored: left, top, width, height
    digits: np.ndarray  # (n,) int64, label 10 already turned into 0


# ------------------------------------------------------------------------------------------------ reading
def _string(h5: Any, ref: Any, where: str) -> str:
    chars = np.asarray(h5[ref][()]).reshape(-1)
    try:
        return "".join(chr(int(c)) for c in chars)
    except (TypeError, ValueError) as err:
        raise DigitStructError(f"{where}: expected a MATLAB char array, got {chars.dtype}") from err


def _numbers(h5: Any, dataset: Any, where: str) -> list[float]:
    """A bbox field: inline numbers (one digit) or references to (1, 1) numbers (several digits)."""
    import h5py

    values = np.asarray(dataset[()]).reshape(-1)
    if h5py.check_ref_dtype(dataset.dtype) is not None:
        out = []
        for ref in values:
            if not ref:
                raise DigitStructError(f"{where}: null object reference")
            out.append(float(np.asarray(h5[ref][()]).reshape(-1)[0]))
        return out
    if not np.issubdtype(values.dtype, np.number):
        raise DigitStructError(f"{where}: expected numbers or object references, got dtype {values.dtype}")
    return [float(v) for v in values]


def iter_digit_struct(path: str | Path) -> Iterator[SvhnEntry]:
    """Entries of a digitStruct.mat in file order; errors name the file, the entry and the field."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DigitStructError(f"{path}: file not found")
    if not h5py.is_hdf5(path):
        raise DigitStructError(
            f"{path}: not an HDF5 file; SVHN's digitStruct.mat is a MATLAB v7.3 (HDF5) file "
            "(an older-format .mat must be re-saved with save('-v7.3'))"
        )
    with h5py.File(path, "r") as h5:
        group = h5.get("digitStruct")
        if not isinstance(group, h5py.Group) or "name" not in group or "bbox" not in group:
            raise DigitStructError(
                f"{path}: no /digitStruct/name and /digitStruct/bbox datasets (top-level keys: {sorted(h5.keys())}); "
                "is this SVHN's format 1 digitStruct.mat?"
            )
        names, bboxes = group["name"], group["bbox"]
        for key, ds in (("name", names), ("bbox", bboxes)):
            if not isinstance(ds, h5py.Dataset) or h5py.check_ref_dtype(ds.dtype) is None:
                raise DigitStructError(f"{path}: /digitStruct/{key} should be a dataset of object references")
        name_refs = np.asarray(names[()]).reshape(-1)
        bbox_refs = np.asarray(bboxes[()]).reshape(-1)
        if len(name_refs) != len(bbox_refs):
            raise DigitStructError(f"{path}: {len(name_refs)} names but {len(bbox_refs)} bbox entries")
        for i, (name_ref, bbox_ref) in enumerate(zip(name_refs, bbox_refs, strict=False)):
            where = f"{path}: entry {i + 1}"
            name = _string(h5, name_ref, f"{where} name")
            box_group = h5[bbox_ref]
            if not isinstance(box_group, h5py.Group):
                raise DigitStructError(f"{where} ({name}): bbox should reference a group with fields {BBOX_FIELDS}")
            missing = [k for k in BBOX_FIELDS if k not in box_group]
            if missing:
                raise DigitStructError(f"{where} ({name}): bbox is missing field(s) {missing}")
            fields = {k: _numbers(h5, box_group[k], f"{where} ({name}) bbox.{k}") for k in BBOX_FIELDS}
            lengths = {k: len(v) for k, v in fields.items()}
            if len(set(lengths.values())) != 1:
                raise DigitStructError(f"{where} ({name}): bbox fields have different lengths {lengths}")
            labels = np.asarray(fields["label"])
            if not np.all((labels == np.round(labels)) & (labels >= 1) & (labels <= 10)):
                raise DigitStructError(
                    f"{where} ({name}): labels must be 1..10 (10 is the digit 0), got {labels.tolist()}")
            boxes = np.stack([fields["left"], fields["top"], fields["width"], fields["height"]], axis=1)
            yield SvhnEntry(name=name, boxes_xywh=boxes.astype(np.float32).reshape(-1, 4),
                            digits=(labels.astype(np.int64) % 10))


def read_digit_struct(path: str | Path) -> list[SvhnEntry]:
    return list(iter_digit_struct(path))


# ---------------------------------------------------------------------------------------------- converting
def select_indices(count: int, split: str, valid_fraction: float, seed: int) -> list[int]:
    """Which entries a split takes: a seeded shuffle's first round(count * fraction) go to valid, the rest to
    train, each kept in file order; test takes all."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= valid_fraction <= 1.0:
        raise ValueError(f"valid fraction must be in [0, 1], got {valid_fraction}")
    if split == "test":
        return list(range(count))
    order = np.random.default_rng(seed).permutation(count)
    n_valid = int(round(count * valid_fraction))
    chosen = order[:n_valid] if split == "valid" else order[n_valid:]
    return sorted(int(i) for i in chosen)


LINKED, COPIED, CONVERTED = "linked", "copied", "converted to PNG"  # LoadReport.placed keys


def _place_image(source: Path, target: Path, link: bool, report: LoadReport) -> tuple[int, int]:
    """Put `source` at `target` as a PNG, counted in `report.placed`; returns (width, height) as stored."""
    if not source.is_file():
        raise DigitStructError(f"{source}: image named in digitStruct not found")
    try:
        with Image.open(source) as image:
            fmt, size = image.format, image.size
    except (UnidentifiedImageError, OSError) as err:
        raise DigitStructError(f"{source}: not a readable image ({err})") from err
    if fmt == "PNG":
        if link:
            try:
                os.link(source, target)
                report.placed[LINKED] += 1
                return size
            except OSError:  # another file system, or links not allowed: copy instead
                pass
        shutil.copyfile(source, target)
        report.placed[COPIED] += 1
        return size
    try:
        rgb = load_rgb(source)
    except ImageLoadError as err:
        raise DigitStructError(str(err)) from err
    rgb.save(target, format="PNG")
    report.placed[CONVERTED] += 1
    return rgb.size  # load_rgb applies EXIF rotation, so this is the size of what was written


def _prepare_output(out: Path, split: str, overwrite: bool) -> tuple[Path, Path]:
    image_dir, ann_path = out / split, out / f"{split}.json"
    existing = sorted(image_dir.iterdir()) if image_dir.is_dir() else []
    if (existing or ann_path.exists()) and not overwrite:
        raise DigitStructError(
            f"{image_dir} or {ann_path} already holds data ({len(existing)} files); pass --overwrite to replace it"
        )
    for path in existing:  # only what a conversion writes: <id>.png
        if path.suffix == ".png" and path.stem.isdigit():
            path.unlink()
    image_dir.mkdir(parents=True, exist_ok=True)
    return image_dir, ann_path


def convert(
    mat: str | Path,
    images: str | Path,
    out: str | Path,
    split: str,
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    link: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> LoadReport:
    """Write DATA/<split>/<id>.png and DATA/<split>.json from a digitStruct.mat and its image folder; the report
    counts the images, the boxes, the box repairs and how each image file was placed (`placed`)."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise DigitStructError(f"{images}: image folder not found")
    entries = read_digit_struct(mat)
    chosen = select_indices(len(entries), split, valid_fraction, seed)
    image_dir, ann_path = _prepare_output(out, split, overwrite)
    report = LoadReport(source=f"{mat} -> {split}", placed={LINKED: 0, COPIED: 0, CONVERTED: 0})
    coco_images: list[dict[str, Any]] = []
    annotations: list[tuple[int, list[float], int]] = []
    if progress:
        from tqdm import tqdm

        chosen = tqdm(chosen, desc=f"svhn -> {split}", unit="img")
    for image_id, index in enumerate(chosen, start=1):
        entry = entries[index]
        width, height = _place_image(images / entry.name, image_dir / f"{image_id}.png", link, report)
        coco_images.append({"id": image_id, "file_name": f"{image_id}.png", "width": width, "height": height,
                            "svhn_name": entry.name})
        boxes, keep = repair_boxes(entry.boxes_xywh.tolist(), width, height, report, entry.name)
        for box, digit in zip(xyxy_to_xywh(boxes).tolist(), entry.digits[keep].tolist(), strict=False):
            annotations.append((image_id, box, digit_to_category(int(digit))))
    report.images, report.boxes = len(coco_images), len(annotations)
    write_coco(ann_path, coco_dict(coco_images, annotations))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.svhn_convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mat", required=True, help="SVHN format 1 digitStruct.mat (MATLAB v7.3 / HDF5)")
    parser.add_argument("--images", required=True, help="folder with the images digitStruct names (e.g. 1.png)")
    parser.add_argument("--out", required=True, help="HW2 data folder: writes DATA/<split>/ and DATA/<split>.json")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of the file that goes to valid (train takes the rest; ignored for test)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed of the train/valid partition")
    parser.add_argument("--copy", action="store_true", help="copy PNGs instead of hard-linking them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DATA/<split>")
    args = parser.parse_args(argv)
    try:
        report = convert(args.mat, args.images, args.out, args.split, valid_fraction=args.valid_fraction,
                         seed=args.seed, link=not args.copy, overwrite=args.overwrite, progress=True)
    except (DigitStructError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.split in ("train", "valid"):  # read it back the way training will
        from detector.hw2 import load_split

        print(load_split(args.out, args.split).report.summary())
    print(f"wrote {Path(args.out) / args.split}/ and {Path(args.out) / (args.split + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
