"""What a JSON value must be to be stored and sent back: checked on the way in, encoded totally on the way out.

PostgreSQL's jsonb keeps numbers as decimals: a float 1e30 comes back as the integer 10**30,
which no 64-bit encoder (orjson's, many clients') can write. Text may hold no NUL (jsonb and
text columns refuse it) and no lone surrogate (not encodable as UTF-8). So a request is
refused up front, naming the place; and an answer with a value stored before that check is
still written, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from portal.errors import InvalidInput

# Numbers stored and answered exactly: the 64-bit signed range (what orjson and jsonb→int give back).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_LIMIT_TEXT = "±9.2e18 (the 64-bit range)"
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def check_json(value: Any, where: str) -> None:
    """Raise InvalidInput naming the first place in `value` that cannot be stored and answered back.

    `where` is the field's name as the client sent it (`jobs`, `configuration`); the message
    extends it with the path: `jobs[0].variables.omega: 1e+30 is too large …`.
    """
    if _plainly_fine(value):
        return
    problem = _problem(value, where)
    if problem is not None:
        path, message = problem
        raise InvalidInput(f"{path}: {message}", field=path)


def _plainly_fine(value: Any) -> bool:
    """A quick pass: True when `value` surely holds nothing `_problem` refuses.

    orjson, told to refuse integers beyond 53 bits, also refuses lone surrogates; in what it
    writes, `null` may be a NaN or an infinity, `\\u0000` a NUL, `e+NN` a float of 1e16 or
    more. Any of these sends the value to the walk, which decides; 1,000 plain jobs pass here
    at C speed.
    """
    if isinstance(value, str):
        return _BAD_TEXT.search(value) is None
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
    except TypeError:
        return False
    return b"null" not in encoded and b"\\u0000" not in encoded and _BIG_FLOAT.search(encoded) is None


_BIG_FLOAT = re.compile(rb"e\+[0-9][0-9]")


def int64_ids(texts: list[str]) -> list[int]:
    """The texts that are ids a 64-bit column can hold (ASCII digits, in range); others match no row."""
    return [int(t) for t in texts if t.isascii() and t.isdigit() and len(t) <= 19 and int(t) <= INT_MAX]


def _problem(value: Any, path: str) -> tuple[str, str] | None:
    # Iterative on purpose: the body's depth is capped elsewhere, but this must not depend on it.
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _BAD_TEXT.search(item):
                return where, _text_problem(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return where, f"{_short(item)} is too large: numbers must lie within {_LIMIT_TEXT}."
        elif isinstance(item, float):
            if not math.isfinite(item):
                name = "NaN" if math.isnan(item) else str(item).replace("inf", "Infinity")
                return where, f"{name} is not a finite number; give a finite number."
            if not INT_MIN <= item <= INT_MAX:
                return where, f"{item:g} is too large: numbers must lie within {_LIMIT_TEXT}."
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                name = f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else f"{where}[{key!r}]"
                if isinstance(key, str) and _BAD_TEXT.search(key):
                    return where, f"a key {_text_problem(key)}"
                stack.append((child, name))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored."
    return "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode text."


def _short(number: int) -> str:
    digits = str(abs(number))
    sign = "-" if number < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:3]}e+{len(digits) - 1} ({len(digits)} digits)"


def dumps(body: Any) -> bytes:
    """`body` as JSON bytes, whatever numbers it holds.

    orjson first (fast); a value it refuses, an integer beyond 64 bits stored before the
    input check, sends the body through the standard library, which writes such integers
    exactly (Python clients, the SDK among them, read them back exactly). NaN and infinities
    become null there too, as orjson writes them.
    """
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(_finite(body), ensure_ascii=False, allow_nan=False, default=str).encode("utf-8", "replace")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(child) for child in value]
    return value
