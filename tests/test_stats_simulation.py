"""medkit_exp.stats is right by simulation: interval coverage, the tests' level and power, and
why documents (not entities) are resampled. Seeded, so every figure is the same on every run.

The synthetic population is shaped like NCBI-disease's test split: 100 documents with 9.5 gold
entities on average, overdispersed (negative binomial, sd about 7.4), and documents of
different difficulty (a document's recall drawn from Beta(6.8, 1.2), mean 0.85); false
positives arrive in proportion to a document's entities and difficulty (0.15 per gold entity on
average). Its true F1 (the limit of micro F1 over ever more documents) is therefore
2 x 0.85 / (2 x 0.85 + 0.15 + 0.15) = 0.85.

The paired tests run 1,000 resamples per simulated pair here (10,000 by default) to keep the
file fast; their level does not depend on that number.
"""

from __future__ import annotations

import numpy as np
import pytest

from medkit_exp.stats import (
    DocumentCounts,
    approximate_randomization,
    bootstrap_ci,
    item_value_counts,
    paired_bootstrap,
)

DOCUMENTS, MEAN_ENTITIES, DISPERSION = 100, 9.5, 2.0
RECALL, CONCENTRATION, FP_RATE = 0.85, 8.0, 0.15
TRUE_F1 = 2 * RECALL / (2 * RECALL + FP_RATE + (1 - RECALL))
RESAMPLES = 1000


def as_counts(rows: np.ndarray) -> DocumentCounts:
    """One-label counts of ``rows`` ``(documents, 3)`` (tp, fp, fn)."""
    return DocumentCounts(tuple(f"d{i}" for i in range(len(rows))), ("Disease",), rows[:, None, :])


