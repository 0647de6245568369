"""Corpus-level helpers: label maps and filters, overlap policies, summaries and digests.

None of these mutate their input: they return new documents (annotations are copied, their
``uid`` kept so that an annotation can be traced back to the one it came from).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from medkit_exp.core.document import Entity, Segment, Span, TextDocument
from medkit_exp.io.base import OVERLAP_POLICIES, CorpusError, check_choice, normalise_label_map

AnnT = TypeVar("AnnT", bound=Segment)

# -- copying ---------------------------------------------------------------------------------


def copy_annotation(ann: AnnT, **changes: Any) -> AnnT:
    """A copy of ``ann`` (same ``uid``) with its attributes and metadata copied too."""
    changes.setdefault("attrs", [copy.deepcopy(a) for a in ann.attrs])
    changes.setdefault("metadata", copy.deepcopy(ann.metadata))
    return replace(ann, **changes)


def rebuild_document(doc: TextDocument, anns: Iterable[Segment]) -> TextDocument:
    """A new document with ``doc``'s id, text and metadata (copied) and the given annotations."""
    return TextDocument(text=doc.text, id=doc.id, metadata=copy.deepcopy(doc.metadata), anns=list(anns))


# -- labels ----------------------------------------------------------------------------------


def map_label(label: str, label_map: Mapping[str, str | None] | None) -> str | None:
    """``label`` through ``label_map``: unmapped labels are kept, None or "" means drop."""
    if not label_map or label not in label_map:
        return label
    return label_map[label] or None


def apply_label_map(docs: Sequence[TextDocument], label_map: Mapping[str, str | None]) -> list[TextDocument]:
    """New documents whose entity labels went through ``label_map``.

    Labels missing from the map are kept; labels mapped to None or "" are dropped with their
    entities. Example: ``{"SpecificDisease": "Disease", "Modifier": "Disease", ...}``.
    Segments (non-entity annotations) are kept unchanged.
    """
    mapping = normalise_label_map(label_map)
    out = []
    for doc in docs:
        anns = []
        for ann in doc.anns:
            if isinstance(ann, Entity):
                label = map_label(ann.label, mapping)
                if label is None:
                    continue
                ann = copy_annotation(ann, label=label)
            else:
                ann = copy_annotation(ann)
            anns.append(ann)
        out.append(rebuild_document(doc, anns))
    return out


def filter_labels(
    docs: Sequence[TextDocument],
    keep: Iterable[str] | None = None,
    drop: Iterable[str] | None = None,
) -> list[TextDocument]:
    """New documents keeping only entities whose label is in ``keep`` (if given) and not in ``drop``."""
    keep_set = set(keep) if keep is not None else None
    drop_set = set(drop or ())
    out = []
    for doc in docs:
        anns = [
            copy_annotation(a)
            for a in doc.anns
            if not isinstance(a, Entity) or ((keep_set is None or a.label in keep_set) and a.label not in drop_set)
        ]
        out.append(rebuild_document(doc, anns))
    return out


def corpus_labels(docs: Iterable[TextDocument]) -> list[str]:
    """Sorted entity labels present in ``docs``."""
    return sorted({e.label for d in docs for e in d.anns.entities})


# -- overlaps --------------------------------------------------------------------------------


class OverlapError(CorpusError):
    """Two entities overlap under ``overlap_policy="error"``; readers add file and line to it."""

    def __init__(self, first: Entity, second: Entity) -> None:
        self.first, self.second = first, second
        super().__init__(
            f"{describe_entity(second)} overlaps {describe_entity(first)}; fix the annotations or pass "
            f"overlap_policy='keep_longest' or 'keep_first'"
        )


def describe_entity(ent: Segment) -> str:
    """Short description for messages: ``Disease 10-20 'breast cancer'``."""
    spans = ";".join(f"{s.start}-{s.end}" for s in ent.spans)
    return f"{ent.label} {spans} {ent.text!r}"


def _length(ent: Segment) -> int:
    return sum(s.length for s in ent.spans)


def find_overlap(entities: Sequence[AnnT]) -> tuple[AnnT, AnnT] | None:
    """The first overlapping pair (earlier, later in reading order), or None."""
    ordered = sorted(range(len(entities)), key=lambda i: (entities[i].start, i))
    for a_pos, i in enumerate(ordered):
        a = entities[i]
        for b_pos in range(a_pos + 1, len(ordered)):  # no copy of the rest: linear when nothing overlaps
            b = entities[ordered[b_pos]]
            if b.start >= a.end:
                break
            if a.overlaps(b):
                return a, b
    return None


