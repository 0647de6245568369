"""The job's side of an Optuna search: report each epoch to its own trial, stop when pruned.

The sweeper (`medkit_exp.sweeps.optuna_search`) keeps the study in durable storage and
hands each job its trial number through environment variables (Hydra's ``hydra.job.env_set``,
which works with every launcher); the job reopens the study, reports its objective at every
epoch end, and raises `StopTraining` when the study's pruner says the trial is not worth
finishing. What the sweeper needs back (pruned or not, epochs run, the MLflow run) travels
as the trial's user attributes in the same storage.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

from medkit_exp.errors import UserError

log = logging.getLogger("medkit_exp.sweep")

TRIAL_ENV = "MEDKIT_EXP_OPTUNA_TRIAL"
STUDY_ENV = "MEDKIT_EXP_OPTUNA_STUDY"
STORAGE_ENV = "MEDKIT_EXP_OPTUNA_STORAGE"
PRUNER_ENV = "MEDKIT_EXP_OPTUNA_PRUNER"  # {"name": ..., "options": {...}}: storage does not keep the pruner
PRUNERS = ("none", "median", "successive_halving", "hyperband")

# Trial user attributes shared by the job and the sweeper.
EPOCHS_PLANNED = "epochs_planned"
EPOCHS_RUN = "epochs_run"
PRUNED_AT_EPOCH = "pruned_at_epoch"
MLFLOW_RUN_ID = "mlflow_run_id"


def make_pruner(name: str, options: dict[str, Any] | None = None) -> Any:
    """Optuna's pruner called ``name`` (one of `PRUNERS`), built with ``options``."""
    import optuna

    options = dict(options or {})
    builders = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    if str(name) not in builders:
        raise UserError(f"hydra.sweeper.pruner={name} is not a pruner; use one of {', '.join(PRUNERS)}")
    try:
        return builders[str(name)](**options)
    except TypeError as exc:
        raise UserError(f"hydra.sweeper.pruner_options={options}: {exc}; see optuna.pruners."
                        f"{builders[str(name)].__name__}") from exc


def open_storage(url: str) -> Any:
    """Optuna's RDB storage with a patient SQLite lock (parallel jobs write to one file)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say which study and trial
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


class OptunaTrialReporter:
    """Trainer callback of a job launched by the Optuna sweeper.

    ``objective`` is the sweep's objective (``eval_f1``): its epoch value (``entry["eval"]["f1"]``)
    is reported with the epoch as the step. Only eval objectives exist at every epoch; for any
    other the trial is never pruned.
    """

    def __init__(self, storage: str, study_name: str, trial_number: int, objective: str, epochs: int,
                 pruner: Any = None) -> None:
        import optuna

        rdb = open_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner)
        trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name(study_name), trial_number)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.number = trial_number
        self.study_name = study_name
        self.objective = objective
        self.pruned_at_epoch: int | None = None
        self.epochs_planned = int(epochs)
        self.trial.set_user_attr(EPOCHS_PLANNED, self.epochs_planned)
        self.trial.set_user_attr(EPOCHS_RUN, 0)
        if not objective.startswith("eval_"):
            log.warning("objective %s is not an eval metric: trial %d reports nothing per epoch and is never "
                        "pruned", objective, trial_number)

    @classmethod
    def from_env(cls, objective: str, epochs: int) -> OptunaTrialReporter | None:
        """The reporter of this job's trial, or None outside an Optuna search."""
        number = os.environ.get(TRIAL_ENV)
        if not number:
            return None
        pruner = json.loads(os.environ.get(PRUNER_ENV) or '{"name": "none"}')
        return cls(os.environ[STORAGE_ENV], os.environ[STUDY_ENV], int(number), objective, epochs,
                   pruner=make_pruner(pruner["name"], pruner.get("options")))

    def record_run(self, run_id: str) -> None:
        self.trial.set_user_attr(MLFLOW_RUN_ID, run_id)

    def on_epoch_end(self, metrics: dict[str, Any], epoch: int) -> None:
        self.trial.set_user_attr(EPOCHS_RUN, epoch)
        evaluated = self.objective.startswith("eval_")
        value = (metrics.get("eval") or {}).get(self.objective[len("eval_"):]) if evaluated else None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch)
        # Pruning after the last planned epoch saves nothing and would cost the trial its test
        # score and its chance to be the best: it completes instead.
        if epoch < self.epochs_planned and self.trial.should_prune():
            from medkit_exp.training.callbacks import StopTraining

            self.pruned_at_epoch = epoch
            self.trial.set_user_attr(PRUNED_AT_EPOCH, epoch)
            raise StopTraining(f"trial {self.number} pruned by Optuna after epoch {epoch} "
                               f"({self.objective}={value:.4f})")
