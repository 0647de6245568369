"""IOB2 and BILOU tagging: entity ranges <-> one tag per unit (a token or a word).

Everything here works on *units*: a sequence of items (tokens or words) each covering a
character range ``(start, end)`` of a text. An entity becomes a half-open unit range
``(first, last + 1, label)``; `encode_tags` turns such ranges into tags and `decode_tags`
turns tags back into ranges, so that ``decode_tags(encode_tags(n, ranges, s), s) == ranges``
for both schemes, adjacent entities included (``B-X B-X`` in IOB2, ``U-X U-X`` in BILOU).

This module is pure Python (no torch, no transformers).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Sequence

from medkit_exp.core.document import Segment

logger = logging.getLogger(__name__)

SCHEMES = ("iob2", "bilou")
OUTSIDE = "O"

# A unit range: (first unit, last unit + 1, entity label).
UnitRange = tuple[int, int, str]

# Prefixes read from other tag sets (BIOES / IOBES) mapped onto their BILOU meaning.
_PREFIX_ALIASES = {"E": "L", "S": "U"}


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` normalised to lower case, or raise if it is not iob2 or bilou."""
    normalised = str(scheme).lower()
    if normalised not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    return normalised


def build_tag_set(labels: Sequence[str], scheme: str = "iob2") -> list[str]:
    """Tags for entity ``labels``: ``O`` first, then per label ``B,I`` (iob2) or ``B,I,L,U`` (bilou)."""
    scheme = check_scheme(scheme)
    labels = list(labels)
    if not labels:
        raise ValueError("no entity label given: pass at least one label to tag")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"duplicate entity labels {duplicates}: give each label once")
    for label in labels:
        if not isinstance(label, str) or not label or label == OUTSIDE:
            raise ValueError(f"invalid entity label {label!r}: labels must be non-empty strings other than 'O'")
    prefixes = "BI" if scheme == "iob2" else "BILU"
    return [OUTSIDE] + [f"{prefix}-{label}" for label in labels for prefix in prefixes]


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-drug"`` -> ``("B", "drug")``; ``"O"`` -> ``("O", None)``. E-/S- read as L-/U-."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, label = tag.partition("-")
    prefix = _PREFIX_ALIASES.get(prefix, prefix)
    if not sep or not label or prefix not in ("B", "I", "L", "U"):
        raise ValueError(f"malformed tag {tag!r}: expected 'O' or PREFIX-label with PREFIX in B, I, L, U (E, S)")
    return prefix, label


def labels_of_tags(tags: Sequence[str]) -> list[str]:
    """Entity labels of a tag set, in order of first appearance."""
    labels: list[str] = []
    for tag in tags:
        _, label = split_tag(tag)
        if label is not None and label not in labels:
            labels.append(label)
    return labels


def infer_scheme(tags: Sequence[str]) -> str:
    """``bilou`` when some tag is L-/U- (or E-/S-), ``iob2`` when tags are only B-/I-/O."""
    prefixes = {split_tag(tag)[0] for tag in tags}
    return "bilou" if prefixes & {"L", "U"} else "iob2"


def encode_tags(nb_units: int, ranges: Sequence[UnitRange], scheme: str = "iob2") -> list[str]:
    """One tag per unit for non-overlapping entity ``ranges`` (first, end, label)."""
    scheme = check_scheme(scheme)
    tags = [OUTSIDE] * nb_units
    for first, end, label in ranges:
        if not 0 <= first < end <= nb_units:
            raise ValueError(f"entity range ({first}, {end}) of {label!r} is empty or outside 0..{nb_units}")
        if any(tag != OUTSIDE for tag in tags[first:end]):
            raise ValueError(
                f"entity range ({first}, {end}) of {label!r} overlaps another one: "
                "flat tagging needs non-overlapping entities (see resolve_overlaps)"
            )
        if scheme == "bilou" and end - first == 1:
            tags[first] = f"U-{label}"
            continue
        tags[first] = f"B-{label}"
        for i in range(first + 1, end):
            tags[i] = f"I-{label}"
        if scheme == "bilou":
            tags[end - 1] = f"L-{label}"
    return tags


