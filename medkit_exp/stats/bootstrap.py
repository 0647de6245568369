"""Confidence intervals of a score by bootstrap over documents.

The document is the unit that was sampled (entities of one document are not independent: a
hard abstract holds several misses), so the resampling draws documents with replacement and
the score of a resample is computed from the summed counts of the documents drawn. The
resampling and the interval (percentile or BCa) are `scipy.stats.bootstrap`'s: the data it
resamples are document indices, and the statistic sums the count rows they point to.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from medkit_exp.stats.counts import DocumentCounts
from medkit_exp.stats.metrics import Metric

METHODS = {"percentile": "percentile", "bca": "BCa"}
MAX_BATCH_CELLS = 4_000_000  # resamples x documents per vectorized call (32 MB of float64 weights)


@dataclass(frozen=True)
class Interval:
    """A score and its bootstrap confidence interval.

    Attributes:
        metric: the metric's name (``f1``...).
        point: the score on all documents.
        low, high: the interval's bounds.
        confidence: its level (0.95).
        method: ``"percentile"`` or ``"BCa"`` (``"percentile"`` where BCa could not be computed).
        resamples: number of bootstrap resamples.
    """

    metric: str
    point: float
    low: float
    high: float
    confidence: float
    method: str
    resamples: int

    def as_dict(self) -> dict[str, float | str | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def resampled_sums(counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Summed count rows of each resample: ``counts`` ``(documents, labels, 3)``, ``indices``
    ``(..., draws)`` of row numbers -> ``(..., labels, 3)``.

    Each resample's multiplicities (a bincount) times the count matrix: one matrix product for
    all resamples, instead of gathering ``draws`` rows per resample.
    """
    n_rows = counts.shape[0]
    flat = indices.reshape(-1, indices.shape[-1])
    offsets = np.arange(flat.shape[0])[:, None] * n_rows
    weights = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * n_rows).reshape(flat.shape[0], n_rows)
    sums = weights.astype(float) @ counts.reshape(n_rows, -1)
    return sums.reshape(*indices.shape[:-1], *counts.shape[1:])


def index_statistic(counts: np.ndarray, metrics: Sequence[Metric]) -> Callable[..., np.ndarray]:
    """A vectorized statistic for `scipy.stats.bootstrap` whose data are row indices of ``counts``:
    the metrics of the summed rows, stacked on a first axis."""
    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = resampled_sums(counts, np.moveaxis(np.asarray(indices), axis, -1))
        return np.stack([metric(sums) for metric in metrics])
    return statistic


def batch_size(n_documents: int, resamples: int) -> int:
    """Resamples per vectorized call, so that one call's weights stay near `MAX_BATCH_CELLS`."""
    return max(1, min(resamples, MAX_BATCH_CELLS // max(n_documents, 1)))


def check_method(method: str) -> str:
    """scipy's spelling of ``method`` (``percentile`` or ``BCa``, any case); ``ValueError`` otherwise."""
    if method.lower() not in METHODS:
        raise ValueError(f"unknown interval method {method!r}: use percentile or BCa")
    return METHODS[method.lower()]


def check_sample(n_documents: int, resamples: int, confidence: float) -> None:
    """``ValueError`` for fewer than 2 documents, no resample or a confidence outside (0, 1)."""
    if n_documents < 2:
        raise ValueError(f"resampling needs at least 2 documents, got {n_documents}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (0.95 for 95%), got {confidence}")


def bootstrap_intervals(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], points: np.ndarray,
                        resamples: int, confidence: float, method: str, seed: int
                        ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``scipy.stats.bootstrap`` of a multi-output ``statistic``: (lows, highs, method of each
    output, bootstrap distribution ``(outputs, resamples)``).

    BCa is undefined for an output whose bootstrap values are all equal (a perfect score, a
    system against itself): its interval is then the percentile one, a single point.
    """
    scipy_method = check_method(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa's 0/0 on a constant output, handled below
        result = stats.bootstrap(data, statistic, n_resamples=resamples, vectorized=True, axis=-1,
                                 confidence_level=confidence, method=scipy_method, rng=np.random.default_rng(seed),
                                 batch=batch_size(len(data[0]), resamples))
    low = np.atleast_1d(np.asarray(result.confidence_interval.low, dtype=float)).copy()
    high = np.atleast_1d(np.asarray(result.confidence_interval.high, dtype=float)).copy()
    distribution = np.atleast_2d(result.bootstrap_distribution)
    methods = [scipy_method] * len(low)
    alpha = (1 - confidence) / 2
    for k in np.flatnonzero(np.isnan(low) | np.isnan(high)):
        low[k], high[k] = np.quantile(distribution[k], [alpha, 1 - alpha])
        methods[k] = "percentile"
    # A constant bootstrap distribution gives the point itself (scipy's quantiles may differ in the last bit).
    constant = np.ptp(distribution, axis=1) == 0
    low[constant], high[constant] = points[constant], points[constant]
    return low, high, methods, distribution


def bootstrap_cis(counts: DocumentCounts, metrics: Sequence[str], resamples: int = 1000, confidence: float = 0.95,
                  method: str = "percentile", seed: int = 0) -> dict[str, Interval]:
    """Intervals of several metrics from the same document resamples (one pass for all of them).

    Args:
        counts: the per-document counts of one system.
        metrics: metric names (``f1``, ``precision``, ``Disease_f1``...; see `DocumentCounts.metric`).
        resamples: bootstrap resamples of the documents.
        confidence: the intervals' level.
        method: ``"percentile"`` or ``"BCa"`` (bias-corrected and accelerated).
        seed: seed of the resampling: the same seed gives the same intervals.
    """
    check_sample(len(counts), resamples, confidence)
    functions = [counts.metric(name) for name in metrics]
    points = np.array([float(f(counts.total())) for f in functions])
    statistic = index_statistic(counts.counts, functions)
    low, high, methods, _ = bootstrap_intervals((np.arange(len(counts)),), statistic, points, resamples, confidence,
                                                method, seed)
    return {name: Interval(name, float(points[k]), float(low[k]), float(high[k]), confidence, methods[k], resamples)
            for k, name in enumerate(metrics)}


def bootstrap_ci(counts: DocumentCounts, metric: str = "f1", resamples: int = 1000, confidence: float = 0.95,
                 method: str = "percentile", seed: int = 0) -> Interval:
    """Bootstrap confidence interval of one metric, resampling documents (see `bootstrap_cis`)."""
    return bootstrap_cis(counts, [metric], resamples, confidence, method, seed)[metric]
