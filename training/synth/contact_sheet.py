"""A grid of samples with their boxes and labels, to LOOK at what the generator makes."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from detector.categories import category_to_digit

CELL_W, CELL_H = 200, 100
BOX_COLOUR = (0, 255, 0)
TEXT_COLOUR = (255, 255, 0)


def _cell(image: np.ndarray, boxes: np.ndarray, category_ids: Iterable[int]) -> np.ndarray:
    h, w = image.shape[:2]
    k = min(CELL_W / w, (CELL_H - 2) / h)
    big = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_CUBIC)
    cell = np.full((CELL_H, CELL_W, 3), 40, np.uint8)
    cell[:big.shape[0], :big.shape[1]] = big
    for (x0, y0, x1, y1), c in zip(np.asarray(boxes).reshape(-1, 4) * k, category_ids, strict=False):
        cv2.rectangle(cell, (int(x0), int(y0)), (int(np.ceil(x1)) - 1, int(np.ceil(y1)) - 1), BOX_COLOUR, 1)
        cv2.putText(cell, str(category_to_digit(int(c))), (int(x0) + 1, max(9, int(y0) - 2)),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, TEXT_COLOUR, 1, cv2.LINE_AA)
    return cell


def make_contact_sheet(samples: Iterable[tuple[np.ndarray, np.ndarray, Iterable[int]]], path: str | Path,
                       cols: int = 6) -> Path:
    """Write an RGB grid of (image, boxes xyxy, category ids) samples to a PNG."""
    cells = [_cell(*s) for s in samples]
    if not cells:
        raise ValueError("no samples for the contact sheet")
    rows = -(-len(cells) // cols)
    cells += [np.zeros_like(cells[0])] * (rows * cols - len(cells))
    grid = np.vstack([np.hstack(cells[r * cols:(r + 1) * cols]) for r in range(rows)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid[..., ::-1]):
        raise OSError(f"{path}: could not write the contact sheet")
    return path


def contact_sheet_from_data(data: str | Path, path: str | Path, split: str = "train", count: int = 48) -> Path:
    """The sheet drawn from files as written (so it shows what training will read, not what was meant)."""
    from detector.hw2 import load_split  # imports torch; only needed when reading a written dataset

    records = load_split(data, split).records[:count]
    samples = []
    for r in records:
        image = cv2.imread(str(r.path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"{r.path}: cannot read image")
        samples.append((image[..., ::-1], r.boxes, r.category_ids.tolist()))
    return make_contact_sheet(samples, path)
