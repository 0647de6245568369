"""medkit_exp.stats on cases computed by hand, and against the scorers whose figures the runs log."""

from __future__ import annotations

import numpy as np
import pytest

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.stats import (
    DocumentCounts,
    approximate_randomization,
    average_over_seeds,
    bootstrap_ci,
    bootstrap_cis,
    classification_counts,
    compare_seeds,
    holm,
    item_value_counts,
    ner_counts,
    paired_bootstrap,
)
from medkit_exp.text.classification.metrics import classification_scores
from medkit_exp.text.metrics import ExactSpanEvaluator

RECORDS = [
    # d1: one exact match, one boundary error (a fp and a fn); d2: C right, a spurious D.
    {"document_id": "d1", "gold": [["D", 0, 5], ["D", 10, 15]], "predicted": [["D", 0, 5], ["D", 11, 15]]},
    {"document_id": "d2", "gold": [["C", 0, 3]], "predicted": [["C", 0, 3], ["D", 5, 8]], "split": "test"},
]


def counts_of(rows: list[tuple[int, int, int]], prefix: str = "d") -> DocumentCounts:
    """One-label counts, one ``(tp, fp, fn)`` per document."""
    array = np.asarray(rows, dtype=float)[:, None, :]
    return DocumentCounts(tuple(f"{prefix}{i}" for i in range(len(rows))), ("Disease",), array)


def test_ner_counts_and_scores_by_hand():
    counts = ner_counts(RECORDS)
    assert counts.document_ids == ("d1", "d2") and counts.labels == ("C", "D")
    assert counts.counts.tolist() == [[[0, 0, 0], [1, 1, 1]], [[1, 0, 0], [0, 1, 0]]]
    # tp 2, fp 2, fn 1: P = 1/2, R = 2/3, F1 = 2PR/(P+R) = 4/7
    assert counts.score("precision") == pytest.approx(1 / 2) and counts.micro_precision() == pytest.approx(1 / 2)
    assert counts.score("recall") == pytest.approx(2 / 3) and counts.micro_recall() == pytest.approx(2 / 3)
    assert counts.score("f1") == pytest.approx(4 / 7) and counts.micro_f1() == pytest.approx(4 / 7)
    # D: tp 1, fp 2, fn 1 -> P 1/3, R 1/2, F1 2/5; C perfect
    assert counts.per_label_f1() == pytest.approx({"C": 1.0, "D": 0.4})
    assert counts.score("D_precision") == pytest.approx(1 / 3) and counts.score("D_recall") == pytest.approx(1 / 2)
    assert counts.score("macro_f1") == pytest.approx(0.7)


def test_ner_counts_match_entities_as_multisets_and_merge_records_of_a_document():
    counts = ner_counts([
        {"document_id": "a", "gold": [["X", 0, 2], ["X", 0, 2]], "predicted": [["X", 0, 2]]},
        {"document_id": "a", "gold": [], "predicted": [["X", 0, 2], ["Y", 4, 6]]},
        {"document_id": "b", "gold": [["X", 1, 2, 5, 6]], "predicted": [["X", 1, 2]]},  # a 2-span entity
    ], labels=["Y"])
    assert counts.labels == ("Y", "X")
    assert counts.counts.tolist() == [[[0, 1, 0], [1, 1, 1]], [[0, 0, 0], [0, 1, 1]]]


