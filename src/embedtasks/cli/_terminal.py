"""Tables that fit the terminal: the command line's only table printer.

:func:`render` turns a pandas DataFrame into lines no wider than the terminal:
numbers and labels first, at their natural width; the long text columns last,
sharing what is left and ellipsised. Numbers are never cut or left out: text
shrinks first, then labels; columns that still cannot fit are left out and named
in a footer. Widths count East Asian wide characters as two columns, so
a line never holds more characters than the width either.
"""

from __future__ import annotations

import math
import os
import shutil
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["cell", "clip", "render", "terminal_width"]

_GAP = "  "
_MIN_TEXT = 16  # narrowest useful text column
_MIN_SHORT_TEXT = 6  # a text column when the numbers need the room
_MIN_LABEL = 8  # an id or label column when the numbers need the room
_ELLIPSIS = "…"


def terminal_width(default: int = 100) -> int:
    """``$COLUMNS`` if set, else the terminal's width, else ``default`` (>= 40)."""
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        width = shutil.get_terminal_size((default, 24)).columns
    return max(40, width)


def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def width(text: str) -> int:
    """Columns ``text`` takes (a wide character counts two, any other one)."""
    if text.isascii():
        return len(text)
    return sum(map(_char_width, text))


def clip(text: str, room: int) -> str:
    """``text`` cut to ``room`` columns, ending in an ellipsis when cut."""
    if width(text) <= room:
        return text
    if room <= 0:
        return ""
    out, used = [], 0
    for char in text:
        w = _char_width(char)
        if used + w > room - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + _ELLIPSIS


def _one_line(text: str, limit: int) -> str:
    """Whitespace (newlines, tabs) collapsed and control characters dropped."""
    text = " ".join(text[: limit * 2].split())
    if not text.isascii():
        text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return text[:limit]


def cell(value: Any, limit: int = 4096) -> str:
    """How one value is shown: floats to 4 decimals, lists joined, NA empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _one_line(value, limit)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        if math.isnan(value):
            return ""
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, list | tuple) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(items, list):
            return _one_line("; ".join(cell(v, limit) for v in items), limit)
        return cell(items, limit)
    try:
        if value != value:  # pandas NA, NaT
            return ""
    except (TypeError, ValueError):
        return "" if str(value) == "<NA>" else _one_line(str(value), limit)
    return _one_line(str(value), limit)


def _share(natural: list[int], room: int) -> list[int]:
    """Split ``room`` among text columns: none gets more than it needs."""
    widths = [0] * len(natural)
    todo = sorted(range(len(natural)), key=natural.__getitem__)
    while todo:
        fair = room // len(todo)
        i = todo.pop(0)
        widths[i] = min(natural[i], fair)
        room -= widths[i]
    return widths


def render(
    frame: Any,
    *,
    total_width: int,
    text_columns: Iterable[str] = (),
    priority: Sequence[str] = (),
    max_rows: int | None = None,
) -> list[str]:
    """Lines of ``frame`` as a table no wider than ``total_width``.

    One rule for every command: the key columns (scores, probabilities, counts:
    every numeric column, or the numeric ones of ``priority`` when it is given)
    are always shown, their numbers whole. When room is short: text columns
    shrink first (to 16 characters), then columns outside ``priority`` are left
    out (from the last), label columns (ids, names) are narrowed, text columns
    shrink to 6 characters, long headers over short numbers are cut, and only
    then are the label columns of ``priority``, and at last text columns, left
    out. A footer names what is left out.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table (its index is not shown).
    total_width : int
        Widest line allowed.
    text_columns : iterable of str
        Long free-text columns: shown last, sharing the room that is left.
    priority : sequence of str
        Columns to show first (in this order); its numeric ones are the key
        columns. Others that do not fit are left out, from the last one.
    max_rows : int, optional
        Show at most this many rows; a footer counts the others.

    Returns
    -------
    list of str
        The header, the rows and footer lines.
    """
    texts = [c for c in dict.fromkeys(text_columns) if c in frame.columns]
    first = [c for c in priority if c in frame.columns and c not in texts]
    fixed = first + [c for c in frame.columns if c not in texts and c not in first]
    shown = frame if max_rows is None else frame.head(max_rows)
    limit = max(total_width, 40)
    cells = {c: [cell(v, limit) for v in shown[c].tolist()] for c in frame.columns}
    numeric = {c for c in fixed if frame[c].dtype.kind in "iufb"}
    key = {c for c in (first or fixed) if c in numeric}

    def natural(column: str) -> int:
        return max([width(str(column)), *map(width, cells[column])])

    def values_width(column: str) -> int:
        return max([_MIN_LABEL, *map(width, cells[column])])

    label_cap = max(12, total_width // 4)
    widths = {
        c: natural(c) if c in numeric else min(natural(c), label_cap) for c in fixed
    }
    dropped: list[str] = []

    def used(text_floor: int) -> int:
        n = len(fixed) + len(texts)
        gaps = len(_GAP) * max(n - 1, 0)
        return sum(widths[c] for c in fixed) + text_floor * len(texts) + gaps

    floor = _MIN_TEXT
    while used(floor) > total_width:
        labels = [c for c in fixed if c not in numeric and widths[c] > _MIN_LABEL]
        squeezable = [c for c in fixed if widths[c] > values_width(c)]
        if secondary := [c for c in fixed if c not in key and c not in first]:
            fixed.remove(secondary[-1])  # columns the command did not put first
            dropped.insert(0, secondary[-1])
        elif labels:
            widest = max(labels, key=widths.__getitem__)
            excess = used(floor) - total_width
            widths[widest] = max(_MIN_LABEL, widths[widest] - excess)
        elif texts and floor > _MIN_SHORT_TEXT:
            floor = _MIN_SHORT_TEXT
        elif squeezable:  # long headers over short numbers: cut the header
            widest = max(squeezable, key=widths.__getitem__)
            excess = used(floor) - total_width
            widths[widest] = max(values_width(widest), widths[widest] - excess)
        elif named := [c for c in fixed if c not in key]:
            fixed.remove(named[-1])
            dropped.insert(0, named[-1])
        elif texts:
            dropped.append(texts.pop())
        else:
            break  # key columns alone: shown whole, the line is longer
    if texts:
        room = max(total_width - used(0), len(texts))
        for c, w in zip(texts, _share([natural(c) for c in texts], room), strict=True):
            widths[c] = max(w, 1)
    order = fixed + texts

    def line(values: dict[str, str]) -> str:
        parts = []
        for c in order:
            text = clip(values[c], widths[c])
            pad = " " * (widths[c] - width(text))
            parts.append(pad + text if c in numeric else text + pad)
        return _GAP.join(parts).rstrip()

    lines = [line({c: str(c) for c in order})]
    for i in range(len(shown)):
        lines.append(line({c: cells[c][i] for c in order}))
    more = len(frame) - len(shown)
    if more > 0:
        lines.append(clip(f"{_ELLIPSIS} {more:,} more rows", total_width))
    if dropped:
        names = ", ".join(map(str, dropped))
        lines.append(clip(f"not shown: {names} (--format csv has them)", total_width))
    return lines
