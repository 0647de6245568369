"""Markdown building blocks for the documents a run writes (the model card): tables and numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table: the header row, the rule, one row per ``rows`` item (cells escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def cell(text: str) -> str:
    """``text`` fit for a table cell: pipes escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def number(value: Any) -> str:
    """A score with 4 decimals, ``n/a`` for anything but a number."""
    return f"{float(value):.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def count(value: Any) -> str:
    """A count with thousands separators (a whole float as an int), ``n/a`` for None."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def interval(interval: Any) -> str:
    """``[low, high]`` of an interval mapping, ``n/a`` without both bounds."""
    if not isinstance(interval, Mapping) or interval.get("low") is None or interval.get("high") is None:
        return "n/a"
    return f"[{number(interval['low'])}, {number(interval['high'])}]"


def level(intervals: Mapping[str, Any] | None) -> str:
    """The confidence level of ``intervals`` as a percentage (95% when not given)."""
    confidence = (intervals or {}).get("confidence")
    return f"{float(confidence):.0%}" if isinstance(confidence, (int, float)) else "95%"


def short(value: Any, limit: int = 100) -> str:
    """``value`` as text for inline code: backticks replaced, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."
