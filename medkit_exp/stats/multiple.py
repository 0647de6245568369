"""Correction of p-values for several comparisons made at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Rejecting every hypothesis whose adjusted p-value is at most ``alpha`` keeps the chance of
    any false rejection among them at most ``alpha`` (family-wise error rate), whatever their
    dependence (Holm 1979). The ``i``-th smallest p-value (from 0) of ``m`` is multiplied by
    ``m - i``, made non-decreasing along that order, and capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("p-values must be a list of numbers between 0 and 1")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return [float(value) for value in adjusted]
