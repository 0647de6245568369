"""Comparisons of two configurations trained with several seeds each.

One run per side tells the difference between two *runs*; with seeds, the question is whether
the configurations differ beyond seed noise. The pooling reported here, usual in NLP (Dror et
al. 2018, Reimers and Gurevych 2017 for why one seed is not enough):

- **every seed pair**: both paired tests of each run of A against each run of B (``k_a x k_b``
  pairs, since seed ``i`` of one configuration has no special relation to seed ``i`` of the
  other), with the count of pairs significant at ``alpha``;
- **seed-averaged documents**: both tests once on per-document counts averaged over each side's
  seeds. A document's averaged ``tp``, ``fp``, ``fn`` are the means of its counts over the seeds,
  so the metric of the averaged counts is the metric of all seeds' predictions pooled (ratios of
  summed counts are unchanged by the division), and resampling documents keeps every seed's
  prediction of a document together: the test sees the seeds' spread within each document but
  still treats the document as the unit sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkit_exp.stats.counts import DocumentCounts, align
from medkit_exp.stats.paired import Comparison, compare


@dataclass(frozen=True)
class SeedComparison:
    """Configuration A (several seeds) against configuration B (several seeds).

    Attributes:
        metric: the metric compared.
        scores_a, scores_b: each run's score, in the order given.
        pairs: `Comparison` of every (run of A, run of B), A's runs outer: ``pairs[i * k_b + j]``
            compares ``a[i]`` with ``b[j]``.
        alpha: level at which pairs are counted significant.
        significant_bootstrap, significant_randomization: pairs whose p-value is at most ``alpha``.
        pooled: both tests on the seed-averaged per-document counts.
    """

    metric: str
    scores_a: tuple[float, ...]
    scores_b: tuple[float, ...]
    pairs: tuple[Comparison, ...]
    alpha: float
    significant_bootstrap: int
    significant_randomization: int
    pooled: Comparison

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return {"metric": self.metric, "scores_a": list(self.scores_a), "scores_b": list(self.scores_b),
                "mean_a": float(np.mean(self.scores_a)), "mean_b": float(np.mean(self.scores_b)),
                "alpha": self.alpha, "pairs": [pair.as_dict() for pair in self.pairs],
                "significant_bootstrap": self.significant_bootstrap,
                "significant_randomization": self.significant_randomization, "pooled": self.pooled.as_dict()}


def average_over_seeds(runs: Sequence[DocumentCounts]) -> DocumentCounts:
    """Per-document counts averaged over ``runs`` (seeds of one configuration, on the same
    documents; ``ValueError`` naming how many document ids differ otherwise)."""
    if not runs:
        raise ValueError("give at least one run to average")
    aligned = align(*runs)
    first = aligned[0]
    return DocumentCounts(first.document_ids, first.labels, np.mean([run.counts for run in aligned], axis=0),
                          first.kind)


def compare_seeds(a: Sequence[DocumentCounts], b: Sequence[DocumentCounts], metric: str = "f1",
                  resamples: int = 10_000, confidence: float = 0.95, method: str = "percentile", seed: int = 0,
                  alpha: float = 0.05) -> SeedComparison:
    """Configuration ``a`` against ``b``, each a list of runs (one per seed) scored on the same
    documents: both paired tests per seed pair and on the seed-averaged counts (see the module's
    docstring). Arguments as `medkit_exp.stats.paired_bootstrap`'s."""
    if not a or not b:
        raise ValueError("give at least one run on each side")
    aligned = align(*a, *b)
    runs_a, runs_b = aligned[:len(a)], aligned[len(a):]
    pairs = tuple(compare(x, y, metric, resamples, confidence, method, seed) for x in runs_a for y in runs_b)
    pooled = compare(average_over_seeds(runs_a), average_over_seeds(runs_b), metric, resamples, confidence, method,
                     seed)
    return SeedComparison(
        metric, tuple(run.score(metric) for run in runs_a), tuple(run.score(metric) for run in runs_b), pairs, alpha,
        sum(pair.bootstrap.p_value <= alpha for pair in pairs),
        sum(pair.randomization.p_value <= alpha for pair in pairs), pooled)
