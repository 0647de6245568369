"""Whether a sweep's best configuration really beats the next ones on the test documents.

The sweep ranks configurations by their mean objective over seeds (`medkit_exp.sweeps.summary`).
Here the best configuration is tested against each of the next ones (up to `MAX_COMPARED`) on
the per-document test predictions its runs stored: both paired tests of
`medkit_exp.stats.compare` on the seed-averaged per-document counts of each configuration
(`medkit_exp.stats.average_over_seeds`), over the documents all of them predicted. The
p-value that decides is approximate randomization's (its level holds exactly, whatever the
metric); since several configurations are tested against the same best one, the p-values are
Holm-Bonferroni corrected across the comparisons (`medkit_exp.stats.holm`) before being held
against `ALPHA`. A configuration without stored predictions (runs of an older version, pruned
trials) is left untested, and the result says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from medkit_exp.errors import MedkitExpError
from medkit_exp.stats import DocumentCounts, average_over_seeds, compare, holm
from medkit_exp.sweeps.summary import ConfigurationScore

MAX_COMPARED = 5
ALPHA = 0.05
RESAMPLES = 10_000
CONFIDENCE = 0.95
DECIDING_TEST = "approximate randomization"


def metric_for(objective: str, counts: DocumentCounts) -> str:
    """The test metric matching the sweep's objective (``eval_f1`` -> ``f1``), else the headline
    one (``f1`` for NER, ``accuracy`` for classification, the first value for per-item values)."""
    name = objective.removeprefix("eval_").removeprefix("test_")
    return name if name in counts.metric_names() else counts.default_metric()


def higher_is_better(objective: str, metric: str, counts: DocumentCounts | None, maximize: bool) -> bool:
    """Whether a higher test ``metric`` is better: the objective's direction when the metric is
    the objective's or a per-item value, else True (F1, accuracy)."""
    same = metric == objective.removeprefix("eval_").removeprefix("test_")
    return maximize if same or (counts is not None and counts.kind == "mean") else True


def configuration_counts(configuration: ConfigurationScore, load: Callable[[str], DocumentCounts]
                         ) -> tuple[DocumentCounts | None, str]:
    """The seed-averaged per-document counts of a configuration's runs that stored predictions,
    and a note (how many runs it holds, or why there are no counts)."""
    runs, missing = [], []
    for run_id in configuration.run_ids:
        try:
            runs.append(load(run_id))
        except (MedkitExpError, OSError, ValueError) as exc:  # no predictions, unreadable ones: left out, and said
            missing.append(f"run {run_id}: {exc}")
    if not runs:
        return None, missing[0] if len(missing) == 1 else f"none of its {len(missing)} runs stored test predictions"
    try:
        averaged = average_over_seeds(runs)
    except ValueError as exc:
        return None, str(exc)
    return averaged, f"{len(runs)} of {len(configuration.run_ids)} runs"


def sweep_significance(ranking: Sequence[ConfigurationScore], objective: str, load: Callable[[str], DocumentCounts],
                       resamples: int = RESAMPLES, seed: int = 0, maximize: bool = True) -> dict[str, Any]:
    """The best configuration of ``ranking`` against each of the next ones (up to `MAX_COMPARED`)
    on their test predictions (``load(run_id)`` gives a run's per-document counts, or raises a
    `MedkitExpError`, `OSError` or `ValueError` for a run whose predictions cannot be read).
    ``maximize``: the objective's direction, which a significant difference must follow when
    the test metric is the objective's (``eval_mae`` -> ``mae``: lower is better) or a per-item
    value; F1 and accuracy are always higher-better.

    Returns a JSON-ready dict: ``comparisons`` (per configuration: rank, overrides, difference
    best - it, its interval, both p-values, the Holm-adjusted one and whether it is significant,
    or ``untested`` with the reason), ``verdict`` (one line about the runner-up) and the settings.
    """
    result: dict[str, Any] = {"objective": objective, "test": DECIDING_TEST, "correction": "holm", "alpha": ALPHA,
                              "resamples": resamples, "seed": seed, "confidence": CONFIDENCE, "comparisons": []}
    others = list(ranking[1:1 + MAX_COMPARED])
    if not others:
        result["verdict"] = "Only one configuration: nothing to test the best one against."
        return result
    best, best_note = configuration_counts(ranking[0], load)
    result["best"] = {"overrides": ranking[0].overrides, "runs": best_note}
    comparisons: list[dict[str, Any]] = []
    for rank, configuration in enumerate(others, start=2):
        row: dict[str, Any] = {"rank": rank, "overrides": configuration.overrides}
        counts, note = configuration_counts(configuration, load)
        row["runs"] = note
        if best is None:
            row["untested"] = f"the best configuration has no test predictions ({best_note})"
        elif counts is None:
            row["untested"] = note
        else:
            metric = metric_for(objective, best)
            result["metric"] = metric
            try:
                tests = compare(best, counts, metric, resamples, CONFIDENCE, seed=seed)
            except ValueError as exc:  # scored on different documents, too few of them
                row["untested"] = str(exc)
            else:
                boot = tests.bootstrap
                row.update(metric=metric, documents=boot.documents, best_score=boot.score_a, score=boot.score_b,
                           difference=boot.difference, ci_low=boot.low, ci_high=boot.high,
                           p_bootstrap=boot.p_value, p_randomization=tests.randomization.p_value)
        comparisons.append(row)
    tested = [row for row in comparisons if "untested" not in row]
    for row, adjusted in zip(tested, holm([row["p_randomization"] for row in tested]), strict=True):
        row["p_holm"] = adjusted
        sign = 1 if higher_is_better(objective, row["metric"], best, maximize) else -1
        row["significant"] = adjusted <= ALPHA and sign * row["difference"] > 0
    result["comparisons"] = comparisons
    result["verdict"] = verdict(comparisons[0], len(tested))
    return result


def verdict(runner_up: dict[str, Any], tested: int) -> str:
    """One line: is the best configuration significantly better than the runner-up?"""
    if "untested" in runner_up:
        return f"Best configuration vs runner-up: not tested ({runner_up['untested']})."
    p, adjusted = runner_up["p_randomization"], runner_up["p_holm"]
    outcome = "significantly better" if runner_up["significant"] else "NOT significantly better"
    return (f"Best configuration vs runner-up on test {runner_up['metric']}: {runner_up['difference']:+.4f} "
            f"[{runner_up['ci_low']:+.4f}, {runner_up['ci_high']:+.4f}], p = {p:.4f} ({DECIDING_TEST}), "
            f"{adjusted:.4f} after Holm over {tested} comparison{'s' if tested != 1 else ''}: "
            f"{outcome} at {ALPHA}.")


def p_column(ranking: Sequence[ConfigurationScore], significance: dict[str, Any] | None) -> dict[str, str]:
    """The ``p vs best`` cell of each configuration: ``best``, the approximate randomization
    p-value, or ``-`` (untested, not compared)."""
    cells = {group.overrides: "-" for group in ranking}
    if ranking:
        cells[ranking[0].overrides] = "best"
    for row in (significance or {}).get("comparisons", []):
        if "p_randomization" in row:
            cells[row["overrides"]] = f"{row['p_randomization']:.4f}"
    return cells
