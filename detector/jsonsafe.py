"""Parse JSON that came from a user's file (annotations, pred.json, checkpoint metadata) without being stalled
or crashed by it.

Python's json module recurses once per nesting level (a file of 100,000 '[' raises RecursionError) and turns
every integer literal into an int, however long (CPython refuses over 4,300 digits, after converting what came
before). No field of any file this project reads needs more than a few nesting levels or an integer over
30 digits, so both are refused at once with a message naming the file.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_INT_DIGITS = 30
_LONG_DIGIT_RUN = re.compile(rf"\d{{{MAX_INT_DIGITS + 1},}}")


class JSONInputError(ValueError):
    """Text that is not JSON this project can use; the message names the source and the problem."""


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (json gives True for `true`, and NaN/Infinity for those literals)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONInputError(f"an integer with {digits:,} digits (ids and sizes have at most {MAX_INT_DIGITS})")
    return int(text)


def loads(text: str, source: str) -> Any:
    """json.loads with integers bounded and depth errors caught; any failure is one JSONInputError line."""
    # Files without a long run of digits anywhere cannot hold a long integer: they take json's fast path.
    parse_int = _bounded_int if _LONG_DIGIT_RUN.search(text) else None
    try:
        return json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as err:
        raise JSONInputError(f"{source}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except JSONInputError as err:
        raise JSONInputError(f"{source}: not a usable JSON file: it holds {err}") from None
    except RecursionError:
        raise JSONInputError(f"{source}: JSON nested too deeply to read (thousands of levels); "
                             "not a file this project writes: regenerate it") from None
    except ValueError as err:  # e.g. CPython's own int-digits limit, should parse_int ever be bypassed
        raise JSONInputError(f"{source}: not a usable JSON file ({err})") from None
