"""Phase `train_and_test`: the Trainer on the train and dev splits, the best checkpoint on the test
split, the run's plots, and what the run logs beside its metrics (artifacts, the MLflow model)."""

from __future__ import annotations

import gc
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

from medkit_exp.app.build import Experiment
from medkit_exp.app.folds import cv_fold, mark_fold
from medkit_exp.app.report import write_plots
from medkit_exp.app.stopping import TrainingPhases, end_stopped_run
from medkit_exp.text.predictions import PREDICTIONS_DIR, predictions_file
from medkit_exp.training.host_memory import release_free_heap
from medkit_exp.training.phases import (
    ARTIFACT_LOGGING,
    MODEL_LOGGING,
    PLOTS,
    PREPROCESSING,
    TEST_PREDICTION,
    RunPhases,
)
from medkit_exp.training.protocols import item_values_of
from medkit_exp.training.trainer import Trainer

log = logging.getLogger("medkit_exp")


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
    if trainer.initial_eval:  # trainer.eval_before_training: the dev scores of the model as given
        summary.update({f"initial_eval_{k}": v for k, v in trainer.initial_eval.items()})
        tracker.log_final_metrics({f"initial_eval_{k}": v for k, v in trainer.initial_eval.items()})

    trainer.optimizer = trainer.scheduler = None  # free the optimizer's moments before testing
    gc.collect()
    release_free_heap()  # what training freed would otherwise stay in the heap under the test's peak
    test_metrics: dict[str, float] = {}
    fold = cv_fold(experiment.cfg)  # a cross-validation job predicts its held-out fold even without a test split
    if (experiment.data.splits["test"] or fold is not None) and pruned_at is None:  # a pruned trial: only cost
        phases.enter(TEST_PREDICTION)  # and the error report (the component says when)
        if experiment.data.splits["test"]:
            test_metrics = score_test(experiment.component, trainer, best_dir / MODEL_DIR,
                                      experiment.data.splits["test"], output_dir,
                                      predictions_path=predictions_file(output_dir, "test"))
            summary.update({f"test_{k}": v for k, v in test_metrics.items()})
            tracker.log_test_metrics(test_metrics)
        summary.update(store_predictions(experiment, trainer, best_dir / MODEL_DIR, output_dir))
    phases.enter(PLOTS)
    summary.update(write_plots(output_dir, history, best_entry, test_metrics,
                               experiment.trainer_cfg.checkpoint_metric, lr_steps.points))
    if tracker.enabled:
        summary.update(log_artifacts(experiment, phases, output_dir, best_dir, best_epoch or 0))
    from medkit_exp.app.model_card import write_model_card

    summary.update(write_model_card(experiment, summary, best_dir / MODEL_DIR, output_dir))
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
               report_dir: Path | None, predictions_path: Path | None = None) -> dict[str, float]:
    """The component's own ``score_test`` (given ``report_dir`` for its error analysis and
    ``predictions_path`` for its per-document predictions, each when it takes it), else the best
    checkpoint evaluated like the dev split (its records written at ``predictions_path`` when the
    metrics computer has ``item_values``)."""
    scorer = getattr(component, "score_test", None)
    if callable(scorer):
        parameters = inspect.signature(scorer).parameters
        extra = {"report_dir": report_dir, "predictions_path": predictions_path}
        return dict(scorer(model_dir, items, **{k: v for k, v in extra.items() if k in parameters and v is not None}))
    component.load(model_dir)
    item_values = item_values_of(trainer.metrics_computer) if predictions_path is not None else None
    if item_values is None or predictions_path is None:
        return trainer.evaluate(items)
    from medkit_exp.app.item_predictions import evaluate_item_values

    return evaluate_item_values(trainer, items, item_values, predictions_path)


def store_predictions(experiment: Experiment, trainer: Trainer, model_dir: Path, output_dir: Path) -> dict[str, Any]:
    """After the test split: the dev split's predictions (scored once more with the best checkpoint,
    ``evaluation.dev_predictions``; a cross-validation job's, its out-of-fold predictions, carry
    their ``fold``) and the test scores' intervals (logged); the summary's entries."""
    from medkit_exp.app.evaluation import evaluation_settings, no_predictions, score_intervals, stores_predictions

    test_path, fold = predictions_file(output_dir, "test"), cv_fold(experiment.cfg)
    if not (stores_predictions(experiment.component, trainer.metrics_computer)
            and (test_path.is_file() or fold is not None)):
        no_predictions(experiment.component, trainer.metrics_computer, experiment.tracker)
        return {}
    evaluation = evaluation_settings(experiment.cfg)
    dev = experiment.data.splits["dev"]
    if evaluation.dev_predictions and dev:
        dev_path = predictions_file(output_dir, "dev")
        score_test(experiment.component, trainer, model_dir, dev, None, dev_path)
        if fold is not None and dev_path.is_file():
            mark_fold(dev_path, fold)  # the out-of-fold predictions say which fold's model made them
    if not test_path.is_file():
        return {}
    intervals = score_intervals(test_path, evaluation)
    if intervals is None:
        return {}
    experiment.tracker.log_test_metrics(intervals.metrics())
    return intervals.summary() | {"interval_s": round(intervals.seconds, 3)}


def log_artifacts(experiment: Experiment, phases: RunPhases, output_dir: Path, best_dir: Path,
                  best_epoch: int) -> dict[str, Any]:
    """The plots, the error analysis and the best checkpoint as artifacts, then the MLflow model."""
    from medkit_exp.app.evaluation import log_prediction_tables
    from medkit_exp.app.tracker import log_model
    from medkit_exp.training.checkpoint import MODEL_DIR

    tracker, cfg = experiment.tracker, experiment.cfg
    phases.enter(ARTIFACT_LOGGING)
    for folder in ("plots", "analysis", PREDICTIONS_DIR):
        tracker.log_folder(output_dir / folder, folder)
    log_prediction_tables(tracker, output_dir / PREDICTIONS_DIR, experiment.data.splits)
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
