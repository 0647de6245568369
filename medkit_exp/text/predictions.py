"""Per-document predictions of a scored split: what any of its scores is recomputed from later,
without the model.

A run stores them as JSON Lines under ``<trainer.output_dir>/predictions/`` (``test.jsonl``,
``dev.jsonl``) and as the artifacts of the same names. One JSON object per line:

- NER, one per document: ``{"document_id", "split", "gold": [[label, start, end], ...],
  "predicted": [[label, start, end], ...]}``; offsets are characters of the document's text,
  the entities those the exact-span scorer (`ExactSpanEvaluator`) compares. An entity of several
  spans is ``[label, start1, end1, start2, end2, ...]`` (spans sorted).
  The NER component also stores what the model thought of each word (optional keys: readers
  that do not need them ignore them): ``"text"`` (the document's text), ``"tokens": [[start,
  end], ...]`` (the words the model tags, in document characters), ``"token_labels": ["O",
  "Disease", ...]`` (``O`` first, then the entity labels) and ``"token_probs": [[p_O, p_Disease,
  ...], ...]`` (per word, each label's probability: its tags' probabilities summed, B-/I-/L-/U-
  alike; rounded to 4 decimals, so a row sums to 1 within a few 1e-4). `TokenProbabilities`
  reads and writes them; `medkit_exp.analysis.suspects` ranks likely annotation errors from them.
- Classification, one per item: ``{"document_id", "split", "gold": label, "predicted": label}``
  (the items of a document share its id; the document is what a bootstrap resamples).
- Per-item values, from a metrics computer's ``item_values`` (a component without its own
  predictions), one per item: ``{"document_id", "split", "values": {name: number, ...}}``; a
  value's score is its mean over the items.

`medkit_exp.stats.ner_counts`, `classification_counts` and `item_value_counts` turn the records
into the counts every score and interval is computed from (`counts_of` picks the one that applies).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medkit_exp.core.document import Entity, TextDocument
from medkit_exp.stats import DocumentCounts, classification_counts, item_value_counts, ner_counts

PREDICTIONS_DIR = "predictions"

Record = dict[str, Any]


def predictions_file(folder: str | Path, split: str) -> Path:
    """``folder/predictions/<split>.jsonl``: where a run keeps a split's records."""
    return Path(folder) / PREDICTIONS_DIR / f"{split}.jsonl"


def entity_key(entity: Entity) -> list[Any]:
    """``[label, start, end]`` of an entity (more bounds for several spans), as the exact-span scorer matches it."""
    spans = sorted((span.start, span.end) for span in entity.spans)
    bounds = [bound for span in spans for bound in span]
    return [entity.label, *bounds]


PROBABILITY_DECIMALS = 4
OUTSIDE = "O"


@dataclass(frozen=True)
class TokenProbabilities:
    """What a NER model thought of each word of a text: the label probabilities of every word.

    Attributes:
        labels: ``"O"`` then the entity labels: the columns of ``probs``.
        tokens: ``(start, end)`` of each word in document characters, in text order.
        probs: float array ``(len(tokens), len(labels))``; each row sums to 1.
    """

    labels: tuple[str, ...]
    tokens: tuple[tuple[int, int], ...]
    probs: np.ndarray

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=float).reshape(len(self.tokens), len(self.labels))
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "tokens", tuple((int(s), int(e)) for s, e in self.tokens))
        object.__setattr__(self, "probs", probs)

    def shifted(self, offset: int) -> TokenProbabilities:
        """The same words ``offset`` characters further (a sentence's words in its document)."""
        return TokenProbabilities(self.labels, tuple((s + offset, e + offset) for s, e in self.tokens), self.probs)

    @classmethod
    def concatenate(cls, labels: Sequence[str], parts: Sequence[TokenProbabilities]) -> TokenProbabilities:
        """The words of ``parts`` (each with ``labels``) one after the other."""
        if any(part.labels != tuple(labels) for part in parts):
            raise ValueError(f"every part must have the labels {list(labels)}")
        tokens = tuple(token for part in parts for token in part.tokens)
        probs = np.concatenate([part.probs for part in parts]) if parts else np.zeros((0, len(labels)))
        return cls(tuple(labels), tokens, probs)

    def record_fields(self) -> dict[str, Any]:
        """``tokens``, ``token_labels`` and ``token_probs`` as a record stores them (probabilities rounded)."""
        rounded = np.round(self.probs, PROBABILITY_DECIMALS)
        return {"tokens": [list(token) for token in self.tokens], "token_labels": list(self.labels),
                "token_probs": [[float(p) for p in row] for row in rounded]}

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> TokenProbabilities | None:
        """The probabilities a record stores (None when it has none: older runs, classification)."""
        if record.get("token_probs") is None:
            return None
        labels, tokens, probs = record["token_labels"], record["tokens"], record["token_probs"]
        if len(tokens) != len(probs) or any(len(row) != len(labels) for row in probs):
            raise ValueError(f"document {record.get('document_id')!r}: {len(tokens)} tokens but {len(probs)} rows "
                             f"of token_probs, or rows of another length than token_labels ({len(labels)})")
        return cls(tuple(labels), tuple((s, e) for s, e in tokens), np.asarray(probs, dtype=float))


