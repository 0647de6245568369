"""JSON Lines: one document per line.

    {"id": "doc1", "text": "Started on metformin.", "metadata": {"split": "train"},
     "entities": [{"label": "treatment", "spans": [[11, 20]], "text": "metformin",
                   "attrs": {"negation": true}}]}

``attrs`` is a ``{label: value}`` object, or a list of ``{"label", "value", "metadata"}``
objects when an entity has two attributes of one label (several normalisations) or
attribute metadata; the writer picks the object form whenever it is lossless. An entity's
``text`` is optional on reading (checked when present) and always written; ``metadata`` and
``score`` are written when set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medkit_exp.core.document import Attribute, Entity, Span, TextDocument, covered_text
from medkit_exp.io.base import (
    DATA_HINT,
    OVERLAP_POLICIES,
    Corpus,
    CorpusError,
    LoadReport,
    atomic_write_text,
    check_choice,
    display_name,
    normalise_label_map,
    normalise_labels,
    read_text_file,
)
from medkit_exp.io.corpus import OverlapError, describe_entity, map_label, resolve_overlaps


class _LineError(Exception):
    """Reason a line is invalid; turned into a `CorpusError` with file and line."""


def _parse_attrs(raw: Any, where: str) -> list[Attribute]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [Attribute(label=str(k), value=v) for k, v in raw.items()]
    if isinstance(raw, list):
        out = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("label"), str):
                raise _LineError(f"{where} attrs items must be objects with a string 'label'")
            metadata = dict(item.get("metadata") or {})
            out.append(Attribute(label=item["label"], value=item.get("value"), metadata=metadata))
        return out
    raise _LineError(f"{where} 'attrs' must be an object or a list")


def _parse_spans(raw: Any, text: str, where: str) -> list[Span]:
    if not isinstance(raw, list) or not raw:
        raise _LineError(f"{where} 'spans' must be a non-empty list of [start, end] pairs")
    spans = []
    for pair in raw:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
        ):
            raise _LineError(f"{where} span {pair!r} must be a [start, end] pair of integers")
        start, end = pair
        if not 0 <= start <= end <= len(text):
            raise _LineError(f"{where} span {start}-{end} is out of range for a text of {len(text)} characters")
        spans.append(Span(start, end))
    return sorted(spans)


def _parse_entity(raw: Any, index: int, text: str) -> Entity:
    where = f"entity {index}:"
    if not isinstance(raw, dict):
        raise _LineError(f"{where} must be an object with 'label' and 'spans'")
    label = raw.get("label")
    if not isinstance(label, str) or not label:
        raise _LineError(f"{where} 'label' must be a non-empty string")
    spans = _parse_spans(raw.get("spans"), text, where)
    expected = covered_text(text, spans)
    if "text" in raw and raw["text"] != expected:
        spans_s = ";".join(f"{s.start}-{s.end}" for s in spans)
        raise _LineError(f"{where} span {spans_s} text {raw['text']!r} does not match the document text {expected!r}")
    score = raw.get("score")
    if score is not None and not isinstance(score, (int, float)):
        raise _LineError(f"{where} 'score' must be a number")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _LineError(f"{where} 'metadata' must be an object")
    return Entity(
        label=label,
        spans=spans,
        text=expected,
        attrs=_parse_attrs(raw.get("attrs"), where),
        metadata=dict(metadata),
        score=score,
    )


def load_jsonl(
    path: str | Path,
    *,
    label_map: Mapping[str, str | None] | None = None,
    labels: Iterable[str] | None = None,
    overlap_policy: str = "error",
    encoding: str = "utf-8",
) -> Corpus:
    """Read a JSONL file (one document per line, blank lines skipped) into a `Corpus`.

    Missing ``id``: ``<file stem>-<line>``. Duplicate ids, invalid JSON, bad spans, text
    mismatches and unknown labels (``labels`` is checked after ``label_map``) raise a
    `CorpusError` naming the file and line. ``label_map`` and ``overlap_policy`` work as in
    `medkit_exp.io.brat.load_brat`.
    """
    check_choice("overlap_policy", overlap_policy, OVERLAP_POLICIES)
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: JSONL file does not exist; {DATA_HINT}")
    mapping = normalise_label_map(label_map)
    allowed = normalise_labels(labels)
    name = display_name(path)
    content = read_text_file(path, name, encoding)
    report = LoadReport(source=str(path), format="jsonl")
    docs: list[TextDocument] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = _parse_line(line, line_no, path.stem, mapping, allowed, overlap_policy, report)
        except _LineError as exc:
            raise CorpusError(f"{name} line {line_no}: {exc}") from None
        if doc.id in first_line:
            raise CorpusError(
                f"{name} line {line_no}: document id {doc.id!r} is already used on line {first_line[doc.id]}; "
                f"give each document its own id"
            )
        first_line[doc.id] = line_no
        docs.append(doc)
    if not docs:
        raise CorpusError(f"{name}: no documents in this file; check the path ({DATA_HINT})")
    report.documents = len(docs)
    return Corpus(documents=docs, report=report)


def _parse_line(line, line_no, stem, mapping, allowed, overlap_policy, report) -> TextDocument:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _LineError(f"invalid JSON ({exc.msg} at column {exc.colno}); write one JSON object per line") from None
    if not isinstance(record, dict):
        raise _LineError("each line must be a JSON object with at least 'text'")
    text = record.get("text")
    if not isinstance(text, str):
        raise _LineError("'text' is missing or not a string")
    doc_id = record.get("id", f"{stem}-{line_no}")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise _LineError("'id' must be a string")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _LineError("'metadata' must be an object")
    raw_entities = record.get("entities") or []
    if not isinstance(raw_entities, list):
        raise _LineError("'entities' must be a list")
    entities = []
    for i, raw in enumerate(raw_entities):
        ent = _parse_entity(raw, i, text)
        mapped = map_label(ent.label, mapping)
        if mapped is None:
            report.dropped_labels[ent.label] += 1
            continue
        if allowed is not None and mapped not in allowed:
            raise _LineError(
                f"entity {i}: label {ent.label!r} is not one of {sorted(allowed)}; add it to `labels` or map "
                f"it with `label_map` (None drops it)"
            )
        ent.label = mapped
        entities.append(ent)
    try:
        kept, dropped = resolve_overlaps(entities, overlap_policy)
    except OverlapError as exc:
        raise _LineError(
            f"entity {describe_entity(exc.second)} overlaps {describe_entity(exc.first)}; fix the annotations or "
            f"pass overlap_policy='keep_longest' or 'keep_first'"
        ) from None
    for ent in dropped:
        report.dropped_overlaps[ent.label] += 1
    report.entities.update(e.label for e in kept)
    report.attributes += sum(len(e.attrs) for e in kept)
    report.unannotated_documents += not raw_entities
    return TextDocument(text=text, id=str(doc_id), metadata=metadata, anns=kept)


def read_jsonl(path: str | Path, **kwargs) -> list[TextDocument]:
    """`load_jsonl`'s documents only (same arguments)."""
    return load_jsonl(path, **kwargs).documents


