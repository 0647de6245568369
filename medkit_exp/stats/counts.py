"""Per-document counts: what every score of a test split is computed from, kept per document so
that documents can be resampled.

A `DocumentCounts` holds an array ``documents x labels x (tp, fp, fn)``. For NER the counts come
from exact matching of ``(label, start, end)`` entities, as `ExactSpanEvaluator` (and seqeval's
strict mode on spans) score them: a predicted entity is a true positive when the document's gold
entities hold one with the same label and bounds (each gold entity matched once), else a false
positive; an unmatched gold entity is a false negative. For classification, an item whose
predicted class is its gold class adds a ``tp`` to that class, any other adds a ``fn`` to its
gold class and a ``fp`` to the predicted one. Summing the rows and applying a metric of
`medkit_exp.stats.metrics` gives the score the run logged.

For values a metrics computer gives per item (kind ``"mean"``, `item_value_counts`), a column
is one value (``mae``...) and a row holds, for a document, the sum of its items' values and
their number: the score of any set of documents is the mean of its items' values, so documents
are resampled, averaged over seeds and tested exactly as counts are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkit_exp.stats import metrics as _metrics
from medkit_exp.stats.metrics import FN, FP, ITEMS, MEAN, SUM, TP, Metric


@dataclass(frozen=True)
class DocumentCounts:
    """Counts ``tp``, ``fp``, ``fn`` per document and label of one system on one test split.

    Attributes:
        document_ids: one id per row of ``counts``, unique.
        labels: one label per column of ``counts``.
        counts: float array ``(documents, labels, 3)``; the last axis is ``tp, fp, fn``
            (floats, so that counts averaged over seeds are counts too); for kind ``"mean"``,
            the labels are value names and the last axis is ``sum of values, items, 0``.
        kind: ``"ner"``, ``"classification"`` or ``"mean"``: which metric names apply (see `metric`).
    """

    document_ids: tuple[str, ...]
    labels: tuple[str, ...]
    counts: np.ndarray
    kind: str = "ner"

    def __post_init__(self) -> None:
        _metrics.check_kind(self.kind)
        counts = np.asarray(self.counts, dtype=float)
        expected = (len(self.document_ids), len(self.labels), 3)
        if counts.shape != expected:
            raise ValueError(f"counts has shape {counts.shape}, expected {expected} (documents, labels, tp/fp/fn)")
        if len(set(self.document_ids)) != len(self.document_ids):
            raise ValueError("document ids must be unique: merge the rows of a document first")
        if np.any((counts[..., ITEMS] if self.kind == MEAN else counts) < 0):
            raise ValueError("counts must be non-negative")
        object.__setattr__(self, "document_ids", tuple(str(i) for i in self.document_ids))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "counts", counts)

    def __len__(self) -> int:
        return len(self.document_ids)

    def total(self) -> np.ndarray:
        """Counts summed over documents: ``(labels, 3)``."""
        return self.counts.sum(axis=0)

    def metric(self, name: str) -> Metric:
        """The function computing metric ``name`` from summed counts ``(..., labels, 3)``
        (``ValueError`` for a name that does not apply; see `medkit_exp.stats.metrics`)."""
        return _metrics.resolve(name, self.kind, self.labels)

    def metric_names(self) -> list[str]:
        """Every metric name accepted by `score` and the tests."""
        return _metrics.metric_names(self.kind, self.labels)

    def score(self, name: str) -> float:
        """Metric ``name`` over all documents (the figure the run logged under that name)."""
        return float(self.metric(name)(self.total()))

    def scores(self) -> dict[str, float]:
        """Every metric of `metric_names`, by name."""
        return {name: self.score(name) for name in self.metric_names()}

    def default_metric(self) -> str:
        """The metric compared when none is named: ``f1`` (NER), ``accuracy`` (classification),
        the first value (per-item means)."""
        return _metrics.default_metric(self.kind, self.labels)

    def micro_f1(self) -> float:
        """F1 of the counts summed over labels (NER's ``f1``)."""
        return float(_metrics.micro("f1")(self.total()))

    def micro_precision(self) -> float:
        """Precision of the counts summed over labels (NER's ``precision``)."""
        return float(_metrics.micro("precision")(self.total()))

    def micro_recall(self) -> float:
        """Recall of the counts summed over labels (NER's ``recall``)."""
        return float(_metrics.micro("recall")(self.total()))

    def macro_f1(self) -> float:
        """Mean per-label F1 over the labels present (classification's ``f1`` and ``macro_f1``)."""
        return float(_metrics.macro("f1")(self.total()))

    def accuracy(self) -> float:
        """Share of items classified right (classification's ``accuracy``)."""
        return float(_metrics.accuracy(self.total()))

    def per_label_f1(self) -> dict[str, float]:
        """F1 of each label alone."""
        total = self.total()
        return {label: float(_metrics.of_label(i, "f1")(total)) for i, label in enumerate(self.labels)}

    def with_labels(self, labels: Sequence[str]) -> DocumentCounts:
        """The same counts over ``labels`` (a superset of `labels`, in any order; new ones count 0)."""
        missing = [label for label in self.labels if label not in set(labels)]
        if missing:
            raise ValueError(f"labels {missing} would be dropped: give a superset of the counts' labels")
        counts = np.zeros((len(self), len(labels), 3))
        for j, label in enumerate(labels):
            if label in self.labels:
                counts[:, j] = self.counts[:, self.labels.index(label)]
        return DocumentCounts(self.document_ids, tuple(labels), counts, self.kind)

    def in_order(self, document_ids: Sequence[str]) -> DocumentCounts:
        """The rows of ``document_ids`` (ids of these counts, each once), in that order."""
        row = {doc_id: i for i, doc_id in enumerate(self.document_ids)}
        return DocumentCounts(tuple(document_ids), self.labels, self.counts[[row[i] for i in document_ids]],
                              self.kind)


def align(*systems: DocumentCounts) -> list[DocumentCounts]:
    """The systems over the same documents (in the first one's order) and the union of their labels.

    Raises ``ValueError`` when they are of different kinds or were scored on different
    documents, naming how many document ids differ.
    """
    if not systems:
        return []
    first = systems[0]
    kinds = {s.kind for s in systems}
    if len(kinds) > 1:
        raise ValueError(f"cannot compare scores of different kinds ({', '.join(sorted(kinds))})")
    reference = set(first.document_ids)
    for number, other in enumerate(systems[1:], start=2):
        ids = set(other.document_ids)
        if ids != reference:
            only_first, only_other = len(reference - ids), len(ids - reference)
            raise ValueError(
                f"the systems were scored on different documents: {only_first + only_other} document ids differ "
                f"({only_first} only in system 1, {only_other} only in system {number}); compare runs scored on "
                "the same test documents"
            )
    labels = list(first.labels)
    for other in systems[1:]:
        labels += [label for label in other.labels if label not in set(labels)]
    return [s.with_labels(labels).in_order(first.document_ids) for s in systems]


def ner_counts(records: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None) -> DocumentCounts:
    """Per-document counts of NER records ``{"document_id", "gold": [[label, start, end], ...],
    "predicted": [...]}`` (other keys, such as ``split``, are ignored).

    An entity is matched on all its fields: ``[label, start, end]``, or more bounds for an
    entity of several spans. Records sharing a ``document_id`` are one document (their counts
    add). ``labels``: the columns, in this order, before any other label seen (default: the
    labels seen, sorted).
    """
    rows: dict[str, Counter[tuple[str, int]]] = {}
    seen: set[str] = set()
    for number, record in enumerate(records):
        doc_id = _document_id(record, number)
        gold = Counter(_entity_key(e, number, "gold") for e in _field(record, "gold", number))
        predicted = Counter(_entity_key(e, number, "predicted") for e in _field(record, "predicted", number))
        row = rows.setdefault(doc_id, Counter())
        for key, count in gold.items():
            matched = min(count, predicted.get(key, 0))
            row[key[0], TP] += matched
            row[key[0], FN] += count - matched
        for key, count in predicted.items():
            row[key[0], FP] += count - min(count, gold.get(key, 0))
        seen.update(key[0] for key in gold)
        seen.update(key[0] for key in predicted)
    return _build(rows, seen, labels, "ner")


def classification_counts(records: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None
                          ) -> DocumentCounts:
    """Per-document counts of classification records ``{"document_id", "gold": label,
    "predicted": label}``, one per item.

    The items of one document (records sharing a ``document_id``) are one row: the document is
    the unit resampled. ``labels``: the columns, in this order, before any other class seen
    (default: the classes seen, sorted).
    """
    rows: dict[str, Counter[tuple[str, int]]] = {}
    seen: set[str] = set()
    for number, record in enumerate(records):
        doc_id = _document_id(record, number)
        gold, predicted = str(_field(record, "gold", number)), str(_field(record, "predicted", number))
        row = rows.setdefault(doc_id, Counter())
        if gold == predicted:
            row[gold, TP] += 1
        else:
            row[gold, FN] += 1
            row[predicted, FP] += 1
        seen.update((gold, predicted))
    return _build(rows, seen, labels, "classification")


def item_value_counts(records: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None
                      ) -> DocumentCounts:
    """Per-document sums of per-item values ``{"document_id", "values": {name: number, ...}}``,
    one record per item (kind ``"mean"``; other keys, such as ``split``, are ignored).

    A value's score is its mean over the items that carry it; the items of one document (records
    sharing a ``document_id``) are one row, the unit resampled. ``labels``: the columns, in this
    order, before any other value name (default: the names in the order they first appear).
    """
    rows: dict[str, dict[tuple[str, int], float]] = {}
    seen: dict[str, None] = {}  # insertion-ordered: the first record's names come first
    for number, record in enumerate(records):
        doc_id = _document_id(record, number)
        values = _field(record, "values", number)
        if not isinstance(values, Mapping):
            raise ValueError(f"prediction record {number}: values must map names to numbers, got {values!r}")
        row = rows.setdefault(doc_id, {})
        for name, value in values.items():
            number_value = _number(value, number, str(name))
            row[str(name), SUM] = row.get((str(name), SUM), 0.0) + number_value
            row[str(name), ITEMS] = row.get((str(name), ITEMS), 0.0) + 1
            seen[str(name)] = None
    columns = list(labels or []) + [name for name in seen if name not in set(labels or [])]
    return _build(rows, set(seen), columns, MEAN)


def _number(value: Any, number: int, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"prediction record {number}: value {name!r} is {value!r}, not a finite number")
    return float(value)


def _build(rows: Mapping[str, Mapping[tuple[str, int], float]], seen: set[str], labels: Sequence[str] | None,
           kind: str) -> DocumentCounts:
    columns = list(labels or []) + sorted(seen - set(labels or []))
    index = {label: j for j, label in enumerate(columns)}
    counts = np.zeros((len(rows), len(columns), 3))
    for i, row in enumerate(rows.values()):
        for (label, which), count in row.items():
            counts[i, index[label], which] = count
    return DocumentCounts(tuple(rows), tuple(columns), counts, kind)


def _document_id(record: Mapping[str, Any], number: int) -> str:
    return str(_field(record, "document_id", number))


def _field(record: Mapping[str, Any], key: str, number: int) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise ValueError(f"prediction record {number} has no {key!r}: each record needs document_id, gold and "
                         "predicted")
    return record[key]


def _entity_key(entity: Any, number: int, side: str) -> tuple[Any, ...]:
    if isinstance(entity, (str, bytes)) or not isinstance(entity, Sequence) or len(entity) < 3:
        raise ValueError(f"prediction record {number}: {side} entity {entity!r} is not [label, start, end]")
    return (str(entity[0]), *(int(bound) for bound in entity[1:]))
