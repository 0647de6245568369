"""A cross-validation's scores: one configuration's fold jobs gathered into a mean, a spread and
an interval, and their out-of-fold predictions pooled.

A cross-validation sweep (``-m cv.folds=5 'cv.fold=range(5)'``, docs/cross-validation.md) runs
one job per fold, and per seed when ``trainer.seed`` is swept too. Each job's dev split is its
held-out fold: its ``predictions/dev.jsonl`` are out-of-fold predictions, scored here again
(exact-span micro F1, precision and recall for NER; accuracy and macro F1 for classification),
and its test scores are those it logged. Per fold the seeds are averaged first; then the folds
give the mean, the sample standard deviation and a 95% Student t interval.

That interval is optimistic. The folds share most of their training documents, so their
scores are correlated, and no unbiased estimator of the variance of k-fold cross-validation
exists (Bengio & Grandvalet 2004, "No Unbiased Estimator of the Variance of K-Fold
Cross-Validation", JMLR 5): the t interval treats the fold scores as independent and comes out
too narrow. Read it as the spread over folds, not as a guarantee.

The pooled out-of-fold score scores every fold's dev records together (all of train + dev,
each document predicted by the one model that did not train on it). A document predicted by
two folds of the same seed is an error of the fold assignment (`CrossValidation.overlaps`), and
so are whole seeds of NER predictions covering another number of documents than train + dev
held (`CrossValidation.coverage_gaps`, when the jobs said how many: ``expected_documents``).

Pure Python over `FoldRun` values: `medkit_exp.sweeps.cv_parent` reads them from MLflow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medkit_exp.stats import DocumentCounts
from medkit_exp.sweeps.summary import SEED_KEYS, override_key
from medkit_exp.tracking.predictions import Predictions

CONFIDENCE = 0.95
FOLD_KEY = "cv.fold"
NER_METRICS = ("f1", "precision", "recall")
CLASSIFICATION_METRICS = ("f1", "accuracy", "macro_f1")  # a classifier's f1 is its macro F1
SPLITS = ("dev", "test")
OPTIMISTIC = ("the fold scores share training documents, so the t interval over folds is too narrow "
              "(Bengio & Grandvalet 2004)")

Record = dict[str, Any]


def headline_metrics(counts: DocumentCounts) -> tuple[str, ...]:
    """The metrics a cross-validation reports for counts of this kind, the headline one first."""
    if counts.kind == "ner":
        return NER_METRICS
    if counts.kind == "classification":
        return CLASSIFICATION_METRICS
    return tuple(counts.metric_names())  # per-item means: each value by its name


def record_scores(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None,
                  source: str = "records") -> dict[str, float]:
    """The metrics of a run's prediction records (`headline_metrics` unless named)."""
    counts = Predictions(source, tuple(dict(r) for r in records)).counts()
    return {name: counts.score(name) for name in (metrics or headline_metrics(counts))}


