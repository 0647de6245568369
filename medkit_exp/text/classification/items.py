"""What a segment classifier trains on and predicts for: a segment seen in its document.

A `SegmentItem` pairs a `Segment` (or `Entity`) with the `TextDocument` it is annotated on
(the document gives the context around the mention) and says where its gold class is:
``label`` when set (e.g. the entity label, for entity typing), else the value of the
segment's attribute ``attr_label``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medkit_exp.core.document import Segment, TextDocument


@dataclass
class SegmentItem:
    """A segment of a document to classify.

    Args:
        doc: the document the segment is annotated on (its text gives the context); None
            when there is none, the segment's own text being then all the model sees.
        segment: the segment or entity to classify.
        label: its gold class when known from elsewhere than an attribute (entity typing:
            the entity's label); None to read it from the segment's attribute.
    """

    doc: TextDocument | None
    segment: Segment
    label: str | None = None

    def gold(self, attr_label: str | None) -> str | None:
        """The gold class: ``label``, else the value (as a string) of attribute ``attr_label``.

        None when neither gives one. Raises when the segment has several values for it.
        """
        if self.label is not None:
            return self.label
        if attr_label is None:
            return None
        attrs = self.segment.get_attrs(attr_label)
        if len(attrs) > 1:
            values = [a.value for a in attrs]
            raise ValueError(
                f"{self.segment.label} {self.segment.text!r}{self.where} has {len(attrs)} "
                f"{attr_label!r} attributes {values}: keep one gold value per segment"
            )
        if not attrs or attrs[0].value is None:
            return None
        return str(attrs[0].value)

    @property
    def where(self) -> str:
        """`` of document '<id>'`` (for messages), or nothing without a document."""
        return f" of document {self.doc.id!r}" if self.doc is not None else ""


def items_from_entities(docs: Iterable[TextDocument], labels: Sequence[str] | None = None) -> list[SegmentItem]:
    """One item per entity of ``docs``, whose gold class is the entity's label (entity typing).

    With ``labels``, entities of other labels are left out.
    """
    keep = set(labels) if labels else None
    return [
        SegmentItem(doc, entity, label=entity.label)
        for doc in docs
        for entity in doc.anns.entities
        if keep is None or entity.label in keep
    ]


def items_from_attributes(
    docs: Iterable[TextDocument],
    attr_label: str,
    segment_label: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[SegmentItem]:
    """One item per annotation carrying attribute ``attr_label``; the gold is that attribute's value.

    ``segment_label`` keeps only annotations of that label; ``labels`` keeps only items whose
    gold value (as a string) is one of them.
    """
    keep = set(labels) if labels else None
    items = []
    for doc in docs:
        for ann in doc.anns:
            if segment_label is not None and ann.label != segment_label:
                continue
            item = SegmentItem(doc, ann)
            gold = item.gold(attr_label)
            if gold is not None and (keep is None or gold in keep):
                items.append(item)
    return items


def as_item(value: Any) -> SegmentItem:
    """A `SegmentItem` from an item, a ``(document, segment)`` pair, or a bare `Segment` (no document)."""
    if isinstance(value, SegmentItem):
        return value
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], TextDocument)
            and isinstance(value[1], Segment)):
        return SegmentItem(value[0], value[1])
    if isinstance(value, Segment):
        return SegmentItem(None, value)
    raise TypeError(
        f"a segment classifier takes SegmentItem, (TextDocument, Segment) pairs or Segments, got {type(value).__name__}"
    )
