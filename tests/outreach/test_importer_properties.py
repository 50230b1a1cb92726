"""Property-based tests of CSV cell typing: any cell is a storable JSON value or the row's own
mistake (never another exception, never NaN or Infinity)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.importer import _BadValue, cell_value

BOUNDED = settings(max_examples=200, deadline=500)

PIECES = [
    *("[", "]", "{", "}", ",", ":", '"', "\\", " ", "NaN", "-Infinity", "Infinity", "nan"),
    *("inf", "1e999", "1" + "0" * 400, "1" + "0" * 5000, "-0", "1.5", "007", "true", "null"),
]


def finite(value: Any) -> bool:
    """No NaN or Infinity anywhere in the value (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                return False
        stack.extend(item if isinstance(item, list) else [])
        stack.extend(item.values() if isinstance(item, dict) else [])
    return True


def typed_or_refused(text: str) -> None:
    try:
        value = cell_value(text, "column")
    except _BadValue as error:
        assert str(error).startswith("column ")
        return
    assert value is None or isinstance(value, str | int | float | bool | list)
    assert finite(value)


@BOUNDED
@given(st.text(max_size=200))
def test_any_text_is_typed_or_refused(text: str) -> None:
    typed_or_refused(text)


@BOUNDED
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=60))
def test_any_json_like_cell_is_typed_or_refused(pieces: list[str]) -> None:
    typed_or_refused("".join(pieces))
    typed_or_refused("[" + "".join(pieces))


@BOUNDED
@given(st.integers(0, 6000), st.integers(0, 6000), st.sampled_from(["[", '[{"a":', "[1,"]))
def test_any_nesting_is_typed_or_refused(opened: int, closed: int, opener: str) -> None:
    typed_or_refused(opener * opened + "NaN" + "]" * closed)
    typed_or_refused(opener * opened + "]" * closed)