def test_ner_scores_are_those_of_the_exact_span_evaluator():
    rng = np.random.default_rng(0)
    text = "x" * 60
    records, docs, predictions = [], [], []
    for i in range(12):
        def draw(n: int) -> list[list]:
            starts = rng.integers(0, 50, n)
            return [[str(rng.choice(["Disease", "Modifier", "Class"])), int(s), int(s + rng.integers(1, 4))]
                    for s in starts]
        gold, predicted = draw(int(rng.integers(0, 8))), draw(int(rng.integers(0, 8)))
        predicted += gold[: len(gold) // 2]  # about half of the gold found exactly
        records.append({"document_id": f"doc{i}", "gold": gold, "predicted": predicted})
        doc = TextDocument(text, id=f"doc{i}")
        for label, start, end in gold:
            doc.anns.add(Entity(label=label, spans=[Span(start, end)], text=text[start:end]))
        docs.append(doc)
        predictions.append([Entity(label=label, spans=[Span(s, e)], text=text[s:e]) for label, s, e in predicted])
    expected = ExactSpanEvaluator().compute(docs, predictions)
    scores = ner_counts(records).scores()
    logged = {k: v for k, v in expected.items() if not k.endswith("support")}
    assert scores["f1"] > 0.2 and set(logged) <= set(scores)
    assert {k: scores[k] for k in logged} == pytest.approx(logged)


def test_classification_scores_are_those_the_runs_log():
    rng = np.random.default_rng(1)
    classes = ["absent", "present", "possible"]
    gold = [str(g) for g in rng.choice(classes, 40, p=[0.5, 0.4, 0.1])]
    predicted = [g if rng.random() < 0.7 else str(rng.choice(classes)) for g in gold]
    # several items per document: the document is the row (the unit resampled)
    records = [{"document_id": f"doc{i // 3}", "gold": g, "predicted": p}
               for i, (g, p) in enumerate(zip(gold, predicted, strict=True))]
    counts = classification_counts(records)
    assert len(counts) == 14 and counts.kind == "classification"
    expected = classification_scores(gold, predicted)
    logged = {k: v for k, v in expected.items() if not k.endswith("support")}
    assert counts.scores().keys() >= logged.keys()
    assert {k: counts.score(k) for k in logged} == pytest.approx(logged)
    assert counts.accuracy() == pytest.approx(expected["accuracy"])
    assert counts.macro_f1() == pytest.approx(expected["f1"]) and counts.score("f1") == counts.score("macro_f1")


def test_unknown_metrics_and_bad_records_are_refused_in_one_line():
    counts = ner_counts(RECORDS)
    with pytest.raises(ValueError, match=r"unknown metric 'accuracy' for ner scores: use one of f1, precision"):
        counts.score("accuracy")  # token accuracy is not an entity-count score
    with pytest.raises(ValueError, match="unknown metric 'E_f1'"):
        bootstrap_ci(counts, "E_f1")
    with pytest.raises(ValueError, match="record 1 has no 'predicted'"):
        ner_counts([RECORDS[0], {"document_id": "x", "gold": []}])
    with pytest.raises(ValueError, match=r"gold entity 'D' is not \[label, start, end\]"):
        ner_counts([{"document_id": "x", "gold": ["D"], "predicted": []}])
    with pytest.raises(ValueError, match="at least 2 documents"):
        bootstrap_ci(counts_of([(1, 0, 0)]))


def test_a_system_against_itself_differs_by_zero_with_p_one():
    counts = ner_counts(RECORDS)
    for result in (paired_bootstrap(counts, counts, resamples=500), approximate_randomization(counts, counts)):
        assert result.difference == 0.0 and result.p_value == 1.0
        assert result.score_a == result.score_b == pytest.approx(4 / 7)
    bigger = counts_of([(i % 7, i % 3, i % 5) for i in range(40)])
    for result in (paired_bootstrap(bigger, bigger, resamples=2000, method="BCa"),
                   approximate_randomization(bigger, bigger, resamples=2000)):
        assert result.difference == 0.0 and result.p_value == 1.0
    assert paired_bootstrap(bigger, bigger, resamples=200, method="BCa").low == 0.0


def test_systems_on_different_documents_are_refused_naming_how_many_differ():
    a = counts_of([(1, 0, 0)] * 5)
    b = DocumentCounts(("d0", "d1", "d2", "x1", "x2", "x3"), ("Disease",), np.ones((6, 1, 3)))
    message = r"different documents: 5 document ids differ \(2 only in system 1, 3 only in system 2\)"
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match=message):
        approximate_randomization(a, b)
    with pytest.raises(ValueError, match="different kinds"):
        paired_bootstrap(a, DocumentCounts(a.document_ids, a.labels, a.counts, "classification"))


def test_documents_are_paired_by_id_not_by_position():
    a = counts_of([(5, 0, 0), (0, 0, 5), (3, 1, 1), (2, 2, 2)])
    b = a.in_order(["d3", "d1", "d0", "d2"])
    result = paired_bootstrap(a, b, resamples=300)
    assert result.difference == 0.0 and result.p_value == 1.0 and result.low == result.high == 0.0


def test_approximate_randomization_enumerates_the_swaps_of_few_documents():
    # A finds the one entity of each of 3 documents, B none: of the 2^3 swaps only the observed one
    # reaches a recall difference of 1 (and only the full swap -1): two-sided p = 2 * 1/8.
    a, b = counts_of([(1, 0, 0)] * 3), counts_of([(0, 0, 1)] * 3)
    result = approximate_randomization(a, b, metric="recall", resamples=1000)
    assert result.difference == 1.0 and result.p_value == pytest.approx(0.25)


def test_paired_bootstrap_p_value_of_a_clear_difference_is_its_floor():
    a = counts_of([(9, 1, 1)] * 30)
    b = counts_of([(4, 5, 6)] * 30)
    result = paired_bootstrap(a, b, resamples=999)
    # F1 = 2tp / (2tp + fp + fn): 18/20 against 8/19
    assert result.difference == pytest.approx(0.9 - 8 / 19) and result.p_value == pytest.approx(1 / 1000)
    assert result.low == result.high == pytest.approx(0.9 - 8 / 19)  # identical documents: every resample agrees


