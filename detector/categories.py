"""The one place that maps HW2 category ids to digits.

HW2 (and SVHN-derived COCO files) use category_id 1..10 where 1 is the digit 0 and 10 is the digit 9.
The detector uses the category id directly as its label (0 is torchvision's background), so no
other module ever adds or subtracts one.
"""
from __future__ import annotations

from collections.abc import Iterable

NUM_DIGITS = 10
NUM_CLASSES = NUM_DIGITS + 1  # background + ten digits, as torchvision's detection heads count them
BACKGROUND = 0
CATEGORY_IDS: tuple[int, ...] = tuple(range(1, NUM_DIGITS + 1))
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(NUM_DIGITS))  # index = category_id - 1


class CategoryError(ValueError):
    """A category id or digit outside HW2's 1..10 / 0..9 range."""


def is_category_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= NUM_DIGITS


def category_to_digit(category_id: int) -> int:
    if not is_category_id(category_id):
        raise CategoryError(f"category_id must be an integer in 1..10 (1 is digit 0), got {category_id!r}")
    return category_id - 1


def digit_to_category(digit: int) -> int:
    if not (isinstance(digit, int) and 0 <= digit <= 9):
        raise CategoryError(f"digit must be an integer in 0..9, got {digit!r}")
    return digit + 1


def digits_to_string(category_ids: Iterable[int]) -> str:
    """Join category ids (already ordered left to right) into the digit string they spell."""
    return "".join(str(category_to_digit(int(c))) for c in category_ids)


def coco_categories() -> list[dict]:
    """The `categories` block every COCO file this project writes carries."""
    return [{"id": c, "name": CLASS_NAMES[c - 1], "supercategory": "digit"} for c in CATEGORY_IDS]