def decode_tags(tags: Sequence[str], scheme: str = "iob2") -> list[UnitRange]:
    """Entity ranges read from ``tags``, leniently (for model predictions).

    ``B`` starts an entity, ``I`` continues one of the same label or else starts one,
    ``L`` closes one of the same label or else is a one-unit entity, ``U`` is a one-unit
    entity, ``O`` closes. Valid sequences decode exactly to what `encode_tags` was given.
    """
    check_scheme(scheme)
    ranges: list[UnitRange] = []
    current: tuple[int, str] | None = None  # (first, label)

    def close(end: int) -> None:
        nonlocal current
        if current is not None:
            ranges.append((current[0], end, current[1]))
            current = None

    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        continues = current is not None and current[1] == label
        if label is None:  # O
            close(i)
        elif prefix == "B" or (prefix == "I" and not continues):
            close(i)
            current = (i, label)
        elif prefix == "U":
            close(i)
            ranges.append((i, i + 1, label))
        elif prefix == "L":
            if not continues:
                close(i)
                current = (i, label)
            close(i + 1)
    close(len(tags))
    return ranges


class UnitLocator:
    """The units of one text (character ranges sorted by position), indexed once, so that each
    entity is placed by bisection instead of a scan of all units."""

    def __init__(self, units: Sequence[tuple[int, int]]) -> None:
        self.units = units
        self._starts = [u[0] for u in units]

    def covering(self, start: int, end: int) -> tuple[int, int] | None:
        """Half-open range of the units overlapping characters ``[start, end)``, or None.

        The entity is widened to whole units (an entity ending inside a word covers that word).
        """
        units = self.units
        first = last = -1
        for i in range(max(bisect.bisect_right(self._starts, start) - 1, 0), len(units)):
            u_start, u_end = units[i]
            if u_start >= end:
                break
            if start < u_end:
                if first < 0:
                    first = i
                last = i
        return None if first < 0 else (first, last + 1)


def resolve_overlaps(ranges: Sequence[UnitRange]) -> tuple[list[UnitRange], list[UnitRange]]:
    """Keep a non-overlapping subset of ``ranges``: longest first, then leftmost.

    Returns ``(kept, dropped)``, ``kept`` sorted by position. Flat tagging cannot hold
    nested or overlapping mentions, so the shorter of two overlapping ones is dropped.
    Ranges must not be empty (``first < end``, as `UnitLocator.covering` gives them).
    """
    order = sorted(ranges, key=lambda r: (-(r[1] - r[0]), r[0], r[2]))
    taken_starts: list[int] = []  # the kept ranges, sorted; disjoint, so their ends are sorted too
    taken_ends: list[int] = []
    kept: list[UnitRange] = []
    dropped: list[UnitRange] = []
    for candidate in order:
        first, end = candidate[0], candidate[1]
        # Of the kept ranges starting before this one ends, the last reaches farthest.
        before = bisect.bisect_left(taken_starts, end)
        if before > 0 and taken_ends[before - 1] > first:
            dropped.append(candidate)
        else:
            taken_starts.insert(before, first)
            taken_ends.insert(before, end)
            kept.append(candidate)
    return sorted(kept), dropped


def entity_extent(entity: Segment, text: str, doc_id: str = "?") -> tuple[int, int]:
    """The character range ``[start, end)`` of an entity, which must be contiguous.

    Spans separated only by whitespace count as contiguous. A really discontinuous entity
    (e.g. "lobe [...] inférieur") cannot be tagged as one mention: it is rejected.
    """
    spans = sorted(entity.spans)
    for left, right in itertools.pairwise(spans):
        gap = text[left.end : right.start]
        if right.start < left.end or gap.strip():
            raise ValueError(
                f"entity {entity.text!r} ({entity.label}) in document {doc_id!r} is discontinuous "
                f"(spans {[(s.start, s.end) for s in spans]}): split it into one entity per span "
                "or drop it before training"
            )
    return spans[0].start, spans[-1].end