def cv_configuration(configuration: str) -> str:
    """A job's ``sweep.configuration`` without its fold and seed: the jobs of one cross-validation."""
    kept = [o for o in configuration.split() if override_key(o) not in (FOLD_KEY, *SEED_KEYS)]
    return " ".join(kept) or "(none)"


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and Student t interval of per-fold scores (``std`` and the
    interval are None with fewer than two folds)."""

    values: tuple[float, ...]
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "per_fold": list(self.values)}

    def text(self) -> str:
        """``0.812 +- 0.011 [0.798, 0.826]``, or the mean alone for a single fold."""
        if self.std is None or self.ci_low is None or self.ci_high is None:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} +- {self.std:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def fold_spread(values: Sequence[float], confidence: float = CONFIDENCE,
                bounds: tuple[float, float] | None = None) -> Spread:
    """`Spread` of per-fold scores: the t interval ``mean +- t(n-1) * std / sqrt(n)`` (optimistic,
    see the module's docstring), clipped to ``bounds`` when the metric has them (an F1 cannot leave
    [0, 1], though with 2 or 3 folds the t interval easily does). ``ValueError`` without any value."""
    if not values:
        raise ValueError("no fold score to summarize")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Spread(tuple(values), mean, None, None, None)
    std = statistics.stdev(values)
    if std == 0:
        return Spread(tuple(values), mean, 0.0, mean, mean)
    from scipy.stats import t

    low, high = t.interval(confidence, len(values) - 1, loc=mean, scale=std / math.sqrt(len(values)))
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Spread(tuple(values), mean, std, float(low), float(high))


@dataclass(frozen=True)
class FoldRun:
    """One job of a cross-validation, as its MLflow run left it.

    Attributes:
        run_id: the job's run.
        fold: the fold it held out (``cv.fold``).
        seed: its ``trainer.seed`` (None when not known); ``cv_seed``: its ``cv.seed``.
        dev: the scores of its out-of-fold predictions; None when it stored none (the job failed).
        test: its test scores (empty when it has none).
        records: its out-of-fold prediction records.
    """

    run_id: str
    fold: int
    seed: str | None = None
    cv_seed: str | None = None
    dev: Mapping[str, float] | None = None
    test: Mapping[str, float] = field(default_factory=dict)
    records: tuple[Record, ...] = ()
    status: str = "FINISHED"

    @property
    def repetition(self) -> tuple[str, str]:
        """Which partition and seed the job belongs to: one fold of each makes a whole cross-validation."""
        return (self.cv_seed or "", self.seed or "")

    @property
    def done(self) -> bool:
        """Whether the job finished and stored its out-of-fold predictions."""
        return self.status == "FINISHED" and self.dev is not None


@dataclass
class CrossValidation:
    """The fold jobs of one configuration (``runs``, failed ones included) over ``folds`` folds;
    ``expected_documents``: how many documents train + dev held (None: not known)."""

    configuration: str
    folds: int
    runs: list[FoldRun] = field(default_factory=list)
    expected_documents: int | None = None

    @property
    def done(self) -> list[FoldRun]:
        return [run for run in self.runs if run.done]

    @property
    def failed(self) -> list[FoldRun]:
        return [run for run in self.runs if not run.done]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics every finished job's out-of-fold predictions were scored with, headline first."""
        done = self.done
        if not done or done[0].dev is None:
            return ()
        return tuple(name for name in done[0].dev if all(name in (run.dev or {}) for run in done))

    @property
    def repetitions(self) -> list[tuple[str, str]]:
        """Every ``(cv seed, trainer seed)`` a job of this configuration ran with, failed ones included."""
        return sorted({run.repetition for run in self.runs})

    @property
    def folds_done(self) -> list[int]:
        """The folds with at least one finished job."""
        return sorted({run.fold for run in self.done})

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Each fold and seed without a finished job (its job failed, or never made a run)."""
        have = {(run.fold, run.repetition) for run in self.done}
        gaps = []
        for fold in range(self.folds):
            for repetition in self.repetitions or [("", "")]:
                if (fold, repetition) not in have:
                    failed = [run.run_id for run in self.failed if (run.fold, run.repetition) == (fold, repetition)]
                    gaps.append({"fold": fold, "cv_seed": repetition[0] or None, "seed": repetition[1] or None,
                                 "failed_run_ids": failed})
        return gaps

    @property
    def complete(self) -> bool:
        """Whether every fold of every seed finished with its out-of-fold predictions."""
        return not self.missing

    def fold_scores(self, split: str, metric: str) -> list[tuple[int, float]]:
        """``(fold, score)`` of each fold with a score, its seeds averaged first."""
        by_fold: dict[int, list[float]] = {}
        for run in self.done:
            scores = run.dev if split == "dev" else run.test
            if scores is not None and metric in scores:
                by_fold.setdefault(run.fold, []).append(float(scores[metric]))
        return [(fold, statistics.fmean(values)) for fold, values in sorted(by_fold.items())]

    def spread(self, split: str, metric: str) -> Spread | None:
        """`fold_spread` of `fold_scores`; None when no fold has that score."""
        scores = self.fold_scores(split, metric)
        bounded = metric in NER_METRICS or metric in CLASSIFICATION_METRICS  # proportions; a per-item mean may not be
        return fold_spread([score for _, score in scores], bounds=(0.0, 1.0) if bounded else None) if scores else None

    def pooled_dev(self) -> dict[str, float]:
        """Each metric of all folds' out-of-fold records scored together (per seed, then averaged over seeds)."""
        per_repetition: dict[tuple[str, str], list[Record]] = {}
        for run in self.done:
            per_repetition.setdefault(run.repetition, []).extend(run.records)
        metrics = self.metrics
        scored = [record_scores(records, metrics, f"{self.configuration}'s out-of-fold predictions")
                  for records in per_repetition.values() if records]
        return {name: statistics.fmean(s[name] for s in scored) for name in metrics} if scored else {}

    def overlaps(self) -> list[dict[str, Any]]:
        """Documents predicted by more than one fold of the same seed: each with its folds (none expected)."""
        folds_of: dict[tuple[tuple[str, str], str], set[int]] = {}
        for run in self.done:
            for record in run.records:
                folds_of.setdefault((run.repetition, str(record["document_id"])), set()).add(run.fold)
        return [{"document_id": doc_id, "cv_seed": repetition[0] or None, "seed": repetition[1] or None,
                 "folds": sorted(folds)}
                for (repetition, doc_id), folds in sorted(folds_of.items()) if len(folds) > 1]

    def coverage_gaps(self) -> list[dict[str, Any]]:
        """Each seed whose folds all finished but whose NER predictions cover another number of
        documents than ``expected_documents`` (a classifier's documents may give no item: not checked)."""
        if self.expected_documents is None:
            return []
        gaps = []
        for repetition in self.repetitions:
            runs = [run for run in self.done if run.repetition == repetition]
            records = [record for run in runs for record in run.records]
            if {run.fold for run in runs} != set(range(self.folds)) or not records or not all(
                    isinstance(record.get("gold"), list) for record in records):
                continue
            covered = len({str(record["document_id"]) for record in records})
            if covered != self.expected_documents:
                gaps.append({"cv_seed": repetition[0] or None, "seed": repetition[1] or None, "documents": covered,
                             "expected": self.expected_documents})
        return gaps

    @property
    def exactly_once(self) -> bool:
        """No document predicted twice in a seed, and each whole seed covering every document (when known)."""
        return not self.overlaps() and not self.coverage_gaps()

    def documents(self) -> int:
        """How many distinct documents the out-of-fold predictions cover."""
        return len({str(record["document_id"]) for run in self.done for record in run.records})

    def out_of_fold_records(self) -> list[Record]:
        """Every finished job's out-of-fold records, each with its ``fold`` (and its ``seed``,
        ``cv_seed`` when the configuration ran several), by seed then fold."""
        seeds = {run.seed for run in self.runs}
        cv_seeds = {run.cv_seed for run in self.runs}
        pooled = []
        for run in sorted(self.done, key=lambda r: (r.repetition, r.fold)):
            for record in run.records:
                extra: Record = {"fold": run.fold}
                if len(seeds) > 1:
                    extra["seed"] = _number(run.seed)
                if len(cv_seeds) > 1:
                    extra["cv_seed"] = _number(run.cv_seed)
                pooled.append({**record, **extra})
        return pooled

    def as_dict(self) -> dict[str, Any]:
        """Every figure of this configuration, JSON-ready (``cv_summary.json``)."""
        scores = {split: {metric: spread.as_dict() for metric in self.metrics
                          if (spread := self.spread(split, metric)) is not None} for split in SPLITS}
        return {
            "configuration": self.configuration, "folds": self.folds, "folds_done": len(self.folds_done),
            "complete": self.complete, "missing": self.missing, "overlaps": self.overlaps(),
            "coverage_gaps": self.coverage_gaps(), "expected_documents": self.expected_documents,
            "documents": self.documents(), "confidence": CONFIDENCE, "interval": "student t over folds",
            "interval_note": OPTIMISTIC, **scores, "pooled_dev": self.pooled_dev(),
            "runs": [{"run_id": run.run_id, "fold": run.fold, "seed": run.seed, "cv_seed": run.cv_seed,
                      "status": run.status, "dev": dict(run.dev) if run.dev is not None else None,
                      "test": dict(run.test)} for run in sorted(self.runs, key=lambda r: (r.fold, r.repetition))],
        }

    def summary_line(self) -> str:
        """``Cross-validation (5 folds): dev F1 0.812 +- 0.011 [0.798, 0.826], test F1 ...``, and
        what is missing when the cross-validation is incomplete."""
        metric = self.metrics[0] if self.metrics else "f1"
        shown = "F1" if metric == "f1" else metric
        parts = [f"{split} {shown} {spread.text()}" for split in SPLITS
                 if (spread := self.spread(split, metric)) is not None]
        folds = f"{self.folds} folds"
        if len(self.repetitions) > 1:
            folds += f" x {len(self.repetitions)} seeds"
        line = f"Cross-validation ({folds}): {', '.join(parts) or 'no fold finished'}"
        missing, overlaps = self.missing, self.overlaps()
        if missing:
            seeds = len(self.repetitions) > 1
            gaps = ", ".join(f"fold {gap['fold']}" + (f" seed {gap['seed']}" if seeds else "") for gap in missing)
            line += f"; INCOMPLETE, {len(self.folds_done)} of {self.folds} folds done (no predictions from {gaps})"
        if overlaps:
            line += f"; ERROR: {len(overlaps)} documents predicted by more than one fold"
        for gap in self.coverage_gaps():
            line += f"; ERROR: the folds predicted {gap['documents']} of the {gap['expected']} train + dev documents"
        return line


def best_cross_validation(validations: Sequence[CrossValidation], metric: str | None = None,
                          maximize: bool = True) -> CrossValidation:
    """The configuration whose out-of-fold dev ``metric`` (its headline one by default) has the
    best mean over folds; configurations without a finished fold come last."""
    def key(validation: CrossValidation) -> tuple[bool, float]:
        name = metric if metric in validation.metrics else (validation.metrics or (None,))[0]
        spread = validation.spread("dev", name) if name else None
        if spread is None:
            return (False, 0.0)
        return (True, spread.mean if maximize else -spread.mean)

    if not validations:
        raise ValueError("no cross-validation to choose from")
    return max(validations, key=key)


def _number(value: str | None) -> int | str | None:
    """A seed as a number when it is one."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return value