def test_bootstrap_intervals_are_seeded_and_shared_between_metrics():
    rng = np.random.default_rng(3)
    counts = counts_of([tuple(row) for row in rng.integers(0, 8, (60, 3))])
    first, again = bootstrap_ci(counts, "f1", seed=1), bootstrap_ci(counts, "f1", seed=1)
    assert first == again and first != bootstrap_ci(counts, "f1", seed=2)
    assert first.low < first.point < first.high and first.resamples == 1000 and first.method == "percentile"
    together = bootstrap_cis(counts, ["f1", "precision", "Disease_recall"], seed=1)
    assert together["f1"] == first
    assert together["precision"] == bootstrap_ci(counts, "precision", seed=1)
    bca = bootstrap_ci(counts, "f1", method="bca", seed=1)
    assert bca.method == "BCa" and bca.low < bca.point < bca.high and (bca.low, bca.high) != (first.low, first.high)
    with pytest.raises(ValueError, match="use percentile or BCa"):
        bootstrap_ci(counts, method="basic")


def test_a_perfect_system_has_a_point_interval_even_with_bca():
    perfect = counts_of([(3, 0, 0), (1, 0, 0), (7, 0, 0)])
    for method in ("percentile", "BCa"):
        interval = bootstrap_ci(perfect, "f1", method=method, resamples=200)
        assert (interval.point, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> made non-decreasing: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        holm([0.2, 1.5])


def test_seed_averaged_counts_score_as_all_seeds_pooled():
    seed1 = counts_of([(4, 1, 0), (2, 0, 2)])
    seed2 = counts_of([(2, 3, 2), (4, 0, 0)]).in_order(["d1", "d0"])
    averaged = average_over_seeds([seed1, seed2])
    assert averaged.counts[:, 0].tolist() == [[3, 2, 1], [3, 0, 1]]
    # all seeds' predictions pooled: tp 12, fp 4, fn 4 -> F1 = 24 / 32
    assert averaged.score("f1") == pytest.approx(0.75)


def test_compare_seeds_tests_every_pair_and_the_averaged_documents():
    rng = np.random.default_rng(4)
    runs = [counts_of([tuple(row) for row in rng.integers(0, 6, (30, 3))]) for _ in range(3)]
    same = compare_seeds(runs[:2], runs[:2], resamples=300)
    assert len(same.pairs) == 4 and same.scores_a == same.scores_b
    assert same.pooled.bootstrap.difference == 0.0 and same.pooled.randomization.p_value == 1.0
    assert [pair.bootstrap.difference == 0.0 for pair in same.pairs] == [True, False, False, True]
    better = [counts_of([(r[0] + 3, r[1], r[2]) for r in run.counts[:, 0]]) for run in runs[:2]]
    result = compare_seeds(better, runs, resamples=300)
    assert len(result.pairs) == 6 and result.significant_bootstrap == result.significant_randomization == 6
    assert result.pooled.bootstrap.p_value < 0.01 and result.as_dict()["pooled"]["paired_bootstrap"]["difference"] > 0


def test_per_item_values_score_as_their_mean_over_items_resampled_by_document():
    records = [{"document_id": "a", "values": {"err": 1.0, "sq": 1.0}}, {"document_id": "a", "values": {"err": -3.0}},
               {"document_id": "b", "values": {"err": 5.0, "sq": 25.0}, "split": "test"}]
    counts = item_value_counts(records)
    assert counts.kind == "mean" and counts.labels == ("err", "sq") and counts.document_ids == ("a", "b")
    # per document: the sum of its items' values and their number (a negative value is a value)
    assert counts.counts[:, :, :2].tolist() == [[[-2.0, 2.0], [1.0, 1.0]], [[5.0, 1.0], [25.0, 1.0]]]
    assert counts.scores() == {"err": pytest.approx(1.0), "sq": pytest.approx(13.0)}  # items: (1-3+5)/3, (1+25)/2
    assert counts.metric_names() == ["err", "sq"] and counts.default_metric() == "err"
    with pytest.raises(ValueError, match="unknown metric 'f1': the items' values are err, sq"):
        counts.score("f1")
    with pytest.raises(ValueError, match="value 'err' is 'x', not a finite number"):
        item_value_counts([{"document_id": "a", "values": {"err": "x"}}])
    # seeds averaged: the mean of all seeds' items; the tests and intervals run unchanged
    other = item_value_counts([{"document_id": "b", "values": {"err": 1.0}},
                               {"document_id": "a", "values": {"err": 0.0}}])
    assert average_over_seeds([counts, other]).score("err") == pytest.approx((1 - 3 + 5 + 1 + 0) / 5)
    itself = paired_bootstrap(counts, counts, "err", resamples=200)
    assert itself.difference == 0 and itself.p_value == 1
    interval = bootstrap_ci(counts, "err", resamples=500)
    assert interval.low <= interval.point <= interval.high and interval.point == pytest.approx(1.0)
