"""Show a segment to the model in its context, the mention marked.

``"... patients with [E] breast cancer [/E] were ..."``: `marked_text` cuts the context out
of the document (the sentence(s) holding the segment, a window of characters around it,
or nothing), and wraps the mention in a start and an end marker, each set off by spaces.
Markers are plain text, so no token is added to the model's vocabulary.

A discontinuous segment is marked from its first span's start to its last span's end.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache

from medkit_exp.core.document import covered_text
from medkit_exp.text.classification.items import SegmentItem

CONTEXTS = ("sentence", "window", "none")
DEFAULT_MARKERS = ("[E]", "[/E]")


@dataclass(frozen=True)
class ContextSettings:
    """How much of the document the model sees and how the mention is marked.

    Args:
        context: ``"sentence"`` (the sentence(s) the segment lies in), ``"window"``
            (``context_chars`` characters on each side, cut at whitespace) or ``"none"``
            (the mention alone).
        context_chars: characters of context on each side for ``"window"``.
        start_marker, end_marker: text put before and after the mention.
    """

    context: str = "sentence"
    context_chars: int = 200
    start_marker: str = DEFAULT_MARKERS[0]
    end_marker: str = DEFAULT_MARKERS[1]

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"context={self.context!r} is unknown: use one of {', '.join(CONTEXTS)}")
        if self.context_chars < 0:
            raise ValueError(f"context_chars must be >= 0, got {self.context_chars}")
        if not self.start_marker.strip() or not self.end_marker.strip():
            raise ValueError(
                f"markers must hold visible text, got {self.start_marker!r} and {self.end_marker!r}: "
                "use e.g. '[E]' and '[/E]'"
            )


@dataclass(frozen=True)
class MarkedText:
    """The text the model reads; ``mention_start:mention_end`` covers the markers and the mention."""

    text: str
    mention_start: int
    mention_end: int


def marked_text(item: SegmentItem, settings: ContextSettings) -> MarkedText:
    """The segment of ``item`` in its context, wrapped in the markers (inner whitespace kept as is)."""
    segment, doc = item.segment, item.doc
    if doc is None:
        if settings.context != "none":
            raise ValueError(
                f"{segment.label} {segment.text!r} comes without its document, which context={settings.context!r} "
                "needs: pass (document, segment) pairs or SegmentItems, or use context='none'"
            )
        return _wrap("", segment.text, "", settings)
    text = doc.text
    if segment.end > len(text) or covered_text(text, segment.spans) != segment.text:
        raise ValueError(
            f"{segment.label} {segment.text!r} does not match document {doc.id!r} at its spans: pass the document "
            "the segment is annotated on (not a sentence split from it, nor its parent)"
        )
    start, end = segment.start, segment.end
    if settings.context == "none":
        left_start, right_end = start, end
    elif settings.context == "window":
        left_start, right_end = _window(text, start, end, settings.context_chars)
    else:
        left_start, right_end = _sentences(doc, start, end)
    return _wrap(text[left_start:start], text[start:end], text[end:right_end], settings)


def _wrap(left: str, mention: str, right: str, settings: ContextSettings) -> MarkedText:
    left = left.strip()
    prefix = f"{left} " if left else ""
    marked = f"{settings.start_marker} {mention.strip()} {settings.end_marker}"
    right = right.strip()
    suffix = f" {right}" if right else ""
    start = len(prefix)
    return MarkedText(prefix + marked + suffix, start, start + len(marked))


def _window(text: str, start: int, end: int, chars: int) -> tuple[int, int]:
    """``chars`` characters each side of ``[start, end)``, shrunk so that no word is cut."""
    left = max(0, start - chars)
    if left > 0 and not text[left - 1].isspace():
        while left < start and not text[left].isspace():
            left += 1
    right = min(len(text), end + chars)
    if right < len(text) and not text[right].isspace():
        while right > end and not text[right - 1].isspace():
            right -= 1
    return left, right


def _sentences(doc, start: int, end: int) -> tuple[int, int]:
    """Bounds of the sentences overlapping ``[start, end)`` (the segment's own when none does).

    The sentences are found by bisection (they are sorted and disjoint), so that a document's
    many segments do not each scan all of its sentences."""
    given = doc.metadata.get("sentence_spans")
    spans = given if given else _sentence_spans(doc.text)
    first = bisect.bisect_right(spans, start, key=lambda span: span[1])  # the first sentence ending after start
    last = bisect.bisect_left(spans, end, key=lambda span: span[0])  # past the last one starting before end
    if first >= last:
        return start, end
    return min(spans[first][0], start), max(spans[last - 1][1], end)


@lru_cache(maxsize=256)
def _sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    from medkit_exp.io.sentences import sentence_spans

    return tuple(sentence_spans(text))
