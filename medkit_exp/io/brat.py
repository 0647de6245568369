"""BRAT standoff: read a folder of ``.txt``/``.ann`` pairs into documents, and write them back.

``T`` lines become `Entity` objects (a discontinuous ``0 5;9 14`` one becomes a multi-span
entity), ``A``/``M`` lines become attributes of their entity (a binary attribute has value
True), ``N`` lines become ``Attribute(label="normalization", value="MeSH:D001943",
metadata={"type": "Reference"})``. ``#`` notes and ``R``/``E``/``*`` lines are ignored and
counted in the `LoadReport`.

    corpus = load_brat("data/ncbi-disease/train", label_map={"Modifier": "Disease", ...})
    corpus.documents, corpus.report.to_dict()
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    require_folder,
)
from medkit_exp.io.corpus import OverlapError, describe_entity, map_label, resolve_overlaps

NORMALIZATION = "normalization"
DEFAULT_SPLITS = ("train", "dev", "test")
_IGNORED_KINDS = ("#", "R", "E", "*")
_OFFSETS = re.compile(r"^\d+ \d+(;\d+ \d+)*$")
_WS = re.compile(r"[\r\n\t]")


@dataclass
class _RawEntity:
    line: int
    brat_id: str
    label: str  # after the label map
    spans: list[Span]
    text: str


@dataclass
class _RawAttr:
    line: int
    kind: str  # "A" (A or M) or "N"
    target: str
    attr: Attribute


def _malformed(name: str, line: int, raw: str, expected: str) -> CorpusError:
    return CorpusError(f"{name} line {line}: malformed line {raw[:80]!r}; expected {expected}")


def _parse_t(name: str, line: int, raw: str, text: str, discontinuous: str) -> tuple[str, str, list[Span], str]:
    fields = raw.split("\t", 2)
    head = fields[1].split(" ", 1) if len(fields) >= 2 else []
    if len(fields) != 3 or len(head) != 2 or not _OFFSETS.match(head[1].strip()):
        raise _malformed(name, line, raw, "'T1<TAB>Label START END<TAB>text' (';'-separated START END pairs)")
    label, offsets = head[0], head[1].strip()
    pairs = [tuple(int(x) for x in piece.split()) for piece in offsets.split(";")]
    if len(pairs) > 1 and discontinuous == "error":
        raise CorpusError(
            f"{name} line {line}: entity {fields[0]} has discontinuous spans {offsets!r}; fix the "
            f"annotation or pass discontinuous='keep' to load it as a multi-span entity"
        )
    for start, end in pairs:
        if start > end or end > len(text):
            raise CorpusError(
                f"{name} line {line}: span {start}-{end} is out of range for the .txt of {len(text)} "
                f"characters; fix the offsets (or check that the .txt is the one annotated)"
            )
    spans = sorted(Span(s, e) for s, e in pairs)
    expected = covered_text(text, spans)
    # BRAT writes a newline inside a span as a space in the .ann: compare with those normalised.
    if _WS.sub(" ", expected) != _WS.sub(" ", fields[2]):
        raise CorpusError(
            f"{name} line {line}: span {offsets.replace(' ', '-')} text {fields[2]!r} does not match the "
            f".txt text {expected!r}; fix the offsets or the text"
        )
    return fields[0], label, spans, expected


def _parse_attr(name: str, line: int, raw: str) -> _RawAttr:
    fields = raw.split("\t")
    parts = fields[1].split() if len(fields) >= 2 else []
    kind = raw[0]
    if kind == "N":
        if len(parts) != 3:
            raise _malformed(name, line, raw, "'N1<TAB>Reference T1 DB:ID[<TAB>name]'")
        meta = {"type": parts[0]}
        if len(fields) >= 3 and fields[2]:
            meta["name"] = fields[2]
        return _RawAttr(line, "N", parts[1], Attribute(label=NORMALIZATION, value=parts[2], metadata=meta))
    if len(parts) not in (2, 3):
        raise _malformed(name, line, raw, f"'{kind}1<TAB>Name T1' or '{kind}1<TAB>Name T1 VALUE'")
    value = parts[2] if len(parts) == 3 else True
    return _RawAttr(line, "A", parts[1], Attribute(label=parts[0], value=value))


def parse_ann(
    ann_text: str,
    text: str,
    name: str,
    report: LoadReport,
    *,
    label_map: Mapping[str, str | None] | None = None,
    labels: set[str] | None = None,
    overlap_policy: str = "error",
    discontinuous: str = "keep",
) -> list[Entity]:
    """Entities of one ``.ann`` file (``name`` is used in messages), counted into ``report``."""
    raw_ents: list[_RawEntity] = []
    raw_attrs: list[_RawAttr] = []
    t_lines: dict[str, int] = {}
    dropped_ids: set[str] = set()
    event_ids: set[str] = set()
    for line_no, raw in enumerate(ann_text.split("\n"), start=1):
        raw = raw.rstrip("\r")
        if not raw.strip():
            continue
        kind = raw[0]
        if kind in _IGNORED_KINDS:
            report.ignored_lines[kind] += 1
            if kind == "E":
                event_ids.add(raw.split("\t", 1)[0])
            continue
        if kind == "T":
            brat_id, label, spans, covered = _parse_t(name, line_no, raw, text, discontinuous)
            if brat_id in t_lines:
                raise CorpusError(
                    f"{name} line {line_no}: id {brat_id} is already used on line {t_lines[brat_id]}; "
                    f"give each T line its own id"
                )
            t_lines[brat_id] = line_no
            mapped = map_label(label, label_map)
            if mapped is None:
                report.dropped_labels[label] += 1
                dropped_ids.add(brat_id)
                continue
            if labels is not None and mapped not in labels:
                shown = f"{label!r} (mapped to {mapped!r})" if mapped != label else repr(label)
                raise CorpusError(
                    f"{name} line {line_no}: label {shown} is not one of {sorted(labels)}; add it to "
                    f"`labels` or map it with `label_map` (None drops it)"
                )
            raw_ents.append(_RawEntity(line_no, brat_id, mapped, spans, covered))
        elif kind in ("A", "M", "N"):
            raw_attrs.append(_parse_attr(name, line_no, raw))
        else:
            raise _malformed(name, line_no, raw, "a line starting with T, A, M, N, R, E, * or #")

    entities = [
        Entity(label=r.label, spans=r.spans, text=r.text, metadata={"brat_id": r.brat_id}) for r in raw_ents
    ]
    line_of = {id(e): r.line for e, r in zip(entities, raw_ents, strict=True)}
    try:
        kept, dropped = resolve_overlaps(entities, overlap_policy)
    except OverlapError as exc:
        a, b = exc.first, exc.second
        raise CorpusError(
            f"{name} line {line_of[id(b)]}: entity {b.metadata['brat_id']} ({describe_entity(b)}) overlaps "
            f"{a.metadata['brat_id']} ({describe_entity(a)}) on line {line_of[id(a)]}; fix the annotations "
            f"or pass overlap_policy='keep_longest' or 'keep_first'"
        ) from None
    for ent in dropped:
        report.dropped_overlaps[ent.label] += 1
        dropped_ids.add(ent.metadata["brat_id"])

    by_id = {e.metadata["brat_id"]: e for e in kept}
    for ra in raw_attrs:
        if ra.target in by_id:
            by_id[ra.target].attrs.append(ra.attr)
            if ra.kind == "N":
                report.normalizations += 1
            else:
                report.attributes += 1
        elif ra.target in dropped_ids:
            report.ignored_lines[f"{ra.kind} of dropped entity"] += 1
        elif ra.target in event_ids:
            report.ignored_lines[f"{ra.kind} of event"] += 1
        else:
            raise CorpusError(
                f"{name} line {ra.line}: refers to {ra.target}, which no T line of this file defines; "
                f"fix the id or remove the line"
            )
    kept.sort(key=lambda e: ([(s.start, s.end) for s in e.spans], e.label))
    report.entities.update(e.label for e in kept)
    return kept


def _check_options(overlap_policy: str, discontinuous: str) -> None:
    check_choice("overlap_policy", overlap_policy, OVERLAP_POLICIES)
    check_choice("discontinuous", discontinuous, ("keep", "error"))


def load_brat(
    path: str | Path,
    *,
    label_map: Mapping[str, str | None] | None = None,
    labels: Iterable[str] | None = None,
    overlap_policy: str = "error",
    discontinuous: str = "keep",
    encoding: str = "utf-8",
    split: str | None = None,
) -> Corpus:
    """Read a folder of BRAT ``.txt``/``.ann`` pairs into a `Corpus` (documents + `LoadReport`).

    - A ``.txt`` without ``.ann`` is an unannotated document; an ``.ann`` without ``.txt`` is
      an error. Files are read in name order; hidden files (``.name``) are skipped.
    - Document ids are file stems; ``metadata = {"path": <.txt path>, "split": split}`` (split
      only when given).
    - ``label_map`` renames labels at read time (a label mapped to None or "" is dropped and
      counted); ``labels``, when given, lists the allowed labels *after* the map: any other
      label is an error naming its file and line.
    - ``overlap_policy``: ``"error"`` (default), ``"keep_longest"``, ``"keep_first"`` or
      ``"keep"`` (allow nested entities); dropped entities are counted in the report.
    - ``discontinuous``: ``"keep"`` (a multi-span entity) or ``"error"``.

    Raises `CorpusError` with file and line for any malformed input.
    """
    _check_options(overlap_policy, discontinuous)
    folder = require_folder(Path(path), "BRAT folder")
    mapping = normalise_label_map(label_map)
    allowed = normalise_labels(labels)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    txts = {p.name[:-4]: p for p in files if p.name.endswith(".txt")}
    anns = {p.name[:-4]: p for p in files if p.name.endswith(".ann")}
    if not txts and not anns:
        subs = [d.name for d in sorted(folder.iterdir()) if d.is_dir() and any(d.glob("*.txt"))]
        hint = f"; it has split folders {subs}: use read_brat_splits" if subs else f"; {DATA_HINT}"
        raise CorpusError(f"{folder}: no BRAT .txt/.ann files in this folder{hint}")
    orphans = sorted(set(anns) - set(txts))
    if orphans:
        stem = orphans[0]
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise CorpusError(
            f"{display_name(anns[stem], folder)}: has no matching {stem}.txt{more}; add the text file or "
            f"remove the .ann"
        )

    report = LoadReport(source=str(folder), format="brat")
    docs = []
    for stem in sorted(txts):
        txt_path = txts[stem]
        text = read_text_file(txt_path, display_name(txt_path, folder), encoding)
        metadata: dict = {"path": str(txt_path)}
        if split is not None:
            metadata["split"] = split
        doc = TextDocument(text=text, id=stem, metadata=metadata)
        if stem in anns:
            ann_name = display_name(anns[stem], folder)
            ann_text = read_text_file(anns[stem], ann_name, encoding)
            for ent in parse_ann(
                ann_text,
                text,
                ann_name,
                report,
                label_map=mapping,
                labels=allowed,
                overlap_policy=overlap_policy,
                discontinuous=discontinuous,
            ):
                doc.anns.add(ent)
        else:
            report.unannotated_documents += 1
        docs.append(doc)
    report.documents = len(docs)
    return Corpus(documents=docs, report=report)


def read_brat(
    path: str | Path,
    *,
    label_map: Mapping[str, str | None] | None = None,
    labels: Iterable[str] | None = None,
    overlap_policy: str = "error",
    discontinuous: str = "keep",
    encoding: str = "utf-8",
    split: str | None = None,
) -> list[TextDocument]:
    """`load_brat`'s documents only (same arguments); use `load_brat` to see the report."""
    return load_brat(
        path,
        label_map=label_map,
        labels=labels,
        overlap_policy=overlap_policy,
        discontinuous=discontinuous,
        encoding=encoding,
        split=split,
    ).documents


