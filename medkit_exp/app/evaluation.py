"""Part of phase `train_and_test`: the per-document predictions a run stores, and the confidence
intervals of its test scores.

A component whose ``score_test`` takes ``predictions_path`` (`ExperimentHooks`) writes the test
split's records to ``<trainer.output_dir>/predictions/test.jsonl``; the app then scores the dev
split once more with the best checkpoint for ``predictions/dev.jsonl`` (the Trainer's dev
evaluation works on model inputs, not on documents), and bootstraps the test documents
(`medkit_exp.stats.bootstrap_cis`) for the intervals of the headline metrics, logged as
``test_<metric>_ci_low`` / ``test_<metric>_ci_high``, and of every label's F1, written to
``predictions/test_intervals.json``. The format of the records: `medkit_exp.text.predictions`.

A component without ``score_test`` whose metrics computer has ``item_values``
(`MetricsComputer`) gets the same from the values of its items (`medkit_exp.app.item_predictions`):
the intervals are then those of the values' means, each logged as ``test_<value>_ci_low/high``.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.errors import UserError

if TYPE_CHECKING:
    from medkit_exp.stats import Interval

log = logging.getLogger("medkit_exp")

METHODS = ("percentile", "bca")
# The metrics whose intervals are logged as test_<metric>_ci_low/high, by kind of predictions.
# Per-item means ("mean") log every value the items carry.
HEADLINE = {"ner": ("precision", "recall", "f1"), "classification": ("accuracy", "macro_f1")}
INTERVALS_FILE = "test_intervals.json"
NO_PREDICTIONS = ("no per-document predictions (so no confidence intervals): {reason} (see ExperimentHooks and "
                  "MetricsComputer in medkit_exp.training.protocols)")


def evaluation_settings(cfg: Any) -> Any:
    """``cfg.evaluation``, or the schema's defaults for a config composed without it."""
    from omegaconf import OmegaConf

    from medkit_exp.app.schema import EvaluationConfig

    return cfg.get("evaluation") or OmegaConf.structured(EvaluationConfig)


def check_evaluation_settings(evaluation: Any) -> None:
    """``evaluation.*`` in range: resamples >= 0, confidence in (0, 1), method percentile or bca."""
    if evaluation.resamples < 0:
        raise UserError(f"evaluation.resamples={evaluation.resamples} must be 0 (no interval) or more")
    if not 0 < evaluation.confidence < 1:
        raise UserError(f"evaluation.confidence={evaluation.confidence} must be between 0 and 1 (0.95 for 95%)")
    if str(evaluation.method).lower() not in METHODS:
        raise UserError(f"evaluation.method={evaluation.method} is unknown; use {' or '.join(METHODS)}")


def takes_predictions(component: Any) -> bool:
    """True when the component's ``score_test`` takes ``predictions_path``."""
    scorer = getattr(component, "score_test", None)
    return callable(scorer) and "predictions_path" in inspect.signature(scorer).parameters


def stores_predictions(component: Any, metrics_computer: Any) -> bool:
    """True when the run stores per-document predictions: the component's ``score_test`` takes
    ``predictions_path``, or it has no ``score_test`` and the metrics computer has ``item_values``."""
    from medkit_exp.training.protocols import item_values_of

    if takes_predictions(component):
        return True
    return not callable(getattr(component, "score_test", None)) and item_values_of(metrics_computer) is not None


def no_predictions_reason(component: Any, metrics_computer: Any) -> str:
    """Why a run stored no per-document predictions, in a few words."""
    if takes_predictions(component):
        return "the component's score_test wrote no predictions file"
    if callable(getattr(component, "score_test", None)):
        return "the component's score_test takes no predictions_path"
    if stores_predictions(component, metrics_computer):
        return "the metrics computer's item_values gave no usable records (see the warning before)"
    return "the component has no score_test taking predictions_path and its metrics computer no item_values"


def no_predictions(component: Any, metrics_computer: Any, tracker: Any) -> None:
    """Say in one log line why the run stores no predictions, and record it on the run (the tag
    ``predictions.missing``, which ``medkit_exp.compare`` quotes when it refuses the run)."""
    from medkit_exp.tracking.predictions import MISSING_TAG

    reason = no_predictions_reason(component, metrics_computer)
    log.info(NO_PREDICTIONS.format(reason=reason))
    tracker.set_tags({MISSING_TAG: reason})


