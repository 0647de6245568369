"""Score predicted entities against reference documents.

- `SeqEvalEvaluator`: both sides are tagged over the words of the text (a simple regex
  tokenizer by default) and scored with seqeval, strict mode; independent of any model's
  tokenizer, so models with different tokenizers are comparable.
- `ExactSpanEvaluator`: a predicted entity counts only if a reference entity of the same
  document has exactly its label and spans.

Both return ``precision``, ``recall``, ``f1`` and per label ``{label}_precision``,
``{label}_recall``, ``{label}_f1``, ``{label}_support``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from medkit_exp.core.document import Entity, TextDocument
from medkit_exp.text.metrics.seqeval_metrics import check_options, seqeval_scores
from medkit_exp.text.ner.tagging import UnitLocator, check_scheme, encode_tags, resolve_overlaps

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")

WordTokenizer = Callable[[str], Sequence[tuple[int, int]]]


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges of the words (``\\w+``) and punctuation marks of ``text``."""
    return [m.span() for m in WORD_PATTERN.finditer(text)]


def _check_inputs(reference_docs: Sequence[TextDocument], predicted_entities: Sequence[Sequence[Entity]]) -> None:
    if len(reference_docs) != len(predicted_entities):
        raise ValueError(
            f"got {len(reference_docs)} reference documents but {len(predicted_entities)} lists of predicted "
            "entities: give one list of entities per document, in the same order"
        )


class SeqEvalEvaluator:
    """Token-level (seqeval) evaluation of predicted entities against reference documents.

    Args:
        tagging_scheme: ``"iob2"`` or ``"bilou"``, used for both sides.
        return_metrics_by_label: add the per-label scores.
        average: ``"micro"``, ``"macro"`` or ``"weighted"``.
        tokenizer: ``text -> [(start, end), ...]`` word ranges; default `word_spans`.
        labels_remapping: labels renamed on both sides before scoring (``{"disorder": "DISO"}``),
            for a model whose labels differ from the reference's.
        key_style, strict: how scores are named and entities matched (see `seqeval_scores`).

    An entity is tagged on every word it overlaps; each span of a discontinuous entity is
    tagged as its own mention; of overlapping entities the longest is kept (flat tagging).
    """

    def __init__(
        self,
        tagging_scheme: str = "iob2",
        return_metrics_by_label: bool = True,
        average: str = "micro",
        tokenizer: WordTokenizer | None = None,
        labels_remapping: Mapping[str, str] | None = None,
        *,
        key_style: str = "medkit_exp",
        strict: bool = True,
    ) -> None:
        self.tagging_scheme = check_scheme(tagging_scheme)
        check_options(average, key_style)
        self.average = average
        self.return_metrics_by_label = return_metrics_by_label
        self.tokenizer = tokenizer or word_spans
        self.labels_remapping = dict(labels_remapping or {})
        self.key_style, self.strict = key_style, strict

    def compute(
        self, reference_docs: Sequence[TextDocument], predicted_entities: Sequence[Sequence[Entity]]
    ) -> dict[str, float]:
        """Scores of ``predicted_entities[i]`` against the entities of ``reference_docs[i]``."""
        _check_inputs(reference_docs, predicted_entities)
        y_true, y_pred = [], []
        labels: set[str] = set()
        for doc, predicted in zip(reference_docs, predicted_entities, strict=True):
            words = list(self.tokenizer(doc.text))
            gold = doc.anns.entities
            labels.update(self._label(e) for e in gold)
            labels.update(self._label(e) for e in predicted)
            y_true.append(self._tags(words, gold))
            y_pred.append(self._tags(words, predicted))
        return seqeval_scores(
            y_true,
            y_pred,
            tagging_scheme=self.tagging_scheme,
            average=self.average,
            return_metrics_by_label=self.return_metrics_by_label,
            labels=sorted(labels),
            key_style=self.key_style,
            strict=self.strict,
        )

    def _label(self, entity: Entity) -> str:
        return self.labels_remapping.get(entity.label, entity.label)

    def _tags(self, words: Sequence[tuple[int, int]], entities: Sequence[Entity]) -> list[str]:
        ranges = []
        locate = UnitLocator(words)  # once per text: each span is then placed by bisection
        for entity in entities:
            for span in entity.spans:
                cover = locate.covering(span.start, span.end)
                if cover is not None:
                    ranges.append((cover[0], cover[1], self._label(entity)))
        kept, _ = resolve_overlaps(ranges)
        return encode_tags(len(words), kept, self.tagging_scheme)


class ExactSpanEvaluator:
    """Entity-level evaluation: a prediction is right only with the exact label and spans.

    Scores are micro-averaged over all documents; ``support`` counts reference entities.
    """

    def __init__(self, return_metrics_by_label: bool = True) -> None:
        self.return_metrics_by_label = return_metrics_by_label

    def compute(
        self, reference_docs: Sequence[TextDocument], predicted_entities: Sequence[Sequence[Entity]]
    ) -> dict[str, float]:
        """Scores of ``predicted_entities[i]`` against the entities of ``reference_docs[i]``."""
        _check_inputs(reference_docs, predicted_entities)
        true_pos: Counter[str] = Counter()
        nb_gold: Counter[str] = Counter()
        nb_pred: Counter[str] = Counter()
        for doc, predicted in zip(reference_docs, predicted_entities, strict=True):
            gold_keys = Counter(_key(e) for e in doc.anns.entities)
            pred_keys = Counter(_key(e) for e in predicted)
            for key, count in gold_keys.items():
                nb_gold[key[0]] += count
                true_pos[key[0]] += min(count, pred_keys.get(key, 0))
            for key, count in pred_keys.items():
                nb_pred[key[0]] += count
        metrics = _prf(sum(true_pos.values()), sum(nb_pred.values()), sum(nb_gold.values()))
        metrics["support"] = float(sum(nb_gold.values()))
        if self.return_metrics_by_label:
            for label in sorted(set(nb_gold) | set(nb_pred)):
                for name, value in _prf(true_pos[label], nb_pred[label], nb_gold[label]).items():
                    metrics[f"{label}_{name}"] = value
                metrics[f"{label}_support"] = float(nb_gold[label])
        return metrics


def _key(entity: Entity) -> tuple[str, tuple[tuple[int, int], ...]]:
    return entity.label, tuple(sorted((s.start, s.end) for s in entity.spans))


def _prf(true_pos: int, nb_pred: int, nb_gold: int) -> dict[str, float]:
    precision = true_pos / nb_pred if nb_pred else 0.0
    recall = true_pos / nb_gold if nb_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