def documents(rng: np.random.Generator, n: int, homogeneous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Gold entities and recall of ``n`` documents (all alike if ``homogeneous``)."""
    if homogeneous:
        return np.full(n, round(MEAN_ENTITIES)), np.full(n, RECALL)
    gold = rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + MEAN_ENTITIES), n)
    return gold, rng.beta(RECALL * CONCENTRATION, (1 - RECALL) * CONCENTRATION, n)


def draw_test_set(rng: np.random.Generator, homogeneous: bool = False) -> DocumentCounts:
    """One system's counts on a test set of `DOCUMENTS` documents drawn from the population."""
    gold, recall = documents(rng, DOCUMENTS, homogeneous)
    tp = rng.binomial(gold, recall)
    fp = rng.poisson(FP_RATE * gold * (1 - recall) / (1 - RECALL))
    return as_counts(np.stack([tp, fp, gold - tp], axis=-1))


def system_pair(rng: np.random.Generator, gain: float = 0.0, delta: float = 0.03, eta: float = 0.04
                ) -> tuple[DocumentCounts, DocumentCounts]:
    """Two systems on the same documents that agree on most entities, as two runs of one model do.

    Per gold entity: both find it, only A, only B (``delta -/+ gain`` each) or neither; per
    document, false positives of both plus some of each alone (``eta -/+ gain`` per gold
    entity, scaled by the document's difficulty). ``gain`` 0: the same error distribution;
    ``gain`` 0.01: B's recall is 2 points higher and its false positives 2 points fewer, so
    B's F1 is 0.86 against A's 0.84.
    """
    gold, recall = documents(rng, DOCUMENTS)
    recall = np.clip(recall, delta + gain, 1 - delta - gain)
    cells = np.stack([recall - delta, np.full(DOCUMENTS, delta - gain), np.full(DOCUMENTS, delta + gain),
                      1 - recall - delta], axis=-1)
    both, only_a, only_b, _ = rng.multinomial(gold, cells).T
    scale = gold * (1 - recall) / (1 - RECALL)
    shared = rng.poisson(scale * (FP_RATE - eta))
    fp_a, fp_b = shared + rng.poisson(scale * (eta + gain)), shared + rng.poisson(scale * (eta - gain))
    tp_a, tp_b = both + only_a, both + only_b
    return (as_counts(np.stack([tp_a, fp_a, gold - tp_a], axis=-1)),
            as_counts(np.stack([tp_b, fp_b, gold - tp_b], axis=-1)))


def entity_level(counts: DocumentCounts) -> DocumentCounts:
    """The same counts as if every gold and predicted entity were drawn on its own: one row per
    tp, fp and fn (what an entity-level bootstrap resamples)."""
    totals = counts.total()[0].astype(int)
    return as_counts(np.repeat(np.eye(3), totals, axis=0))


def test_the_95_percent_interval_of_f1_covers_the_true_f1_in_92_to_98_percent_of_test_sets():
    rng = np.random.default_rng(2024)
    intervals = [bootstrap_ci(draw_test_set(rng), "f1", resamples=RESAMPLES, seed=i) for i in range(300)]
    covered = [interval.low <= TRUE_F1 <= interval.high for interval in intervals]
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
    assert 0.04 < np.mean([i.high - i.low for i in intervals]) < 0.09  # about +-0.03, as NCBI's seeds spread


@pytest.mark.parametrize("test", [paired_bootstrap, approximate_randomization])
def test_under_the_null_the_paired_tests_reject_in_2_to_8_percent_of_pairs(test):
    rng = np.random.default_rng(7)
    p_values = [test(*system_pair(rng), resamples=RESAMPLES, seed=i).p_value for i in range(500)]
    assert 0.02 <= np.mean(np.array(p_values) <= 0.05) <= 0.08, np.mean(np.array(p_values) <= 0.05)


@pytest.mark.parametrize("test", [paired_bootstrap, approximate_randomization])
def test_a_2_point_f1_difference_on_100_documents_is_found_in_most_pairs(test):
    rng = np.random.default_rng(11)
    results = [test(*system_pair(rng, gain=0.01)[::-1], resamples=RESAMPLES, seed=i) for i in range(200)]
    assert np.mean([r.difference for r in results]) == pytest.approx(0.02, abs=0.003)
    assert np.mean([r.p_value <= 0.05 for r in results]) > 0.8


def test_documents_resampled_give_wider_intervals_than_entities_when_documents_differ():
    rng = np.random.default_rng(5)

    def width_ratio(homogeneous: bool) -> float:
        ratios = []
        for i in range(10):
            counts = draw_test_set(rng, homogeneous)
            by_document = bootstrap_ci(counts, resamples=RESAMPLES, seed=i)
            by_entity = bootstrap_ci(entity_level(counts), resamples=RESAMPLES, seed=i)
            ratios.append((by_document.high - by_document.low) / (by_entity.high - by_entity.low))
        return float(np.mean(ratios))

    # Entity counts and difficulty varying by document: entities of a document are correlated,
    # and resampling them one by one understates the uncertainty.
    assert width_ratio(homogeneous=False) > 1.4
    # Alike documents: both resamplings agree, so the gap above is the documents' doing.
    assert 0.85 < width_ratio(homogeneous=True) < 1.15


def test_the_95_percent_interval_of_a_per_item_mean_covers_the_true_mean_in_92_to_98_percent_of_test_sets():
    # Per-item values (a regressor's absolute errors, say) of 100 documents holding 1 to 8 items
    # each, with a document effect: items of one document are alike, so documents are the unit.
    rng = np.random.default_rng(31)
    true_mean = 1.0  # every document's mean error is drawn around 1, its items around that

    def test_set() -> DocumentCounts:
        sizes = rng.integers(1, 9, DOCUMENTS)
        effects = rng.gamma(4.0, true_mean / 4.0, DOCUMENTS)
        records = [{"document_id": f"d{d}", "values": {"error": float(value)}}
                   for d in range(DOCUMENTS) for value in rng.exponential(effects[d], sizes[d])]
        return item_value_counts(records)

    intervals = [bootstrap_ci(test_set(), "error", resamples=RESAMPLES, seed=i) for i in range(300)]
    covered = [interval.low <= true_mean <= interval.high for interval in intervals]
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
