"""The training loop's counters and an epoch's running sums: what a checkpoint keeps so that a
resumed run continues exactly where the interrupted one stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medkit_exp.training.errors import TrainingSetupError


@dataclass
class LoopState:
    """Counters of the training loop that a resumed run must continue from."""

    epoch: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    nan_skips: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # Set only in a checkpoint written mid-epoch (after an interruption): how far the
    # interrupted epoch got and its running sums, so that a resumed run continues exactly.
    batches_done: int = 0
    partial_epoch: dict[str, Any] | None = None

    def out_of_patience(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs went by without improvement (None: never)."""
        return patience is not None and self.epochs_without_improvement >= patience

    def skip_non_finite(self, max_skips: int) -> bool:
        """Count a skipped non-finite loss, unless ``max_skips`` were skipped already (then False)."""
        if self.nan_skips >= max_skips:
            return False
        self.nan_skips += 1
        return True

    def update_best(self, value: float, epoch: int, mode: str) -> bool:
        """Count epoch ``epoch``'s ``value`` of the checkpoint metric; whether it is the best so far
        (``mode``: "min" or "max")."""
        best = self.best_metric
        better = best is None or (value < best if mode == "min" else value > best)
        if better:
            self.best_metric = value
            self.best_epoch = epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return better


def tracked_metric(entry: dict[str, Any], name: str) -> float | None:
    """Metric ``name`` of an epoch's history entry: its eval value, or its train value without
    eval data; None when it has none."""
    return (entry.get("eval") or entry.get("train") or {}).get(name)


def required_metric(entry: dict[str, Any], name: str, option: str) -> float:
    """`tracked_metric`, for the setting ``option`` that named it: a missing metric raises
    `TrainingSetupError` naming the metrics there are."""
    phase = entry.get("eval") or entry.get("train") or {}
    if name not in phase:
        raise TrainingSetupError(f"{option}={name!r} is not a computed metric (available: {sorted(phase)}); "
                                 "set it to one of those")
    return phase[name]


@dataclass
class EpochTotals:
    """Running sums of a training epoch; a mid-epoch checkpoint keeps them (as a dict) so that
    the resumed epoch ends with the same figures as an uninterrupted one."""

    loss_sum: float = 0.0  # loss x weight, over the epoch
    weight: float = 0.0  # loss terms seen (rows, or labelled tokens)
    samples: int = 0
    log_loss_sum: float = 0.0  # the same since the last step log
    log_weight: float = 0.0
    metric_data: dict[str, list[Any]] = field(default_factory=dict)  # do_metrics_in_training
    seconds: float = 0.0  # time spent before an interruption

    @classmethod
    def restore(cls, saved: dict[str, Any] | None) -> EpochTotals:
        return cls(**saved) if saved else cls()

    def add(self, loss_value: float, weight: float, samples: int) -> None:
        self.loss_sum += loss_value * weight
        self.weight += weight
        self.log_loss_sum += loss_value * weight
        self.log_weight += weight
        self.samples += samples

def extend_lists(store: dict[str, list[Any]], batch_data: dict[str, list[Any]]) -> None:
    """Append each list of ``batch_data`` to the list of the same key in ``store``."""
    for key, values in batch_data.items():
        store.setdefault(key, []).extend(values)
