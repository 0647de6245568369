"""Split documents into sentence documents, and map annotations on them back.

Long abstracts do not fit a short model context; `split_into_sentences` makes one
`TextDocument` per sentence (id ``"<doc id>#s<i>"``, ``metadata["parent_id"]`` and
``metadata["parent_offset"]``) with its entities re-based into sentence coordinates. A
sentence boundary never cuts an entity: sentences an entity spans are merged.
`merge_sentence_entities` maps entities predicted on sentence documents back to their parents.

The splitter is rule-based: it cuts after ``.``, ``?`` or ``!`` (and closing quotes or
brackets) followed by whitespace and a character that is not lowercase, and at newlines;
never after an abbreviation (`ABBREVIATIONS`, case-insensitive), a single capital initial
(``J. Smith``), or between digits (``EC 1. 1``).
"""

from __future__ import annotations

import bisect
import copy
import itertools
import re
from collections.abc import Iterable, Sequence

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.io.base import CorpusError
from medkit_exp.io.corpus import copy_annotation, rebuild_document

ABBREVIATIONS = frozenset({
    "e.g", "i.e", "al", "vs", "dr", "mr", "mrs", "ms", "prof", "fig", "figs", "eq",
    "ref", "vol", "approx", "ca", "cf", "st", "jr", "sr", "resp", "viz", "incl",
})
_END = re.compile(r"[.!?]+[)\]\"'’”]*(?=\s)")
_TOKEN_START = re.compile(r"[^\s(\[\"'“‘]+$")
_NON_SPACE = re.compile(r"\S")
_LOOKBEHIND = 40  # characters before a period searched for the word it ends (abbreviation, initial)


def _is_boundary(text: str, match: re.Match, next_pos: int) -> bool:
    """Whether the sentence ends at ``match`` (``next_pos``: the next non-space character).

    Looks only at the ``_LOOKBEHIND`` characters before the match: the cost of a call does not
    grow with the text's length."""
    nxt = text[next_pos]
    if nxt.islower():
        return False
    if match.group() != ".":
        return True
    at = match.start()
    if at > 0 and text[at - 1].isdigit() and nxt.isdigit():
        return False
    word = _TOKEN_START.search(text, max(0, at - _LOOKBEHIND), at)
    if word is None:
        return True
    token = word.group()
    return not (token.lower() in ABBREVIATIONS or (len(token) == 1 and token.isupper()))


