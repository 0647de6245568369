"""Phase `train_and_test`: the Trainer on the train and dev splits, the best checkpoint on the test
split, the run's plots, and what the run logs beside its metrics (artifacts, the MLflow model)."""

from __future__ import annotations

import gc
import inspect
import json
import os
from pathlib import Path
from typing import Any

from medkit_exp.app.build import Experiment
from medkit_exp.app.report import write_plots
from medkit_exp.app.stopping import TrainingPhases, end_stopped_run
from medkit_exp.training.host_memory import release_free_heap
from medkit_exp.training.phases import (
    ARTIFACT_LOGGING,
    MODEL_LOGGING,
    PLOTS,
    PREPROCESSING,
    TEST_PREDICTION,
    RunPhases,
)
from medkit_exp.training.trainer import Trainer


def train_and_test(experiment: Experiment, phases: RunPhases) -> dict[str, Any]:
    """Train, keep the best epoch, score it on test, draw and log; return the run summary so far."""
    from medkit_exp.training.checkpoint import MODEL_DIR

    tracker, lr_steps = experiment.tracker, LearningRateRecorder()
    trainer, trial = make_trainer(experiment, phases, lr_steps)
    phases.enter(PREPROCESSING)  # then training and dev evaluation (TrainingPhases)
    history = trainer.train()
    summary: dict[str, Any] = {"best_epoch": trainer.state.best_epoch, "precision": trainer.precision,
                               "precision_reason": trainer.precision_reason}
    pruned_at = trial.pruned_at_epoch if trial is not None else None
    if pruned_at is not None:
        summary["pruned_at_epoch"] = pruned_at
        print(trainer.stop_reason, flush=True)
        tracker.set_tags({"sweep.pruned": "true", "sweep.pruned_at_epoch": str(pruned_at)})
    if not experiment.main_process:
        return summary  # rank 0 writes the history, scores the test split and logs
    output_dir = Path(trainer.output_dir)
    (output_dir / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    best_dir, best_epoch = trainer.best_checkpoint, trainer.state.best_epoch
    assert best_dir is not None, "the Trainer checkpoints every epoch and keeps the best"
    best_entry = history[best_epoch - 1] if best_epoch else history[-1]
    summary["best_checkpoint"] = str(best_dir / MODEL_DIR)
    summary.update({f"eval_{k}": v for k, v in (best_entry.get("eval") or {}).items()})
    # The eval_* metrics in MLflow are the last epoch's; the run's result is the best's.
    tracker.log_final_metrics({f"best_eval_{k}": v for k, v in (best_entry.get("eval") or {}).items()})

    trainer.optimizer = trainer.scheduler = None  # free the optimizer's moments before testing
    gc.collect()
    release_free_heap()  # what training freed would otherwise stay in the heap under the test's peak
    test_metrics: dict[str, float] = {}
    if experiment.data.splits["test"] and pruned_at is None:  # a pruned trial's test score would only cost time
        phases.enter(TEST_PREDICTION)  # and the error report (the component says when)
        test_metrics = score_test(experiment.component, trainer, best_dir / MODEL_DIR,
                                  experiment.data.splits["test"], output_dir)
        summary.update({f"test_{k}": v for k, v in test_metrics.items()})
        tracker.log_test_metrics(test_metrics)
    phases.enter(PLOTS)
    summary.update(write_plots(output_dir, history, best_entry, test_metrics,
                               experiment.trainer_cfg.checkpoint_metric, lr_steps.points))
    if tracker.enabled:
        summary.update(log_artifacts(experiment, phases, output_dir, best_dir, best_epoch or 0))
    return summary


def make_trainer(experiment: Experiment, phases: RunPhases, lr_steps: LearningRateRecorder) -> tuple[Trainer, Any]:
    """The Trainer with the run's callbacks, and this job's Optuna trial reporter (or None)."""
    from medkit_exp.training import DefaultPrinterCallback

    cfg, tracker = experiment.cfg, experiment.tracker
    # Before the MLflow callback: a run stopped by a signal ends KILLED with its phase, not as any failure.
    training_phases = TrainingPhases(phases, on_exception=lambda exc: end_stopped_run(phases, tracker, exc))
    callbacks: list[Any] = [lr_steps, training_phases]
    if cfg.callbacks.printer and experiment.main_process:
        callbacks.append(DefaultPrinterCallback(progress_bars=cfg.callbacks.progress_bars))
    if tracker.enabled:
        from medkit_exp.tracking import MLflowCallback

        callbacks.append(MLflowCallback(tracker, log_checkpoints=cfg.tracking.log_checkpoints,
                                        end_run_on_train_end=False))
    trial = optuna_trial(experiment) if experiment.main_process else None
    if trial is not None:
        callbacks.append(trial)  # last: the epoch is logged before a pruning stops the loop
    assert experiment.component is not None
    trainer = Trainer(experiment.component, experiment.trainer_cfg, experiment.data.splits["train"],
                      experiment.data.splits["dev"], metrics_computer=experiment.metrics,
                      lr_scheduler_builder=experiment.scheduler, callbacks=callbacks)
    training_phases.trainer = trainer
    tracker.set_tags({"precision": trainer.precision, "precision.reason": trainer.precision_reason})
    return trainer, trial


def optuna_trial(experiment: Experiment) -> Any:
    """The reporter of this job's Optuna trial when the Optuna sweeper launched it, else None."""
    if not os.environ.get("MEDKIT_EXP_OPTUNA_TRIAL"):
        return None
    from medkit_exp.sweeps.optuna_trial import OptunaTrialReporter

    tracker = experiment.tracker
    trial = OptunaTrialReporter.from_env(str(experiment.cfg.objective or ""), experiment.trainer_cfg.epochs)
    if trial is not None:
        if tracker.run_id:
            trial.record_run(tracker.run_id)
        tracker.set_tags({"sweep.trial": str(trial.number), "sweep.study": trial.study_name})
    return trial


def score_test(component: Any, trainer: Trainer, model_dir: Path, items: list[Any],
               report_dir: Path) -> dict[str, float]:
    """The component's own ``score_test`` (given ``report_dir`` for its error analysis when it
    takes one), else the best checkpoint evaluated like the dev split."""
    scorer = getattr(component, "score_test", None)
    if callable(scorer):
        if "report_dir" in inspect.signature(scorer).parameters:
            return dict(scorer(model_dir, items, report_dir=report_dir))
        return dict(scorer(model_dir, items))
    component.load(model_dir)
    return trainer.evaluate(items)


def log_artifacts(experiment: Experiment, phases: RunPhases, output_dir: Path, best_dir: Path,
                  best_epoch: int) -> dict[str, Any]:
    """The plots, the error analysis and the best checkpoint as artifacts, then the MLflow model."""
    from medkit_exp.app.tracker import log_model
    from medkit_exp.training.checkpoint import MODEL_DIR

    tracker, cfg = experiment.tracker, experiment.cfg
    phases.enter(ARTIFACT_LOGGING)
    for folder in ("plots", "analysis"):
        tracker.log_folder(output_dir / folder, folder)
    tracker.log_best_checkpoint(best_dir)
    if not (cfg.tracking.log_model and callable(getattr(experiment.component, "log_mlflow_model", None))):
        return {}
    phases.enter(MODEL_LOGGING)
    return log_model(experiment.component, tracker, best_dir / MODEL_DIR, best_epoch, cfg.tracking.register_as)


class LearningRateRecorder:
    """A Trainer callback keeping ``(optimizer step, lr)`` of every step log, for the lr curve
    (the Trainer skips the hooks a callback does not define)."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []

    def on_log(self, logs: dict[str, float], global_step: int) -> None:
        if "lr" in logs:
            self.points.append((global_step, float(logs["lr"])))