def ner_records(docs: Sequence[TextDocument], predictions: Sequence[Sequence[Entity]], split: str,
                probabilities: Sequence[TokenProbabilities] | None = None) -> list[Record]:
    """One record per document: its gold entities and ``predictions[i]`` (the entities predicted in
    ``docs[i]``); with ``probabilities`` (``probabilities[i]`` the words of ``docs[i]``), also the
    document's ``text``, ``tokens``, ``token_labels`` and ``token_probs``."""
    if len(docs) != len(predictions):
        raise ValueError(f"{len(docs)} documents but {len(predictions)} lists of predicted entities")
    if probabilities is not None and len(probabilities) != len(docs):
        raise ValueError(f"{len(docs)} documents but the word probabilities of {len(probabilities)}")
    records: list[Record] = [
        {"document_id": str(doc.id), "split": split, "gold": [entity_key(e) for e in doc.anns.entities],
         "predicted": [entity_key(e) for e in predicted]} for doc, predicted in zip(docs, predictions, strict=True)]
    for record, doc, words in zip(records, docs, probabilities or (), strict=False):
        record["text"] = doc.text
        record.update(words.record_fields())
    return records


def classification_records(document_ids: Sequence[str], gold: Sequence[str], predicted: Sequence[str],
                           split: str) -> list[Record]:
    """One record per item: the id of its document, its gold and its predicted class."""
    if not len(document_ids) == len(gold) == len(predicted):
        raise ValueError(f"{len(document_ids)} items, {len(gold)} gold and {len(predicted)} predicted classes")
    return [{"document_id": str(doc_id), "split": split, "gold": str(g), "predicted": str(p)}
            for doc_id, g, p in zip(document_ids, gold, predicted, strict=True)]


def value_records(document_ids: Sequence[str], values: Sequence[Mapping[str, float]], split: str) -> list[Record]:
    """One record per item: the id of its document and its values (``{name: number}``)."""
    if len(document_ids) != len(values):
        raise ValueError(f"{len(document_ids)} items but {len(values)} sets of values")
    return [{"document_id": str(doc_id), "split": split, "values": {str(k): float(v) for k, v in item.items()}}
            for doc_id, item in zip(document_ids, values, strict=True)]


def write_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``records`` as JSON Lines at ``path`` (its folder created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_records(path: str | Path) -> list[Record]:
    """The records of a JSON Lines file written by `write_records`."""
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def is_ner(records: Sequence[Mapping[str, Any]]) -> bool:
    """True for NER records (gold entities are lists), False for classification ones (a class)."""
    return bool(records) and isinstance(records[0].get("gold"), list)


def has_values(records: Sequence[Mapping[str, Any]]) -> bool:
    """True for per-item value records (``values``), whose scores are means."""
    return bool(records) and "values" in records[0]


def counts_of(records: Sequence[Mapping[str, Any]]) -> DocumentCounts:
    """Per-document counts of NER, classification or per-item value records (see `medkit_exp.stats`)."""
    if has_values(records):
        return item_value_counts(records)
    return ner_counts(records) if is_ner(records) else classification_counts(records)


def table_of(records: Sequence[Mapping[str, Any]], texts: Mapping[str, str] | None = None) -> dict[str, list[Any]]:
    """The records as columns for ``mlflow.log_table`` (the MLflow UI shows it as a table).

    NER: ``document_id``, ``gold``, ``predicted`` (entities as ``label [start, end) "text"``, the text
    when ``texts`` maps the document id to its text), ``correct``, ``missed``, ``spurious``.
    Classification: ``document_id``, ``gold``, ``predicted``, ``correct`` (true or false).
    """
    columns: dict[str, list[Any]] = {"document_id": [], "gold": [], "predicted": [], "correct": []}
    if not is_ner(records):
        for record in records:
            columns["document_id"].append(record["document_id"])
            columns["gold"].append(record["gold"])
            columns["predicted"].append(record["predicted"])
            columns["correct"].append(record["gold"] == record["predicted"])
        return columns
    columns |= {"missed": [], "spurious": []}
    for record in records:
        text = (texts or {}).get(str(record["document_id"]))
        gold = Counter(tuple(e) for e in record["gold"])
        predicted = Counter(tuple(e) for e in record["predicted"])
        right = sum((gold & predicted).values())
        columns["document_id"].append(record["document_id"])
        columns["gold"].append(_shown(record["gold"], text))
        columns["predicted"].append(_shown(record["predicted"], text))
        columns["correct"].append(right)
        columns["missed"].append(gold.total() - right)
        columns["spurious"].append(predicted.total() - right)
    return columns


def _shown(entities: Sequence[Sequence[Any]], text: str | None) -> str:
    """``label [start, end) "text"`` of each entity, one per line."""
    lines = []
    for label, *bounds in entities:
        spans = list(zip(bounds[::2], bounds[1::2], strict=True))
        where = " ".join(f"[{s}, {e})" for s, e in spans)
        shown = " ".join(text[s:e] for s, e in spans) if text is not None else None
        lines.append(f"{label} {where}" + (f" {json.dumps(shown, ensure_ascii=False)}" if shown is not None else ""))
    return "\n".join(lines)