class ScoreIntervals:
    """The bootstrap intervals of one run's test scores.

    Args:
        intervals: every interval computed (headline metrics and ``<label>_f1``), by metric name.
        kind: ``"ner"``, ``"classification"`` or ``"mean"`` (per-item values).
        documents: test documents resampled.
        seed: the resampling's seed.
        seconds: time the bootstrap took.
    """

    def __init__(self, intervals: Mapping[str, Interval], kind: str, documents: int, seed: int,
                 seconds: float) -> None:
        self.intervals, self.kind, self.documents = dict(intervals), kind, documents
        self.seed, self.seconds = seed, seconds

    @property
    def headline(self) -> tuple[str, ...]:
        if self.kind not in HEADLINE:
            return tuple(self.intervals)
        return tuple(name for name in HEADLINE[self.kind] if name in self.intervals)

    def metrics(self) -> dict[str, float]:
        """``<metric>_ci_low`` and ``<metric>_ci_high`` of the headline metrics (logged with ``test_``)."""
        return {f"{name}_ci_{side}": getattr(self.intervals[name], side) for name in self.headline
                for side in ("low", "high")}

    def note(self) -> str:
        """``95% CI, 1,000 document resamples`` (``BCa`` before ``CI`` for that method)."""
        first = next(iter(self.intervals.values()))
        method = " BCa" if first.method == "BCa" else ""
        return f"{first.confidence:.0%}{method} CI, {first.resamples:,} document resamples"

    def as_dict(self) -> dict[str, Any]:
        """What ``predictions/test_intervals.json`` holds."""
        first = next(iter(self.intervals.values()))
        return {"confidence": first.confidence, "method": first.method, "resamples": first.resamples,
                "seed": self.seed, "documents": self.documents, "resampled": "documents",
                "headline": list(self.headline), "intervals": {k: v.as_dict() for k, v in self.intervals.items()}}

    def summary(self) -> dict[str, Any]:
        """Entries of the run summary: the flat ``test_<metric>_ci_*`` numbers, the bounds by metric
        (``intervals``, printed beside the scores) and ``interval_note``."""
        return ({f"test_{k}": v for k, v in self.metrics().items()}
                | {"intervals": {k: (self.intervals[k].low, self.intervals[k].high) for k in self.headline},
                   "interval_note": self.note()})


def score_intervals(predictions_path: Path, evaluation: Any) -> ScoreIntervals | None:
    """The intervals of the test records at ``predictions_path`` (None, with one log line, when
    ``evaluation.resamples`` is 0 or the split has fewer than 2 documents); writes them to
    ``test_intervals.json`` beside the records."""
    from medkit_exp.stats import bootstrap_cis
    from medkit_exp.text.predictions import counts_of, read_records

    if evaluation.resamples == 0:
        return None
    started = time.perf_counter()
    counts = counts_of(read_records(predictions_path))
    if len(counts) < 2:
        log.info("no confidence interval: the test split has %d document(s), resampling needs 2", len(counts))
        return None
    if counts.kind in HEADLINE:
        names = [*HEADLINE[counts.kind], *(f"{label}_f1" for label in counts.labels)]
    else:
        names = counts.metric_names()  # per-item means: every value the items carry
    intervals = bootstrap_cis(counts, names, resamples=int(evaluation.resamples),
                              confidence=float(evaluation.confidence), method=str(evaluation.method),
                              seed=int(evaluation.seed))
    result = ScoreIntervals(intervals, counts.kind, len(counts), int(evaluation.seed),
                           time.perf_counter() - started)
    (predictions_path.parent / INTERVALS_FILE).write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
    return result


def log_prediction_tables(tracker: Any, folder: Path, splits: Mapping[str, Sequence[Any]]) -> None:
    """Each ``<split>.jsonl`` of ``folder`` as the MLflow table ``predictions/<split>_table.json``
    (the documents' texts, from ``splits``, show the entities' words); NER and classification
    records only."""
    from medkit_exp.text.predictions import PREDICTIONS_DIR, has_values, read_records, table_of

    for split, items in splits.items():
        path = folder / f"{split}.jsonl"
        if path.is_file() and not has_values(records := read_records(path)):
            texts = {str(item.id): item.text for item in items if isinstance(getattr(item, "text", None), str)}
            tracker.log_table(table_of(records, texts), f"{PREDICTIONS_DIR}/{split}_table.json")
