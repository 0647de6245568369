"""Classification scores: the metrics computer of the Trainer, an evaluator of predictions, a baseline.

Every function returns the same keys: ``accuracy``, ``macro_precision``, ``macro_recall``,
``macro_f1``, ``f1`` (= ``macro_f1``, so that ``trainer.checkpoint_metric=f1`` works as for
NER) and, per class, ``{label}_precision``, ``{label}_recall``, ``{label}_f1``,
``{label}_support`` (number of gold items of that class).

Macro averages are over the classes that occur in the gold or the predicted labels (a class
absent from both is not scored, as in scikit-learn); a class with no prediction (or no gold
item) has precision (or recall) 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.text.classification.items import SegmentItem


def classification_scores(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str] | None = None,
    return_metrics_by_label: bool = True,
) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1 and per-class scores of single-label predictions.

    ``labels`` fixes which per-class keys are returned (besides any other class seen); by
    default the classes seen in ``y_true`` or ``y_pred``. Without items, everything is 0.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}: give one prediction per item")
    seen = sorted(set(y_true) | set(y_pred))
    reported = list(labels or []) + [label for label in seen if label not in set(labels or [])]
    true_counts, pred_counts = Counter(y_true), Counter(y_pred)
    hits = Counter(t for t, p in zip(y_true, y_pred, strict=True) if t == p)
    per_label = {}
    for label in reported:
        precision = hits[label] / pred_counts[label] if pred_counts[label] else 0.0
        recall = hits[label] / true_counts[label] if true_counts[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = (precision, recall, f1, float(true_counts[label]))
    averaged = [per_label[label] for label in seen]
    n = len(averaged)
    metrics = {
        "accuracy": sum(hits.values()) / len(y_true) if y_true else 0.0,
        "macro_precision": sum(v[0] for v in averaged) / n if n else 0.0,
        "macro_recall": sum(v[1] for v in averaged) / n if n else 0.0,
        "macro_f1": sum(v[2] for v in averaged) / n if n else 0.0,
    }
    metrics["f1"] = metrics["macro_f1"]
    if return_metrics_by_label:
        for label, (precision, recall, f1, support) in per_label.items():
            metrics[f"{label}_precision"] = precision
            metrics[f"{label}_recall"] = recall
            metrics[f"{label}_f1"] = f1
            metrics[f"{label}_support"] = support
    return metrics


class ClassificationMetricsComputer:
    """`MetricsComputer` of the Trainer for `HFSegmentClassifierTrainable` (logits ``(batch, classes)``).

    Args:
        id_to_label: class of each class id (``component.id_to_label``).
        return_metrics_by_label: add the per-class scores.
    """

    @classmethod
    def for_component(cls, component: Any, by_label: bool = True) -> ClassificationMetricsComputer:
        """The metrics of a classifier's classes (``metrics=classification``): its ``id_to_label``."""
        return cls(component.id_to_label, return_metrics_by_label=by_label)

    def __init__(self, id_to_label: Mapping[int, str], return_metrics_by_label: bool = True) -> None:
        self.id_to_label = {int(k): str(v) for k, v in id_to_label.items()}
        self.return_metrics_by_label = return_metrics_by_label

    def prepare_batch(self, model_output: Any, input_batch: Any) -> dict[str, list[str]]:
        """Gold and predicted (arg-max) classes of a batch, as label strings."""
        predicted = model_output["logits"].argmax(dim=-1).tolist()
        gold = input_batch["labels"].tolist()
        return {
            "y_true": [self.id_to_label[i] for i in gold],
            "y_pred": [self.id_to_label[i] for i in predicted],
        }

    def compute(self, all_data: dict[str, list[Any]]) -> dict[str, float]:
        """The scores of every batch prepared in a phase."""
        return classification_scores(
            all_data.get("y_true", []),
            all_data.get("y_pred", []),
            labels=[self.id_to_label[i] for i in sorted(self.id_to_label)],
            return_metrics_by_label=self.return_metrics_by_label,
        )


class ClassificationEvaluator:
    """Scores predicted classes against the gold classes of reference items.

    Args:
        attr_label: attribute holding the gold class of items that carry no ``label``.
        labels: classes whose per-class keys are always returned.
        return_metrics_by_label: add the per-class scores.
    """

    def __init__(
        self,
        attr_label: str | None = None,
        labels: Sequence[str] | None = None,
        return_metrics_by_label: bool = True,
    ) -> None:
        self.attr_label = attr_label
        self.labels = list(labels) if labels else None
        self.return_metrics_by_label = return_metrics_by_label

    def compute(self, reference_items: Sequence[SegmentItem], predicted_labels: Sequence[Any]) -> dict[str, float]:
        """Scores of ``predicted_labels`` (class strings, or predictions with a ``label``), one per item."""
        if len(reference_items) != len(predicted_labels):
            raise ValueError(
                f"{len(reference_items)} reference items but {len(predicted_labels)} predictions: "
                "predict every item once"
            )
        return classification_scores(
            gold_labels(reference_items, self.attr_label),
            [p if isinstance(p, str) else str(p.label) for p in predicted_labels],
            labels=self.labels,
            return_metrics_by_label=self.return_metrics_by_label,
        )


def gold_labels(items: Sequence[SegmentItem], attr_label: str | None) -> list[str]:
    """The gold class of each item; raises on an item without one."""
    golds = []
    for item in items:
        gold = item.gold(attr_label)
        if gold is None:
            raise ValueError(
                f"{item.segment.label} {item.segment.text!r}{item.where} has no gold class (no label, no "
                f"{attr_label!r} attribute): score only items with a gold class"
            )
        golds.append(gold)
    return golds


def majority_scores(
    train_labels: Sequence[str], y_true: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, float]:
    """``majority_accuracy`` and ``majority_macro_f1``: scores of always predicting the most frequent train class."""
    if not train_labels:
        raise ValueError("the majority baseline needs the train labels: give at least one")
    counts = Counter(train_labels)
    majority = max(sorted(counts), key=lambda label: counts[label])  # ties: the first label in sorted order
    scores = classification_scores(y_true, [majority] * len(y_true), labels=labels, return_metrics_by_label=False)
    return {"majority_accuracy": scores["accuracy"], "majority_macro_f1": scores["macro_f1"]}
