"""CoNLL-style token files (IOB1, IOB2, IOBES/BILOU tags) rebuilt into documents.

One token per line, ``TOKEN [other columns] TAG`` separated by whitespace; a blank line ends
a sentence; a ``-DOCSTART-`` line starts a new document. The document text is its tokens
joined by single spaces, sentences joined by ``"\\n"``; ``metadata["sentence_spans"]`` keeps
the sentences' ``[start, end]`` offsets. Entities come from the tags.

Malformed tag sequences (``I-X`` after ``O`` in IOB2, an IOBES chunk without its ``E-``...)
are repaired by default, each repair counted and reported with its file and line;
``strict=True`` makes them errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.io.base import (
    DATA_HINT,
    Corpus,
    CorpusError,
    LoadReport,
    check_choice,
    display_name,
    normalise_label_map,
    normalise_labels,
    read_text_file,
)
from medkit_exp.io.corpus import map_label

SCHEMES = ("auto", "IOB1", "IOB2", "IOBES")
_TAG = re.compile(r"^([BIESLU])-(\S+)$")
_BILOU = {"L": "E", "U": "S"}


@dataclass
class _Token:
    text: str
    prefix: str  # "O", "B", "I", "E" or "S"
    label: str | None
    line: int


def _parse_tag(tag: str, name: str, line: int) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    match = _TAG.match(tag)
    if not match:
        raise CorpusError(
            f"{name} line {line}: tag {tag!r} is not 'O' or B-/I-/E-/S- (or L-/U-) followed by a label; "
            f"fix the tag or choose the tag column with tag_column="
        )
    prefix = _BILOU.get(match.group(1), match.group(1))
    return prefix, match.group(2)


def _read_tokens(content: str, name: str, token_column: int, tag_column: int, docstart: str):
    """Documents as lists of sentences as lists of `_Token`."""
    docs: list[list[list[_Token]]] = [[]]
    sentence: list[_Token] = []

    def end_sentence():
        nonlocal sentence
        if sentence:
            docs[-1].append(sentence)
            sentence = []

    for line_no, raw in enumerate(content.split("\n"), start=1):
        line = raw.rstrip("\r")
        cols = line.split()
        if not cols:
            end_sentence()
            continue
        if cols[0] == docstart:
            end_sentence()
            if docs[-1]:
                docs.append([])
            continue
        if len(cols) < 2:
            raise CorpusError(
                f"{name} line {line_no}: expected 'TOKEN [columns] TAG', got {line[:80]!r}; add the tag "
                f"column (use O outside entities)"
            )
        try:
            token, tag = cols[token_column], cols[tag_column]
        except IndexError:
            raise CorpusError(
                f"{name} line {line_no}: has {len(cols)} columns, fewer than token_column={token_column} "
                f"/ tag_column={tag_column} need; fix the line or the column arguments"
            ) from None
        prefix, label = _parse_tag(tag, name, line_no)
        sentence.append(_Token(token, prefix, label, line_no))
    end_sentence()
    return [d for d in docs if d]


def _detect_scheme(sentences: Iterable[list[_Token]]) -> str:
    """``"IOBES"`` if any E-/S- tag; ``"IOB2"`` if any B- starts a chunk; else ``"IOB1"``."""
    b_starts = False
    has_i = False
    for sentence in sentences:
        prev = None
        for tok in sentence:
            if tok.prefix in ("E", "S"):
                return "IOBES"
            if tok.prefix == "B" and not (prev and prev.prefix in ("B", "I") and prev.label == tok.label):
                b_starts = True
            has_i |= tok.prefix == "I"
            prev = tok
    return "IOB2" if b_starts or not has_i else "IOB1"


def _decode_tags(sentence: list[_Token], scheme: str, on_problem) -> list[tuple[str, int, int]]:
    """Chunks ``(label, first token, last token + 1)`` of one sentence.

    ``on_problem(token, message)`` is called for each malformed sequence (it may raise); the
    repair keeps every tagged token inside an entity: an ``I-X`` that cannot continue a chunk
    starts one, an ``E-X`` without its ``B-X`` is a one-token chunk, and an IOBES chunk left
    open ends where the next tag (or the sentence) does.
    """
    iobes = scheme == "IOBES"
    chunks: list[tuple[str, int, int]] = []
    cur: tuple[str, int] | None = None  # (label, first token) of the open chunk

    def close(end: int, tok: _Token) -> None:
        nonlocal cur
        if cur is None:
            return
        if iobes:
            on_problem(tok, f"{cur[0]} entity starting on line {sentence[cur[1]].line} is not closed by E-{cur[0]}")
        chunks.append((cur[0], cur[1], end))
        cur = None

    for i, tok in enumerate(sentence):
        prefix, label = tok.prefix, tok.label
        if label is None:  # an O tag: it ends the open chunk
            close(i, tok)
            continue
        if prefix in ("E", "S") and not iobes:
            raise ValueError(f"line {tok.line}: tag {prefix}-{label} is not valid in {scheme}")
        if prefix == "I" and cur is not None and cur[0] == label:
            continue
        if prefix == "E" and cur is not None and cur[0] == label:
            chunks.append((label, cur[1], i + 1))
            cur = None
            continue
        close(i, tok)
        if prefix == "B":
            cur = (label, i)
        elif prefix == "I":
            if scheme != "IOB1":
                prev = sentence[i - 1] if i else None
                before = "the sentence start" if prev is None else (
                    "O" if prev.prefix == "O" else f"{prev.prefix}-{prev.label}"
                )
                on_problem(tok, f"I-{label} follows {before}")
            cur = (label, i)
        elif prefix == "E":
            on_problem(tok, f"E-{label} has no B-{label} before it")
            chunks.append((label, i, i + 1))
        elif prefix == "S":
            chunks.append((label, i, i + 1))
    if sentence:
        close(len(sentence), sentence[-1])
    return chunks


def load_conll(
    path: str | Path,
    *,
    scheme: str = "auto",
    strict: bool = False,
    token_column: int = 0,
    tag_column: int = -1,
    label_map: Mapping[str, str | None] | None = None,
    labels: Iterable[str] | None = None,
    encoding: str = "utf-8",
    docstart: str = "-DOCSTART-",
) -> Corpus:
    """Read a CoNLL/IOB file into a `Corpus`; document ids are ``<file stem>-<n>`` (n from 0).

    ``scheme``: ``"auto"`` (per file: IOBES if any E-/S- tag, IOB2 if any B- starts a chunk,
    else IOB1; the choice is in ``report.details["scheme"]``),
    ``"IOB1"``, ``"IOB2"`` or ``"IOBES"`` (BILOU's L-/U- read as E-/S-). ``strict``: malformed
    tag sequences are errors instead of repairs. ``label_map``/``labels`` as in `load_brat`.
    """
    check_choice("scheme", scheme, SCHEMES)
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: CoNLL file does not exist; {DATA_HINT}")
    name = display_name(path)
    mapping = normalise_label_map(label_map)
    allowed = normalise_labels(labels)
    raw_docs = _read_tokens(read_text_file(path, name, encoding), name, token_column, tag_column, docstart)
    if not raw_docs:
        raise CorpusError(f"{name}: no tokens in this file; check the path ({DATA_HINT})")
    used = _detect_scheme(s for d in raw_docs for s in d) if scheme == "auto" else scheme
    report = LoadReport(source=str(path), format="conll", details={"scheme": used, "repaired_tags": 0})

    def on_problem(tok: _Token, message: str) -> None:
        if strict:
            raise CorpusError(f"{name} line {tok.line}: {message} ({used}); fix the tags or pass strict=False")
        report.details["repaired_tags"] += 1
        report.warn(f"{name} line {tok.line}: {message} ({used}); repaired (strict=True rejects it)")

    docs = []
    for k, sentences in enumerate(raw_docs):
        docs.append(_build_document(f"{path.stem}-{k}", sentences, used, on_problem, mapping, allowed, report, name))
    report.documents = len(docs)
    return Corpus(documents=docs, report=report)


def _build_document(doc_id, sentences, scheme, on_problem, mapping, allowed, report, name) -> TextDocument:
    pieces: list[str] = []
    sentence_spans: list[list[int]] = []
    entities: list[Entity] = []
    offset = 0
    for sentence in sentences:
        starts = []
        pos = offset
        for tok in sentence:
            starts.append(pos)
            pos += len(tok.text) + 1
        sentence_text = " ".join(t.text for t in sentence)
        try:
            chunks = _decode_tags(sentence, scheme, on_problem)
        except ValueError as exc:
            raise CorpusError(f"{name} {exc}; pass scheme='IOBES' or scheme='auto'") from None
        for label, first, last in chunks:
            mapped = map_label(label, mapping)
            if mapped is None:
                report.dropped_labels[label] += 1
                continue
            if allowed is not None and mapped not in allowed:
                raise CorpusError(
                    f"{name} line {sentence[first].line}: label {label!r} is not one of {sorted(allowed)}; add it "
                    f"to `labels` or map it with `label_map` (None drops it)"
                )
            start, end = starts[first], starts[last - 1] + len(sentence[last - 1].text)
            entities.append(Entity(label=mapped, spans=[Span(start, end)], text=""))
        pieces.append(sentence_text)
        sentence_spans.append([offset, offset + len(sentence_text)])
        offset += len(sentence_text) + 1
    text = "\n".join(pieces)
    for ent in entities:
        ent.text = text[ent.start : ent.end]
    report.entities.update(e.label for e in entities)
    return TextDocument(
        text=text, id=doc_id, metadata={"source_format": "conll", "sentence_spans": sentence_spans}, anns=entities
    )


def read_conll(path: str | Path, **kwargs) -> list[TextDocument]:
    """`load_conll`'s documents only (same arguments)."""
    return load_conll(path, **kwargs).documents
