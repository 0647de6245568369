"""Scores computed from summed counts, vectorized over any leading axes.

A count array has shape ``(..., labels, 3)``; its last axis holds ``tp``, ``fp``, ``fn``. Every
metric maps it to an array of shape ``(...)``, so one call scores thousands of bootstrap
resamples at once. The names are those the runs log:

- NER (`medkit_exp.text.metrics.ExactSpanEvaluator`): ``f1``, ``precision``, ``recall``
  (micro-averaged over labels) and per label ``{label}_f1``, ``{label}_precision``,
  ``{label}_recall``.
- Classification (`medkit_exp.text.classification.metrics.classification_scores`):
  ``accuracy``, ``macro_f1``, ``macro_precision``, ``macro_recall``, ``f1`` (= ``macro_f1``)
  and per class ``{label}_f1``, ``{label}_precision``, ``{label}_recall``.

- Per-item means (kind ``"mean"``, `medkit_exp.stats.item_value_counts`): the names of the
  values the items carry (``mae``...); the count array then holds, per value, the sum of the
  items' values and the number of items (its third slot is unused), and the metric is their
  ratio: the mean over the items.

NER also accepts ``macro_f1``, ``macro_precision``, ``macro_recall`` (seqeval's macro
average). A macro average is over the labels that occur in the counts scored (``tp + fp +
fn > 0``), as both scorers do, so a resample that lacks a label averages over the others.
A ratio with a zero denominator is 0, as in the scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TP, FP, FN = 0, 1, 2
SUM, ITEMS = 0, 1  # the slots of a per-item mean's counts
MEAN = "mean"
KINDS = ("ner", "classification", MEAN)
SCORES = ("f1", "precision", "recall")

Metric = Callable[[np.ndarray], np.ndarray]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, score: str) -> np.ndarray:
    if score == "precision":
        return _ratio(tp, tp + fp)
    if score == "recall":
        return _ratio(tp, tp + fn)
    return _ratio(2 * tp, 2 * tp + fp + fn)  # = 2PR / (P + R), and 0 when tp = 0


def micro(score: str) -> Metric:
    """Micro-averaged ``score`` (``f1``, ``precision`` or ``recall``): of the counts summed over labels."""
    def metric(counts: np.ndarray) -> np.ndarray:
        total = counts.sum(axis=-2)
        return _prf(total[..., TP], total[..., FP], total[..., FN], score)
    return metric


def macro(score: str) -> Metric:
    """Macro-averaged ``score``: the mean of the per-label scores over the labels present."""
    def metric(counts: np.ndarray) -> np.ndarray:
        per_label = _prf(counts[..., TP], counts[..., FP], counts[..., FN], score)
        present = counts.sum(axis=-1) > 0
        return _ratio((per_label * present).sum(axis=-1), present.sum(axis=-1).astype(float))
    return metric


def of_label(index: int, score: str) -> Metric:
    """``score`` of the label at ``index`` alone."""
    def metric(counts: np.ndarray) -> np.ndarray:
        return _prf(counts[..., index, TP], counts[..., index, FP], counts[..., index, FN], score)
    return metric


def accuracy(counts: np.ndarray) -> np.ndarray:
    """Share of items whose predicted class is the gold one (single-label classification).

    Each item adds one ``tp`` (right) or one ``fn`` to its gold class, so this is
    ``sum(tp) / sum(tp + fn)``.
    """
    total = counts.sum(axis=-2)
    return _ratio(total[..., TP], total[..., TP] + total[..., FN])


def mean_of(index: int) -> Metric:
    """The mean over the items of the value at ``index`` (kind ``"mean"``): its summed values
    over its item count (0 without items)."""
    def metric(counts: np.ndarray) -> np.ndarray:
        return _ratio(counts[..., index, SUM], counts[..., index, ITEMS])
    return metric


def headline_names(kind: str) -> tuple[str, ...]:
    """The metrics scored without naming a label: ``f1``, ``precision``, ``recall`` (NER) or
    ``accuracy``, ``f1``, ``macro_*`` (classification); none for per-item means (each value is
    named)."""
    check_kind(kind)
    if kind == MEAN:
        return ()
    if kind == "ner":
        return ("f1", "precision", "recall", "macro_f1", "macro_precision", "macro_recall")
    return ("accuracy", "f1", "macro_f1", "macro_precision", "macro_recall")


def metric_names(kind: str, labels: Sequence[str]) -> list[str]:
    """Every metric name accepted for counts of ``kind`` over ``labels`` (for per-item means, the labels)."""
    if kind == MEAN:
        return list(labels)
    return [*headline_names(kind), *(f"{label}_{score}" for label in labels for score in SCORES)]


def resolve(name: str, kind: str, labels: Sequence[str]) -> Metric:
    """The metric called ``name`` for counts of ``kind`` (``"ner"`` or ``"classification"``)
    over ``labels``; ``ValueError`` listing the accepted names for any other."""
    check_kind(kind)
    if kind == MEAN:
        if name in labels:
            return mean_of(list(labels).index(name))
        raise ValueError(f"unknown metric {name!r}: the items' values are {', '.join(labels) or 'none'}")
    if name in headline_names(kind):
        if name == "accuracy":
            return accuracy
        if name.startswith("macro_"):
            return macro(name.removeprefix("macro_"))
        return micro(name) if kind == "ner" else macro(name)
    for score in SCORES:
        label = name.removesuffix(f"_{score}")
        if label != name and label in labels:
            return of_label(list(labels).index(label), score)
    accepted = metric_names(kind, labels)
    shown = ", ".join(accepted[:12]) + (f" (and {len(accepted) - 12} more per label)" if len(accepted) > 12 else "")
    raise ValueError(f"unknown metric {name!r} for {kind} scores: use one of {shown}")


def default_metric(kind: str, labels: Sequence[str]) -> str:
    """The metric compared when none is named: ``f1`` (NER), ``accuracy`` (classification), the
    first value of per-item means."""
    check_kind(kind)
    if kind == MEAN:
        if not labels:
            raise ValueError("the items carry no value to compare")
        return labels[0]
    return "f1" if kind == "ner" else "accuracy"


def check_kind(kind: str) -> None:
    """``ValueError`` unless ``kind`` is ``"ner"``, ``"classification"`` or ``"mean"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of scores {kind!r}: use one of {', '.join(KINDS)}")
