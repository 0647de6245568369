"""SeqEvalMetricsComputer on hand-built logits; evaluators on hand-built documents."""

from __future__ import annotations

import pytest
import torch

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.text.metrics import ExactSpanEvaluator, SeqEvalEvaluator, SeqEvalMetricsComputer, word_spans
from medkit_exp.text.metrics.seqeval_metrics import seqeval_scores
from medkit_exp.training import BatchData, MetricsComputer

IOB2_TAGS = {0: "O", 1: "B-drug", 2: "I-drug", 3: "B-problem", 4: "I-problem"}
BILOU_TAGS = {0: "O", 1: "B-drug", 2: "I-drug", 3: "L-drug", 4: "U-drug"}


def logits_for(tag_ids: list[list[int]], nb_tags: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(tag_ids), nb_tags).float() * 3.0 - 1.0


def test_metrics_computer_on_hand_built_logits():
    computer = SeqEvalMetricsComputer(IOB2_TAGS)
    assert isinstance(computer, MetricsComputer)
    # row 0: [CLS] B-drug I-drug(sub-token, ignored) O B-problem [SEP] ; row 1: [CLS] B-problem I-problem [SEP] pad
    labels = torch.tensor([[-100, 1, -100, 0, 3, -100], [-100, 3, 4, -100, -100, -100]])
    predicted = [[0, 1, 0, 0, 0, 0], [0, 3, 4, 0, 0, 0]]  # misses the first problem; ignored positions don't count
    data = computer.prepare_batch(BatchData(logits=logits_for(predicted, 5)), BatchData(labels=labels))
    assert data == {
        "y_true": [["B-drug", "O", "B-problem"], ["B-problem", "I-problem"]],
        "y_pred": [["B-drug", "O", "O"], ["B-problem", "I-problem"]],
    }
    metrics = computer.compute(data)
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(0.8)
    assert metrics["accuracy"] == pytest.approx(4 / 5)
    assert metrics["drug_f1"] == 1.0 and metrics["drug_support"] == 1.0
    assert metrics["problem_recall"] == 0.5 and metrics["problem_precision"] == 1.0
    assert metrics["problem_support"] == 2.0
    assert all(isinstance(v, float) for v in metrics.values())


def test_metrics_computer_is_strict_for_bilou():
    computer = SeqEvalMetricsComputer(BILOU_TAGS, tagging_scheme="bilou", return_metrics_by_label=False)
    y_true = [["B-drug", "L-drug", "O", "U-drug"]]
    # B- without its L- is not an entity in strict mode; the U- one is right
    metrics = computer.compute({"y_true": y_true, "y_pred": [["B-drug", "I-drug", "O", "U-drug"]]})
    assert metrics["precision"] == 1.0 and metrics["recall"] == 0.5
    assert set(metrics) == {"precision", "recall", "f1", "accuracy"}


def test_metrics_computer_reads_a_component():
    component = type("C", (), {"id_to_label": BILOU_TAGS, "tagging_scheme": "bilou"})()
    computer = SeqEvalMetricsComputer(component)
    assert computer.tagging_scheme == "bilou" and computer.labels == ["drug"]


def test_every_known_label_is_reported_even_without_entities():
    computer = SeqEvalMetricsComputer(IOB2_TAGS)
    metrics = computer.compute({"y_true": [["O", "O"]], "y_pred": [["O", "O"]]})
    assert metrics == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0,
        "drug_precision": 0.0, "drug_recall": 0.0, "drug_f1": 0.0, "drug_support": 0.0,
        "problem_precision": 0.0, "problem_recall": 0.0, "problem_f1": 0.0, "problem_support": 0.0,
    }


def test_macro_average():
    y_true = [["B-a", "O", "B-b", "O", "B-b"]]
    y_pred = [["B-a", "O", "B-b", "O", "O"]]
    assert seqeval_scores(y_true, y_pred, average="macro")["recall"] == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="average"):
        seqeval_scores(y_true, y_pred, average="samples")


# ---------------------------------------------------------------------- evaluators
def doc_with(text: str, mentions: list[tuple[int, int, str]], doc_id: str = "d") -> TextDocument:
    doc = TextDocument(text, id=doc_id)
    for start, end, label in mentions:
        doc.anns.add(Entity(label=label, spans=[Span(start, end)], text=text[start:end]))
    return doc


def entity(text: str, start: int, end: int, label: str) -> Entity:
    return Entity(label=label, spans=[Span(start, end)], text=text[start:end])


TEXT = "Douleur thoracique sous aspirine, pas de fièvre."


def test_word_spans():
    assert [TEXT[s:e] for s, e in word_spans(TEXT)] == [
        "Douleur", "thoracique", "sous", "aspirine", ",", "pas", "de", "fièvre", ".",
    ]


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_seqeval_evaluator(scheme):
    gold = doc_with(TEXT, [(0, 18, "problem"), (24, 32, "drug"), (41, 47, "problem")])
    predicted = [
        entity(TEXT, 0, 7, "problem"),  # boundary error: only "Douleur"
        entity(TEXT, 24, 32, "drug"),
        entity(TEXT, 41, 47, "problem"),
    ]
    metrics = SeqEvalEvaluator(tagging_scheme=scheme).compute([gold], [predicted])
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["drug_f1"] == 1.0 and metrics["problem_f1"] == 0.5 and metrics["problem_support"] == 2.0
    perfect = SeqEvalEvaluator(tagging_scheme=scheme).compute([gold], [gold.anns.entities])
    assert perfect["f1"] == 1.0 and perfect["accuracy"] == 1.0


def test_seqeval_evaluator_widens_partial_words():
    gold = doc_with(TEXT, [(24, 32, "drug")])
    # a prediction covering part of the word counts as the word at token level
    metrics = SeqEvalEvaluator().compute([gold], [[entity(TEXT, 24, 28, "drug")]])
    assert metrics["f1"] == 1.0


def test_exact_span_evaluator():
    text2 = "Toux et fièvre."
    gold = [
        doc_with(TEXT, [(0, 18, "problem"), (24, 32, "drug"), (41, 47, "problem")], "a"),
        doc_with(text2, [(0, 4, "problem"), (8, 14, "problem")], "b"),
    ]
    predicted = [
        [entity(TEXT, 0, 7, "problem"), entity(TEXT, 24, 32, "drug"), entity(TEXT, 41, 47, "drug")],
        [entity(text2, 0, 4, "problem"), entity(text2, 8, 14, "problem")],
    ]
    metrics = ExactSpanEvaluator().compute(gold, predicted)
    assert metrics["precision"] == pytest.approx(3 / 5) and metrics["recall"] == pytest.approx(3 / 5)
    assert metrics["support"] == 5.0
    assert metrics["drug_precision"] == 0.5 and metrics["drug_recall"] == 1.0 and metrics["drug_support"] == 1.0
    assert metrics["problem_precision"] == pytest.approx(2 / 3) and metrics["problem_recall"] == 0.5
    assert metrics["problem_support"] == 4.0 and metrics["problem_f1"] == pytest.approx(4 / 7)


def test_evaluators_need_one_prediction_list_per_document():
    with pytest.raises(ValueError, match="one list of entities per document"):
        ExactSpanEvaluator().compute([doc_with(TEXT, [])], [])
    with pytest.raises(ValueError, match="one list of entities per document"):
        SeqEvalEvaluator().compute([], [[]])
