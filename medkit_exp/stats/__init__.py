"""Uncertainty of scores and significance of differences, computed from per-document counts.

- `DocumentCounts`, `ner_counts`, `classification_counts`, `item_value_counts` (per-item values
  a metrics computer gives, scored as their mean): what every score is computed from, kept per
  document (`medkit_exp.stats.counts`); metric names as the runs log them
  (`medkit_exp.stats.metrics`).
- `bootstrap_ci`, `bootstrap_cis`: confidence intervals by bootstrap over documents.
- `paired_bootstrap`, `approximate_randomization`, `compare`: paired tests of two systems on
  the same documents.
- `compare_seeds`, `average_over_seeds`: configurations with several seeds per side.
- `holm`: Holm-Bonferroni correction for several comparisons.

Pure numpy and scipy: this package imports nothing else of medkit_exp.
"""

from medkit_exp.stats.bootstrap import Interval, bootstrap_ci, bootstrap_cis
from medkit_exp.stats.counts import DocumentCounts, align, classification_counts, item_value_counts, ner_counts
from medkit_exp.stats.multiple import holm
from medkit_exp.stats.paired import Comparison, PairedResult, approximate_randomization, compare, paired_bootstrap
from medkit_exp.stats.seeds import SeedComparison, average_over_seeds, compare_seeds

__all__ = [
    "Comparison",
    "DocumentCounts",
    "Interval",
    "PairedResult",
    "SeedComparison",
    "align",
    "approximate_randomization",
    "average_over_seeds",
    "bootstrap_ci",
    "bootstrap_cis",
    "classification_counts",
    "compare",
    "compare_seeds",
    "holm",
    "item_value_counts",
    "ner_counts",
    "paired_bootstrap",
]
