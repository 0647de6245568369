"""Paired significance tests of two systems scored on the same documents.

Both tests keep the pairing (each document is scored by both systems) and recompute the metric
from summed counts, so they apply to F1 as it is computed, not to a per-document average.

- `paired_bootstrap`: resample documents with replacement (the same draw for both systems);
  the difference's interval is the bootstrap interval of ``score(A) - score(B)``. Its p-value is
  the two-sided *shift* method (Berg-Kirkpatrick et al. 2012, after Efron and Tibshirani 1993,
  16.4): the bootstrap distribution of the difference, centred on zero, stands for the
  difference's distribution under the null, and
  ``p = (1 + #{b : |d*_b - d| >= |d|}) / (1 + B)`` with ``d`` the observed difference and
  ``d*_b`` that of resample ``b``. The ``+1`` counts the observed sample among the resamples
  (Davison and Hinkley 1997, 4.2), so p is never 0 and stays valid with a finite B.
- `approximate_randomization`: swap the two systems' outputs on a random subset of the
  documents (each document independently with probability 1/2) and recompute the difference
  (Noreen 1989; Riezler and Maxwell 2005); ``p`` is the two-sided share of swaps at least as
  extreme as the observed difference, from `scipy.stats.permutation_test`
  (``permutation_type="samples"``, all ``2^n`` swaps when that is no more than the resamples).
  Under the null the systems' outputs are exchangeable within a document, so this test holds
  its level exactly, whatever the metric.

A system compared with itself has difference 0 and p = 1 under both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from medkit_exp.stats.bootstrap import batch_size, bootstrap_intervals, check_sample, index_statistic, resampled_sums
from medkit_exp.stats.counts import DocumentCounts, align
from medkit_exp.stats.metrics import Metric

PAIRED_BOOTSTRAP = "paired bootstrap"
RANDOMIZATION = "approximate randomization"
TIES = 1e-12  # differences closer than this count as equal (float rounding of identical count sums)


@dataclass(frozen=True)
class PairedResult:
    """One paired test of system A against system B.

    Attributes:
        test: ``"paired bootstrap"`` or ``"approximate randomization"``.
        metric: the metric compared (``f1``...).
        score_a, score_b: each system's score on all documents.
        difference: ``score_a - score_b``.
        low, high: the difference's confidence interval (paired bootstrap only; None otherwise).
        confidence: the interval's level (None without an interval).
        p_value: two-sided p-value of "A and B score the same" (see the module's docstring).
        resamples: bootstrap resamples or random swaps drawn.
        documents: documents both systems were scored on.
    """

    test: str
    metric: str
    score_a: float
    score_b: float
    difference: float
    low: float | None
    high: float | None
    confidence: float | None
    p_value: float
    resamples: int
    documents: int

    def as_dict(self) -> dict[str, float | str | int | None]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Both paired tests of one pair of systems (same metric, resamples and seed)."""

    bootstrap: PairedResult
    randomization: PairedResult

    def as_dict(self) -> dict[str, dict[str, float | str | int | None]]:
        """``{"paired_bootstrap": {...}, "approximate_randomization": {...}}``."""
        return {"paired_bootstrap": self.bootstrap.as_dict(), "approximate_randomization": self.randomization.as_dict()}


def _difference(metric: Metric, n_labels: int) -> Metric:
    """``metric(A) - metric(B)`` of counts whose label axis holds A's labels, then B's."""
    def difference(sums: np.ndarray) -> np.ndarray:
        return metric(sums[..., :n_labels, :]) - metric(sums[..., n_labels:, :])
    return difference


def paired_bootstrap(a: DocumentCounts, b: DocumentCounts, metric: str = "f1", resamples: int = 10_000,
                     confidence: float = 0.95, method: str = "percentile", seed: int = 0) -> PairedResult:
    """Paired bootstrap of ``score(a) - score(b)`` over the documents: its interval and the
    shift-method p-value (see the module's docstring).

    Args:
        a, b: per-document counts of the two systems, on the same documents (``ValueError``
            naming how many document ids differ otherwise).
        metric: metric name (``f1``, ``precision``, ``Disease_f1``...).
        resamples: bootstrap resamples.
        confidence: level of the difference's interval.
        method: ``"percentile"`` or ``"BCa"`` for the interval (the p-value is the same).
        seed: seed of the resampling.
    """
    a, b = align(a, b)
    check_sample(len(a), resamples, confidence)
    function = a.metric(metric)
    score_a, score_b = float(function(a.total())), float(function(b.total()))
    observed = score_a - score_b
    statistic = index_statistic(np.concatenate([a.counts, b.counts], axis=1),
                                [_difference(function, len(a.labels))])
    low, high, _, distribution = bootstrap_intervals((np.arange(len(a)),), statistic, np.array([observed]),
                                                     resamples, confidence, method, seed)
    extreme = np.abs(distribution[0] - observed) >= abs(observed) - TIES
    p_value = (1 + int(extreme.sum())) / (1 + resamples)
    return PairedResult(PAIRED_BOOTSTRAP, metric, score_a, score_b, observed, float(low[0]), float(high[0]),
                        confidence, p_value, resamples, len(a))


def approximate_randomization(a: DocumentCounts, b: DocumentCounts, metric: str = "f1", resamples: int = 10_000,
                              seed: int = 0) -> PairedResult:
    """Approximate randomization (paired permutation) test of ``score(a) - score(b)``, swapping the
    two systems' counts within documents, by `scipy.stats.permutation_test` (see the module's
    docstring). Arguments as `paired_bootstrap`'s; the result has no interval."""
    a, b = align(a, b)
    check_sample(len(a), resamples, 0.5)
    function = a.metric(metric)
    score_a, score_b = float(function(a.total())), float(function(b.total()))
    stacked = np.concatenate([a.counts, b.counts], axis=0)  # rows 0..n-1: A's documents, n..2n-1: B's
    n = len(a)
    result = stats.permutation_test((np.arange(n), np.arange(n, 2 * n)), _swap_statistic(stacked, function),
                                    permutation_type="samples", vectorized=True, n_resamples=resamples,
                                    batch=batch_size(2 * n, resamples), alternative="two-sided",
                                    rng=np.random.default_rng(seed))
    return PairedResult(RANDOMIZATION, metric, score_a, score_b, score_a - score_b, None, None, None,
                        float(result.pvalue), resamples, n)


def _swap_statistic(stacked: np.ndarray, metric: Metric) -> Callable[..., np.ndarray]:
    """Statistic of row indices into ``stacked``: the metric of the rows given as A minus that of B's."""
    def statistic(rows_a: np.ndarray, rows_b: np.ndarray, axis: int = -1) -> np.ndarray:
        sums_a = resampled_sums(stacked, np.moveaxis(np.asarray(rows_a), axis, -1))
        sums_b = resampled_sums(stacked, np.moveaxis(np.asarray(rows_b), axis, -1))
        return metric(sums_a) - metric(sums_b)
    return statistic


def compare(a: DocumentCounts, b: DocumentCounts, metric: str = "f1", resamples: int = 10_000,
            confidence: float = 0.95, method: str = "percentile", seed: int = 0) -> Comparison:
    """Both paired tests of ``a`` against ``b`` (see `paired_bootstrap`)."""
    return Comparison(paired_bootstrap(a, b, metric, resamples, confidence, method, seed),
                      approximate_randomization(a, b, metric, resamples, seed))