def sentence_spans(text: str, split_on_newlines: bool = True) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, trimmed of surrounding whitespace.

    Linear in the text's length: each candidate end looks ahead to the next non-space
    character with one regex search and behind at a bounded window; no remainder is copied.
    """
    cuts = {0, len(text)}
    if split_on_newlines:
        cuts.update(m.start() for m in re.finditer(r"\n", text))
    for match in _END.finditer(text):
        following = _NON_SPACE.search(text, match.end())
        if following is None:
            continue  # only whitespace after it: the text's end
        if _is_boundary(text, match, following.start()):
            cuts.add(match.end())
    spans = []
    points = sorted(cuts)
    for a, b in itertools.pairwise(points):
        first = _NON_SPACE.search(text, a, b)
        if first is None:
            continue  # only whitespace between two cuts
        end = b
        while text[end - 1].isspace():
            end -= 1
        spans.append((first.start(), end))
    return spans


def _protect_entities(spans: list[tuple[int, int]], entities: Sequence[Entity]) -> list[tuple[int, int]]:
    """Merge neighbouring sentences an entity crosses; stretch the ends to cover all entities.

    One sweep over the sentences and the entities sorted by start (not a scan of all entities
    at every sentence boundary)."""
    if not entities:
        return spans
    bounds = sorted((e.start, e.end) for e in entities)
    if not spans:
        return [(bounds[0][0], max(e for _, e in bounds))]
    merged = [list(spans[0])]
    seen, reach = 0, -1  # entities starting before the current sentence, and the farthest end among them
    for start, end in spans[1:]:
        while seen < len(bounds) and bounds[seen][0] < start:
            reach = max(reach, bounds[seen][1])
            seen += 1
        if reach > merged[-1][1]:  # an entity starting before this sentence ends inside (or after) it
            merged[-1][1] = end
        else:
            merged.append([start, end])
    merged[0][0] = min(merged[0][0], bounds[0][0])
    merged[-1][1] = max([merged[-1][1]] + [e for _, e in bounds])
    return [(s, e) for s, e in merged]


def _shift(ent: Entity, delta: int) -> Entity:
    return copy_annotation(ent, spans=[Span(s.start + delta, s.end + delta) for s in ent.spans])


def document_sentence_spans(doc: TextDocument, split_on_newlines: bool = True) -> list[tuple[int, int]]:
    """Sentence spans of ``doc``: ``metadata["sentence_spans"]`` (CoNLL documents) if present,
    else `sentence_spans` of its text; then merged so that no entity crosses a boundary."""
    given = doc.metadata.get("sentence_spans")
    spans = [tuple(s) for s in given] if given else sentence_spans(doc.text, split_on_newlines)
    return _protect_entities(spans, doc.anns.entities)


def split_into_sentences(docs: Iterable[TextDocument], split_on_newlines: bool = True) -> list[TextDocument]:
    """One document per sentence of each document, entities re-based (their ``uid`` kept).

    A sentence document has id ``f"{doc.id}#s{i}"`` and the parent's metadata plus
    ``parent_id``, ``parent_offset`` (its start in the parent's text) and ``sentence_index``.
    Only entities are carried (segments are not). A document with only whitespace gives no
    sentence document.
    """
    out = []
    for doc in docs:
        entities = doc.anns.entities
        by_start = sorted(range(len(entities)), key=lambda i: entities[i].start)
        starts = [entities[i].start for i in by_start]
        base_meta = {k: v for k, v in doc.metadata.items() if k != "sentence_spans"}
        for i, (start, end) in enumerate(document_sentence_spans(doc, split_on_newlines)):
            # The entities starting in the sentence, found by bisection, kept in the document's order.
            candidates = by_start[bisect.bisect_left(starts, start) : bisect.bisect_right(starts, end)]
            inside = [_shift(entities[k], -start) for k in sorted(candidates) if entities[k].end <= end]
            metadata = copy.deepcopy(base_meta)
            metadata.update(parent_id=doc.id, parent_offset=start, sentence_index=i)
            out.append(TextDocument(text=doc.text[start:end], id=f"{doc.id}#s{i}", metadata=metadata, anns=inside))
    return out


def entity_to_parent(entity: Entity, sentence_doc: TextDocument) -> Entity:
    """A copy of ``entity`` (annotated on ``sentence_doc``) in its parent's coordinates."""
    return _shift(entity, sentence_doc.metadata["parent_offset"])


def merge_sentence_entities(
    parents: Sequence[TextDocument],
    sentence_docs: Iterable[TextDocument],
    keep_parent_entities: bool = False,
) -> list[TextDocument]:
    """New parent documents holding the entities of their sentence documents (e.g. predictions).

    Sentence documents are matched to ``parents`` by ``metadata["parent_id"]`` and checked
    against the parent's text at ``parent_offset``. The parents' own entities are dropped
    unless ``keep_parent_entities``; their segments are kept. Returned in ``parents``' order.
    """
    by_id = {p.id: p for p in parents}
    found: dict[str, list[Entity]] = {p.id: [] for p in parents}
    for sdoc in sentence_docs:
        parent_id = sdoc.metadata.get("parent_id")
        offset = sdoc.metadata.get("parent_offset")
        if parent_id not in by_id or not isinstance(offset, int):
            raise CorpusError(
                f"sentence document {sdoc.id!r}: parent {parent_id!r} is not among the parents given (or it has "
                f"no parent_offset); pass the documents given to split_into_sentences"
            )
        parent = by_id[parent_id]
        if parent.text[offset : offset + len(sdoc.text)] != sdoc.text:
            raise CorpusError(
                f"sentence document {sdoc.id!r}: its text does not match parent {parent_id!r} at offset {offset}; "
                f"were the documents changed after split_into_sentences?"
            )
        found[parent_id].extend(entity_to_parent(e, sdoc) for e in sdoc.anns.entities)
    out = []
    for parent in parents:
        anns = [copy_annotation(a) for a in parent.anns if keep_parent_entities or not isinstance(a, Entity)]
        out.append(rebuild_document(parent, [*anns, *found[parent.id]]))
    return out
