"""A small medical document model, named after medkit's so that its users feel at home.

`TextDocument` holds a text and its annotations (`Segment`, `Entity`); annotations point
into the text through character `Span`s and carry `Attribute`s. Every annotation added to a
document is checked against it: spans must fall inside the text and the annotation's
`text` must equal what its spans cover.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medkit_exp.errors import MedkitExpError


class AnnotationError(MedkitExpError, ValueError):
    """An annotation does not fit the document it is added to."""


@dataclass(frozen=True, order=True)
class Span:
    """Half-open character range ``[start, end)`` in a document's text."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.end, int)):
            raise AnnotationError(f"span offsets must be integers, got ({self.start!r}, {self.end!r})")
        if self.start < 0 or self.end < self.start:
            raise AnnotationError(
                f"invalid span ({self.start}, {self.end}): need 0 <= start <= end"
            )

    @property
    def length(self) -> int:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


def covered_text(text: str, spans: list[Span]) -> str:
    """Text covered by ``spans``, discontinuous pieces joined by a single space (BRAT's rule)."""
    return " ".join(text[s.start : s.end] for s in spans)


@dataclass
class Attribute:
    """A label/value pair attached to an annotation (e.g. ``negation=True``, a MeSH id)."""

    label: str
    value: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Segment:
    """A labelled piece of a document (a sentence, a section, a mention to classify)."""

    label: str
    spans: list[Span]
    text: str
    attrs: list[Attribute] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if not self.spans:
            raise AnnotationError(f"{type(self).__name__} {self.label!r} has no span")
        self.spans = sorted(self.spans)

    @property
    def start(self) -> int:
        return self.spans[0].start

    @property
    def end(self) -> int:
        return self.spans[-1].end

    @property
    def attributes(self) -> list[Attribute]:
        return self.attrs

    def get_attrs(self, label: str) -> list[Attribute]:
        return [a for a in self.attrs if a.label == label]

    def overlaps(self, other: Segment) -> bool:
        return any(a.overlaps(b) for a in self.spans for b in other.spans)


@dataclass
class Entity(Segment):
    """A named entity mention: ``Entity(label="problem", spans=[Span(4, 12)], text="diabetes")``."""

    score: float | None = None


class AnnotationContainer:
    """The annotations of one document; validates each one against the document's text."""

    def __init__(self, doc: TextDocument) -> None:
        self._doc = doc
        self._anns: list[Segment] = []

    def add(self, ann: Segment) -> None:
        """Add an annotation after checking that its spans fit the text and match its ``text``."""
        text = self._doc.text
        for span in ann.spans:
            if span.end > len(text):
                raise AnnotationError(
                    f"{ann.label} span ({span.start}, {span.end}) is outside document "
                    f"{self._doc.id!r} of length {len(text)}"
                )
        expected = covered_text(text, ann.spans)
        if ann.text != expected:
            raise AnnotationError(
                f"{ann.label} text {ann.text!r} does not match document {self._doc.id!r} "
                f"at its spans, which hold {expected!r}"
            )
        self._anns.append(ann)

    def get(self, label: str | None = None) -> list[Segment]:
        return [a for a in self._anns if label is None or a.label == label]

    @property
    def entities(self) -> list[Entity]:
        return [a for a in self._anns if isinstance(a, Entity)]

    @property
    def segments(self) -> list[Segment]:
        return [a for a in self._anns if not isinstance(a, Entity)]

    def remove(self, ann: Segment) -> None:
        self._anns.remove(ann)

    def __iter__(self) -> Iterator[Segment]:
        return iter(list(self._anns))

    def __len__(self) -> int:
        return len(self._anns)


class TextDocument:
    """A text with metadata and validated annotations (``doc.anns.add(entity)``)."""

    RAW_LABEL = "RAW_TEXT"  # label of `raw_segment`, as in medkit

    def __init__(
        self,
        text: str,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
        anns: Iterable[Segment] | None = None,
    ) -> None:
        if not isinstance(text, str):
            raise TypeError(f"TextDocument text must be a str, got {type(text).__name__}")
        self.text = text
        self.id = id if id is not None else uuid.uuid4().hex
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.anns = AnnotationContainer(self)
        for ann in anns or []:
            self.anns.add(ann)

    @property
    def raw_segment(self) -> Segment:
        """The whole text as a segment (not among the annotations), what medkit operations run
        on: ``matcher.run([doc.raw_segment])``."""
        return Segment(label=self.RAW_LABEL, spans=[Span(0, len(self.text))], text=self.text)

    def __repr__(self) -> str:
        return f"TextDocument(id={self.id!r}, chars={len(self.text)}, anns={len(self.anns)})"