def _attrs_to_json(attrs: list[Attribute]) -> dict | list:
    labels = [a.label for a in attrs]
    if len(set(labels)) == len(labels) and not any(a.metadata for a in attrs):
        return {a.label: a.value for a in attrs}
    return [{"label": a.label, "value": a.value, **({"metadata": a.metadata} if a.metadata else {})} for a in attrs]


def document_to_record(doc: TextDocument) -> dict:
    """The JSONL record of a document (entities only; segments are not written)."""
    entities = []
    for ent in doc.anns.entities:
        item: dict[str, Any] = {"label": ent.label, "spans": [[s.start, s.end] for s in ent.spans], "text": ent.text}
        if ent.attrs:
            item["attrs"] = _attrs_to_json(ent.attrs)
        if ent.metadata:
            item["metadata"] = ent.metadata
        if ent.score is not None:
            item["score"] = ent.score
        entities.append(item)
    return {"id": doc.id, "text": doc.text, "entities": entities, "metadata": doc.metadata}


def format_jsonl(docs: Iterable[TextDocument]) -> str:
    """JSONL text of ``docs`` (UTF-8 characters kept, keys in a fixed order, one line each)."""
    lines = []
    for doc in docs:
        try:
            lines.append(json.dumps(document_to_record(doc), ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            raise CorpusError(
                f"document {doc.id!r}: cannot be written as JSON ({exc}); make its metadata and attribute "
                f"values JSON types (str, number, bool, None, list, dict)"
            ) from None
    return "".join(line + "\n" for line in lines)


def write_jsonl(docs: Iterable[TextDocument], path: str | Path, encoding: str = "utf-8") -> Path:
    """Write ``docs`` to ``path`` (parent folders created), through a temporary file then a rename."""
    path = Path(path)
    text = format_jsonl(docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, encoding)
    return path