def resolve_overlaps(entities: Sequence[Entity], policy: str = "error") -> tuple[list[Entity], list[Entity]]:
    """Split ``entities`` into (kept, dropped) under an overlap policy.

    - ``"error"``: raise `OverlapError` naming the first overlapping pair;
    - ``"keep_longest"``: keep the longest of overlapping entities (ties: the one starting first,
      then the one listed first);
    - ``"keep_first"``: keep the one starting first in the text (ties: the longest, then the one
      listed first);
    - ``"keep"``: keep everything (nested/overlapping entities allowed).

    Kept entities keep their input order. Exact duplicates count as overlaps.
    """
    check_choice("overlap_policy", policy, OVERLAP_POLICIES)
    entities = list(entities)
    if policy == "keep":
        return entities, []
    if policy == "error":
        pair = find_overlap(entities)
        if pair is not None:
            raise OverlapError(*pair)
        return entities, []
    if policy == "keep_longest":
        order = sorted(range(len(entities)), key=lambda i: (-_length(entities[i]), entities[i].start, i))
    else:
        order = sorted(range(len(entities)), key=lambda i: (entities[i].start, -_length(entities[i]), i))
    kept_idx: list[int] = []
    dropped_idx: list[int] = []
    kept_spans = _SpanIndex()
    for i in order:
        if kept_spans.overlaps_any(entities[i].spans):
            dropped_idx.append(i)
        else:
            kept_idx.append(i)
            kept_spans.add(entities[i].spans)
    return [entities[i] for i in sorted(kept_idx)], [entities[i] for i in sorted(dropped_idx)]


class _SpanIndex:
    """Spans sorted by start, so that the ones a new span may overlap are found by bisection
    (those starting at most the longest span's length before it), not by a scan of all."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int]] = []
        self._longest = 0

    def add(self, spans: Sequence[Span]) -> None:
        for span in spans:
            bisect.insort(self._spans, (span.start, span.end))
            self._longest = max(self._longest, span.end - span.start)

    def overlaps_any(self, spans: Sequence[Span]) -> bool:
        for span in spans:
            first = bisect.bisect_left(self._spans, (span.start - self._longest,))
            last = bisect.bisect_left(self._spans, (span.end,))
            if any(span.start < end and start < span.end for start, end in self._spans[first:last]):
                return True
        return False


# -- summaries and digests -------------------------------------------------------------------


def corpus_summary(docs: Sequence[TextDocument]) -> dict:
    """Counts describing ``docs``: documents, entities (total and per label, sorted), characters,
    whitespace tokens, documents without entities and discontinuous entities."""
    per_label: Counter = Counter()
    chars = tokens = empty = discontinuous = 0
    for doc in docs:
        ents = doc.anns.entities
        per_label.update(e.label for e in ents)
        discontinuous += sum(len(e.spans) > 1 for e in ents)
        chars += len(doc.text)
        tokens += len(doc.text.split())
        empty += not ents
    return {
        "documents": len(docs),
        "entities": sum(per_label.values()),
        "entities_per_label": dict(sorted(per_label.items())),
        "characters": chars,
        "whitespace_tokens": tokens,
        "documents_without_entities": empty,
        "discontinuous_entities": discontinuous,
    }


def format_summary(summary: dict | Sequence[TextDocument], name: str | None = None) -> str:
    """One paragraph describing a corpus (pass `corpus_summary`'s dict or the documents)."""
    if not isinstance(summary, dict):
        summary = corpus_summary(summary)
    labels = ", ".join(f"{k} {v:,}" for k, v in summary["entities_per_label"].items()) or "no labels"
    head = f"{name}: " if name else ""
    text = (
        f"{head}{summary['documents']:,} documents, {summary['entities']:,} entities ({labels}), "
        f"{summary['characters']:,} characters, {summary['whitespace_tokens']:,} whitespace tokens"
    )
    if summary.get("documents_without_entities"):
        text += f"; {summary['documents_without_entities']:,} documents without entities"
    if summary.get("discontinuous_entities"):
        text += f"; {summary['discontinuous_entities']:,} discontinuous entities"
    return text + "."


def corpus_digest(docs: Sequence[TextDocument], short: bool = False) -> str:
    """SHA-256 of the documents' ids, texts and entities (label and spans).

    Stable across runs and machines. It depends on document order (the same documents in
    another order give another digest: order matters to training), not on the order of
    entities within a document. Attributes, metadata, segments and uids are left out.
    ``short=True`` gives the first 12 hex characters.
    """
    h = hashlib.sha256()
    for doc in docs:
        ents = sorted((e.label, [[s.start, s.end] for s in e.spans]) for e in doc.anns.entities)
        record = {"id": doc.id, "text": doc.text, "entities": ents}
        h.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    digest = h.hexdigest()
    return digest[:12] if short else digest
