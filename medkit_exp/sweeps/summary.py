"""Rank a sweep's configurations by their mean over seeds, not by one lucky run.

Fine-tuning is noisy: on NCBI-disease one configuration's test F1 spans 0.835-0.850 over
seeds, more than the gap between most configurations worth comparing. A sweep that repeats
each configuration over ``trainer.seed=0,1,2`` is grouped here by its overrides without the
seed, and each group gets the mean, standard deviation and range of the objective.
Pure Python: the sweep callback feeds it the jobs read back from MLflow.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

# The keys whose values repeat one configuration rather than change it: the seed, and the
# cross-validation fold (the folds of one configuration are averaged like its seeds).
SEED_KEYS = ("trainer.seed", "cv.fold")


def override_key(override: str) -> str:
    """The config key a Hydra override sets: ``"+trainer.seed=3"`` -> ``"trainer.seed"``."""
    return override.split("=", 1)[0].lstrip("+~")


def configuration_of(overrides: Sequence[str], seed_keys: Sequence[str] = SEED_KEYS) -> str:
    """A job's overrides without its seed and fold, joined by spaces (``"(none)"`` when nothing is left)."""
    kept = [o for o in overrides if override_key(o) not in seed_keys]
    return " ".join(kept) or "(none)"


@dataclass
class ConfigurationScore:
    """The objective of every job of one configuration (its runs differ only by seed)."""

    overrides: str
    values: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation; None for a single run."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def as_dict(self) -> dict:
        return {**asdict(self), "runs": self.runs, "mean": self.mean, "std": self.std,
                "min": min(self.values), "max": max(self.values)}


def rank_configurations(jobs: Iterable[tuple[str, str, float]], maximize: bool = True) -> list[ConfigurationScore]:
    """Group ``(configuration, run_id, objective value)`` triples; best mean first."""
    groups: dict[str, ConfigurationScore] = {}
    for configuration, run_id, value in jobs:
        group = groups.setdefault(configuration, ConfigurationScore(configuration))
        group.values.append(float(value))
        group.run_ids.append(run_id)
    return sorted(groups.values(), key=lambda g: g.mean, reverse=maximize)


def varying_overrides(configurations: Sequence[str]) -> dict[str, str]:
    """Each configuration reduced to the overrides that differ between them (for display)."""
    token_sets = [set(c.split()) for c in configurations]
    shared = set.intersection(*token_sets) if token_sets else set()
    return {c: " ".join(t for t in c.split() if t not in shared) or "(same)" for c in configurations}


def format_ranking(ranking: Sequence[ConfigurationScore], objective: str, limit: int = 10,
                   p_vs_best: Mapping[str, str] | None = None) -> str:
    """A plain-text table of the ranking (the first ``limit`` configurations; the overrides
    every configuration shares are left out of it). ``p_vs_best``: a ``p vs best`` cell per
    configuration's overrides (`medkit_exp.sweeps.significance.p_column`), shown before the overrides."""
    shown = varying_overrides([g.overrides for g in ranking])
    p_header = f" {'p vs best':>9}" if p_vs_best is not None else ""
    lines = [f"Sweep configurations by mean {objective} over seeds (best first):",
             f"  {'mean':>7} {'std':>7} {'min':>7} {'max':>7} {'runs':>4}{p_header}  overrides"]
    for group in ranking[:limit]:
        std = "-" if group.std is None else f"{group.std:.4f}"
        p_cell = f" {p_vs_best.get(group.overrides, '-'):>9}" if p_vs_best is not None else ""
        lines.append(f"  {group.mean:7.4f} {std:>7} {min(group.values):7.4f} {max(group.values):7.4f} "
                     f"{group.runs:4d}{p_cell}  {shown[group.overrides]}")
    if len(ranking) > limit:
        lines.append(f"  ... {len(ranking) - limit} more in the parent run's sweep_summary.json")
    return "\n".join(lines)
