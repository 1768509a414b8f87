"""The one builder and writer of HW2 COCO ground truth ({"images", "annotations", "categories"}).

The data layer's evaluation view, the review export, the synthetic generator, the SVHN converter and the COCO
benchmark all assemble their dicts here, so annotation ids, `area`, `iscrowd` and the `categories` block are
the same everywhere. Callers keep their own precision (`decimals`): the files written so far are unchanged.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from detector.categories import coco_categories
from detector.fileio import atomic_write_text

# (image_id, [x, y, w, h], category_id)
Annotation = tuple[int, Sequence[float], int]


def coco_dict(images: Iterable[Mapping[str, Any]], annotations: Iterable[Annotation], *,
              decimals: int | None = 3, round_area: bool = True) -> dict[str, Any]:
    """A COCO ground-truth dict: `images` as given, annotation ids 1..N in the given order.

    `bbox` is rounded to `decimals` (None: as given); `area` is w * h of the box as given, rounded the same way
    unless `round_area` is False (the in-memory evaluation view keeps it exact).
    """
    records: list[dict[str, Any]] = []
    for image_id, (x, y, w, h), category_id in annotations:
        bbox = [x, y, w, h] if decimals is None else [round(v, decimals) for v in (x, y, w, h)]
        area = w * h if decimals is None or not round_area else round(w * h, decimals)
        records.append({"id": len(records) + 1, "image_id": image_id, "bbox": bbox,
                        "category_id": int(category_id), "area": area, "iscrowd": 0})
    return {"images": [dict(image) for image in images], "annotations": records, "categories": coco_categories()}


def write_coco(path: str | Path, coco: Mapping[str, Any]) -> Path:
    """Write a COCO dict atomically: a reader (or a crash) never sees half a file."""
    return atomic_write_text(path, json.dumps(coco))
