"""The app's config schema: the app's own groups as dataclasses in Hydra's ConfigStore.

``trainer``, ``tracking`` and ``callbacks`` configure the app itself, so they are typed
dataclasses: a typo (``trainer.lrr=1``) or a wrong type (``trainer.epochs=abc``) fails while
Hydra composes the config. ``component``, ``data``, ``metrics`` and ``scheduler`` are open:
each node names what it builds with ``_target_``, and `medkit_exp.app.nodes.check_node` checks
its keys against that target's signature before anything runs. Imports stay light (no
torch, no mlflow) so that ``--cfg job`` and ``--help`` answer quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from medkit_exp.training.config import TrainerConfig


@dataclass
class TrackingConfig:
    """``tracking=...``: where runs are logged (``tracking=none`` logs nothing)."""

    enabled: bool = True
    uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else SQLite under `root`
    experiment: str = "medkit_exp"
    root: str = "mlruns"
    run_name: str | None = None
    log_checkpoints: str = "best"  # best, best_and_last or none
    required: bool = True  # false: a tracking failure at start only warns
    log_model: bool = True  # log the best checkpoint as an MLflow model, for components that offer one
    register_as: str | None = None  # also register that model under this name (models:/<name>/<version>)
    system_metrics: bool = True  # CPU, memory (and GPU) use as system/* metrics of the run


@dataclass
class CallbacksConfig:
    """``callbacks=...``: what watches the run besides tracking."""

    printer: bool = True
    progress_bars: bool | None = None  # null: bars on a terminal only


@dataclass
class EvaluationConfig:
    """``evaluation.*``: the confidence intervals of the test scores (docs/evaluation.md)."""

    resamples: int = 1000  # bootstrap resamples of the test documents; 0: no interval
    confidence: float = 0.95  # the intervals' level
    method: str = "percentile"  # percentile or bca
    seed: int = 0  # seed of the resampling: the same predictions give the same intervals
    dev_predictions: bool = True  # also store the dev split's predictions (scored once more with the best checkpoint)


@dataclass
class CVConfig:
    """``cv.*``: k-fold cross-validation over train + dev, one fold per job (docs/cross-validation.md)."""

    folds: int | None = None  # null: no cross-validation
    fold: int | None = None  # the fold this job holds out as its dev split: 0 to folds - 1
    seed: int = 0  # seed of the fold assignment: every job of a sweep draws the same folds
    group_by: str | None = None  # a document metadata field (patient_id), or regex:<pattern> over document ids
    stratify: bool = False  # balance entity labels across folds (as far as the groups allow)


@dataclass
class AppConfig:
    """The whole experiment, as composed by Hydra."""

    trainer: TrainerConfig = MISSING
    component: Any = MISSING  # _target_: a TrainableComponent class or factory, and its arguments
    scheduler: Any = None  # _target_: a scheduler builder, or a torch scheduler class with _partial_
    metrics: Any = None  # _target_: a MetricsComputer class or factory; none: the loss alone
    data: Any = MISSING  # _target_: returns {"train": [...], "dev": [...], "test": [...]}
    tracking: TrackingConfig = MISSING
    callbacks: CallbacksConfig = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    # What a sweep optimises: a key of the run summary (eval_* at the best epoch, test_*).
    objective: str = "eval_f1"
    # max or min; null: the sweeper's direction, else trainer.checkpoint_mode when the objective
    # is eval_<trainer.checkpoint_metric>, else max.
    objective_mode: str | None = None
    threads: int | None = None  # torch threads; null keeps torch's default
    # glibc's mmap threshold (KiB): larger freed blocks go back to the system instead of staying
    # in the heap (medkit_exp.training.host_memory); null keeps glibc's own adjustment.
    malloc_mmap_threshold_kib: int | None = None


def register_configs() -> None:
    """Make the schemas available to the YAML files as ``base_*`` defaults (``- /base_trainer``).

    They are stored outside the config groups: a schema in a group would be one of its options,
    and ``--help`` would list ``trainer: base_trainer, default`` as if users could choose it."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=AppConfig)
    store.store(name="base_trainer", node=TrainerConfig)
    store.store(name="base_tracking", node=TrackingConfig)
    store.store(name="base_callbacks", node=CallbacksConfig)