def load_brat_splits(
    root: str | Path, splits: Sequence[str] = DEFAULT_SPLITS, **kwargs
) -> dict[str, Corpus]:
    """``{split: Corpus}`` for a root holding one BRAT folder per split (``root/train``...).

    Each document's metadata gets ``"split"``. Other arguments go to `load_brat`.
    """
    root = require_folder(Path(root), "corpus root")
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        raise CorpusError(
            f"{root}: split folder(s) {missing} missing; expected {[str(root / s) for s in splits]} "
            f"(pass splits=... to choose others, or {DATA_HINT})"
        )
    return {s: load_brat(root / s, split=s, **kwargs) for s in splits}


def read_brat_splits(
    root: str | Path, splits: Sequence[str] = DEFAULT_SPLITS, **kwargs
) -> dict[str, list[TextDocument]]:
    """``{split: documents}``: `load_brat_splits` without the reports."""
    return {s: c.documents for s, c in load_brat_splits(root, splits, **kwargs).items()}


# -- writing ---------------------------------------------------------------------------------


def _check_token(what: str, value: str, doc_id: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise CorpusError(
            f"document {doc_id!r}: {what} {value!r} cannot be written to BRAT (it must be a non-empty "
            f"string without whitespace); rename it or write JSONL instead"
        )


def format_ann(doc: TextDocument) -> str:
    """The ``.ann`` text of a document's entities (ids T1.. in order, then their A/N lines).

    Attributes: True -> binary ``A``; False or None -> nothing (BRAT's "absent"); strings and
    numbers -> ``A ... VALUE`` (read back as strings); ``normalization`` -> ``N`` (type from
    the attribute's ``metadata["type"]``, default ``Reference``).
    """
    lines: list[str] = []
    n_attr = n_norm = 0
    for i, ent in enumerate(doc.anns.entities, start=1):
        _check_token("entity label", ent.label, doc.id)
        offsets = ";".join(f"{s.start} {s.end}" for s in ent.spans)
        lines.append(f"T{i}\t{ent.label} {offsets}\t{_WS.sub(' ', ent.text)}")
        for attr in ent.attrs:
            if attr.label == NORMALIZATION:
                n_norm += 1
                kind = attr.metadata.get("type", "Reference")
                _check_token("normalization type", kind, doc.id)
                _check_token("normalization value", attr.value, doc.id)
                line = f"N{n_norm}\t{kind} T{i} {attr.value}"
                if attr.metadata.get("name"):
                    line += f"\t{_WS.sub(' ', str(attr.metadata['name']))}"
                lines.append(line)
                continue
            _check_token("attribute label", attr.label, doc.id)
            if attr.value is True:
                n_attr += 1
                lines.append(f"A{n_attr}\t{attr.label} T{i}")
            elif attr.value is False or attr.value is None:
                continue
            elif isinstance(attr.value, (str, int, float)):
                _check_token(f"attribute {attr.label!r} value", str(attr.value), doc.id)
                n_attr += 1
                lines.append(f"A{n_attr}\t{attr.label} T{i} {attr.value}")
            else:
                raise CorpusError(
                    f"document {doc.id!r}: attribute {attr.label!r} value {attr.value!r} cannot be written "
                    f"to BRAT (only True, strings and numbers can); convert it or write JSONL instead"
                )
    return "".join(line + "\n" for line in lines)


def write_brat(docs: Iterable[TextDocument], folder: str | Path, encoding: str = "utf-8") -> Path:
    """Write each document as ``<id>.txt`` and ``<id>.ann`` in ``folder`` (created if needed).

    Only entities are written (segments, scores and metadata are not: use JSONL for those).
    Each file is written to a temporary name then renamed; files of the same name are
    replaced, other files in the folder are left alone. Returns the folder.
    """
    folder = Path(folder)
    docs = list(docs)
    seen: set[str] = set()
    for doc in docs:  # check everything before writing anything
        if not doc.id or "/" in doc.id or "\\" in doc.id or doc.id.startswith("."):
            raise CorpusError(
                f"document id {doc.id!r} cannot be a BRAT file name; give documents ids without "
                f"'/', '\\' or a leading '.'"
            )
        if doc.id in seen:
            raise CorpusError(f"document id {doc.id!r} appears twice; BRAT needs one file pair per id")
        seen.add(doc.id)
    ann_texts = [format_ann(doc) for doc in docs]
    folder.mkdir(parents=True, exist_ok=True)
    for doc, ann_text in zip(docs, ann_texts, strict=True):
        atomic_write_text(folder / f"{doc.id}.txt", doc.text, encoding)
        atomic_write_text(folder / f"{doc.id}.ann", ann_text, encoding)
    return folder
