"""Classification scores on hand-built predictions: metrics computer, evaluator, majority baseline."""

from __future__ import annotations

import pytest
import torch

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.text.classification import (
    ClassificationEvaluator,
    ClassificationMetricsComputer,
    classification_scores,
    items_from_entities,
    majority_scores,
)
from medkit_exp.training import BatchData

Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]


def test_scores_by_hand():
    scores = classification_scores(Y_TRUE, Y_PRED)
    # a: P=2/2 R=2/3 F=0.8; b: P=1/2 R=1/2 F=0.5; c: P=1/2 R=1/1 F=2/3
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["a_precision"] == 1.0 and scores["a_recall"] == pytest.approx(2 / 3)
    assert scores["a_f1"] == pytest.approx(0.8)
    assert scores["b_f1"] == pytest.approx(0.5) and scores["c_f1"] == pytest.approx(2 / 3)
    assert [scores[f"{k}_support"] for k in "abc"] == [3.0, 2.0, 1.0]
    assert scores["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert scores["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert scores["macro_f1"] == scores["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert all(isinstance(v, float) for v in scores.values())


def test_sklearn_agrees():
    metrics = pytest.importorskip("sklearn.metrics")
    scores = classification_scores(Y_TRUE, Y_PRED)
    assert scores["macro_f1"] == pytest.approx(metrics.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert scores["macro_precision"] == pytest.approx(metrics.precision_score(Y_TRUE, Y_PRED, average="macro"))


def test_unseen_labels_are_reported_but_not_averaged_and_empty_input_is_zero():
    scores = classification_scores(["a", "b"], ["a", "b"], labels=["a", "b", "z"])
    assert scores["macro_f1"] == 1.0 and scores["z_f1"] == 0.0 and scores["z_support"] == 0.0
    assert "a_f1" not in classification_scores(["a"], ["a"], return_metrics_by_label=False)
    assert classification_scores([], [])["accuracy"] == 0.0
    with pytest.raises(ValueError, match="one prediction per item"):
        classification_scores(["a"], [])


def test_metrics_computer_reads_logits_and_labels():
    computer = ClassificationMetricsComputer({0: "a", 1: "b", 2: "c"})
    ids = {"a": 0, "b": 1, "c": 2}
    logits = torch.nn.functional.one_hot(torch.tensor([ids[p] for p in Y_PRED]), 3).float()
    batch = BatchData(labels=torch.tensor([ids[t] for t in Y_TRUE]))
    prepared = computer.prepare_batch(BatchData(logits=logits), batch)
    assert prepared == {"y_true": Y_TRUE, "y_pred": Y_PRED}
    assert computer.compute(prepared) == classification_scores(Y_TRUE, Y_PRED, labels=["a", "b", "c"])
    assert "a_f1" not in ClassificationMetricsComputer({0: "a", 1: "b"}, return_metrics_by_label=False).compute(
        {"y_true": ["a"], "y_pred": ["b"]})


def test_evaluator_scores_items_against_predictions_and_majority_baseline():
    text = "a b c d e f"
    doc = TextDocument(text, id="d")
    for i, label in enumerate(Y_TRUE):
        doc.anns.add(Entity(label=label, spans=[Span(2 * i, 2 * i + 1)], text=text[2 * i]))
    items = items_from_entities([doc])
    scores = ClassificationEvaluator().compute(items, Y_PRED)
    assert scores == classification_scores(Y_TRUE, Y_PRED)
    with pytest.raises(ValueError, match="predict every item once"):
        ClassificationEvaluator().compute(items, Y_PRED[:2])

    baseline = majority_scores(["a", "b", "b"], Y_TRUE)  # always "b"
    assert baseline["majority_accuracy"] == pytest.approx(2 / 6)
    assert baseline["majority_macro_f1"] == pytest.approx((2 * (1 / 3) * 1 / (1 / 3 + 1)) / 3)  # b: P=1/3 R=1; a, c: 0
