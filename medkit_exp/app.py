"""One experiment run: config -> data -> component -> Trainer -> test scores -> objective.

`run(cfg)` is what `python -m medkit_exp` calls for each job (one job, or each job of a
sweep). It returns the objective metric so that Hydra's sweepers can optimise it.

Every component, data set, metrics computer and scheduler goes through the same path: its
config node names what builds it (``_target_``), `medkit_exp.build` checks and builds it, and
what a component offers beyond the `TrainableComponent` protocol (its own test scoring, an
MLflow model, the summary's metrics; see `medkit_exp.training.protocols.ExperimentHooks`)
is looked up on the component, never decided by its name.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.build import build_node, check_node, target_name
from medkit_exp.errors import UserError
from medkit_exp.output_redaction import redact_process_output
from medkit_exp.training.phases import (
    ARTIFACT_LOGGING,
    DEV_EVALUATION,
    ENDING,
    MODEL_LOGGING,
    PLOTS,
    PREPROCESSING,
    SETUP,
    TEST_PREDICTION,
    TRAINING,
    RunPhases,
    mark_reported,
    signal_name,
    signal_of,
    stop_exception,
)
from medkit_exp.training.host_memory import release_free_heap, set_malloc_mmap_threshold

log = logging.getLogger("medkit_exp")

BUILT_GROUPS = ("data", "component", "metrics", "scheduler")


# ---------------------------------------------------------------------------- config
def trainer_config(trainer_node: Any):
    """The `TrainerConfig` of the ``trainer`` node, validated."""
    from medkit_exp.training.config import TrainerConfig

    trainer_cfg = OmegaConf.to_object(trainer_node)
    assert isinstance(trainer_cfg, TrainerConfig)
    try:
        trainer_cfg.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return trainer_cfg


def check_tracking_settings(tracking: Any) -> None:
    """``tracking.register_as`` needs a tracked run that logs its model."""
    name = tracking.register_as
    if not name:
        return
    if not tracking.enabled:
        raise UserError(f"tracking.register_as={name} needs tracking; drop tracking=none or register_as")
    if not tracking.log_model:
        raise UserError(f"tracking.register_as={name} registers the logged model; set tracking.log_model=true")


def group_choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for ``group`` (``hf_ner``), else the short name of its target."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    except Exception:  # not running under Hydra
        pass
    target = target_name(cfg.get(group))
    return target.rsplit(".", 1)[-1] if target else "none"


def build_component(node: Any, choice: str, train_data: list[Any], device: Any) -> Any:
    """The trainable component of ``node``, checked against the `TrainableComponent` protocol."""
    from medkit_exp.training.protocols import missing_protocol_methods

    component = build_node("component", node, choice, device=device, train_data=train_data)
    missing = missing_protocol_methods(component)
    if missing:
        raise UserError(f"component={choice}: {target_name(node)} returned a {type(component).__name__}, which is "
                        f"not a TrainableComponent (no {', '.join(missing)}); return an object with load, "
                        "create_optimizer, preprocess, collate, forward and save")
    return component


def build_metrics(node: Any, choice: str, component: Any) -> Any:
    metrics = build_node("metrics", node, choice, component=component)
    if metrics is not None and not all(callable(getattr(metrics, m, None)) for m in ("prepare_batch", "compute")):
        raise UserError(f"metrics={choice}: {target_name(node)} returned a {type(metrics).__name__}, which is not a "
                        "MetricsComputer; return an object with prepare_batch and compute")
    return metrics


def build_scheduler(node: Any, choice: str) -> Any:
    builder = build_node("scheduler", node, choice)
    if builder is not None and not callable(builder):
        raise UserError(f"scheduler={choice}: {target_name(node)} gave a {type(builder).__name__}, not a builder; "
                        "name a torch scheduler class with _partial_: true, or a function of the optimizer")
    return builder


# ---------------------------------------------------------------------------- the run
def run(cfg: DictConfig) -> float | None:
    """Train, evaluate on test, track; return ``cfg.objective`` from the run summary.

    The run goes through named phases (`medkit_exp.training.phases`); SIGINT, SIGTERM and SIGHUP stop
    it cleanly in any of them (its MLflow run KILLED, one line, `KeyboardInterrupt` or
    `SystemExit` with 128 + the signal's number), and the caller's handlers come back after."""
    started = time.perf_counter()
    redact_process_output()  # no credential in a line printed or logged from here on
    trainer_cfg = trainer_config(cfg.trainer)  # fail on bad settings before anything heavy is imported
    for group in BUILT_GROUPS:
        check_node(group, cfg.get(group))
    check_tracking_settings(cfg.tracking)
    try:
        set_malloc_mmap_threshold(cfg.malloc_mmap_threshold_kib)  # before training allocates anything
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.get("objective_mode") not in (None, "max", "min"):
        raise UserError(f"objective_mode={cfg.objective_mode} must be max, min or null (the sweeper's direction, "
                        "else trainer.checkpoint_mode)")
    from medkit_exp.tracking.sweep_resume import prepare_job

    job = prepare_job(cfg, trainer_cfg)  # in a resumed sweep: skip, resume or re-run this job
    if job.skipped:
        return job.objective
    from medkit_exp.training.distributed import DistributedContext

    torch_run = DistributedContext.from_env()
    # A clean stop in every phase; under torchrun the launcher owns signals (the Trainer does the same).
    with RunPhases(handle_signals=not torch_run.enabled) as phases:
        return _run_phases(cfg, trainer_cfg, phases, torch_run.is_main, started)


def _run_phases(cfg: DictConfig, trainer_cfg: Any, phases: RunPhases, main_process: bool, started: float
                ) -> float | None:
    """`run` from the data on, phase by phase (`medkit_exp.training.phases`); under torchrun, rank 0
    (``main_process``) alone tracks and reports."""
    import torch

    from medkit_exp.datasets import ExperimentData
    from medkit_exp.training.trainer import resolve_device, seed_everything

    phases.enter(SETUP)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    choices = {group: group_choice(cfg, group) for group in BUILT_GROUPS}
    data = ExperimentData(build_node("data", cfg.data, choices["data"]), name=choices["data"])
    if main_process:
        print(data.describe(), flush=True)

    seed_everything(trainer_cfg.seed)  # a new classification head is drawn from the seed too
    device = resolve_device(trainer_cfg.device)
    component = build_component(cfg.component, choices["component"], data.splits["train"], device)
    metrics = build_metrics(cfg.metrics, choices["metrics"], component)
    scheduler = build_scheduler(cfg.scheduler, choices["scheduler"])
    if cfg.tracking.register_as and not callable(getattr(component, "log_mlflow_model", None)):
        raise UserError(f"tracking.register_as={cfg.tracking.register_as}: component={choices['component']} "
                        "logs no MLflow model (it has no log_mlflow_model); drop register_as")

    resume_run_id = None
    if trainer_cfg.resume_from:
        from medkit_exp.resume import resolve_resume

        point = resolve_resume(cfg.tracking, trainer_cfg.resume_from, Path(trainer_cfg.output_dir))
        trainer_cfg.output_dir, trainer_cfg.resume_from = str(point.output_dir), str(point.checkpoint_dir)
        resume_run_id = point.run_id
        print(f"Resuming from {point.checkpoint_dir}"
              + (f" in MLflow run {resume_run_id}" if resume_run_id and cfg.tracking.enabled else ""), flush=True)

    shown = (getattr(component, "summary_metrics", None), getattr(component, "test_note", ""))
    tracker = None
    try:
        if cfg.tracking.enabled and main_process:
            with phases.deferred():  # a signal waits until the run exists, then ends it
                tracker = _make_tracker(cfg, choices, data, trainer_cfg, resume_run_id)
        summary = _train_and_test(cfg, trainer_cfg, data, component, metrics, scheduler, tracker, phases)
        summary["phase_seconds"] = {name: round(s, 1) for name, s in phases.timings().items()}
        if tracker is not None:  # where the run's time went, comparable across runs
            tracker.log_final_metrics({f"phase_s/{name.replace(' ', '_')}": s
                                       for name, s in summary["phase_seconds"].items()})
        phases.enter(ENDING)
        with phases.deferred():  # the run ends FINISHED first: a signal must not leave it RUNNING
            if tracker is not None:
                tracker.finish()
    except BaseException as exc:
        signum = _stop_signal(phases, exc)
        if signum is None:
            if tracker is not None:
                tracker.fail(exc)
            raise
        _end_stopped_run(phases, tracker, exc)
        _print_stop(phases, signum, tracker, Path(trainer_cfg.output_dir))
        if signal_of(exc) != signum:  # a library turned the interruption into an error of its own
            raise mark_reported(stop_exception(signum)) from exc
        mark_reported(exc)
        raise
    finally:
        del component
        gc.collect()  # sequential sweep jobs: free the previous job's model before the next
    summary["wall_time_s"] = round(time.perf_counter() - started, 1)
    if main_process:
        _print_summary(cfg, summary, tracker, *shown)
    objective = summary.get(cfg.objective)
    if cfg.objective and objective is None and main_process:
        log.warning("objective %r is not in the run summary (keys: %s)", cfg.objective, sorted(summary))
    return objective


def _train_and_test(cfg, trainer_cfg, data, component, metrics, scheduler, tracker, phases) -> dict[str, Any]:
    from medkit_exp.training import DefaultPrinterCallback, Trainer
    from medkit_exp.training.checkpoint import MODEL_DIR
    from medkit_exp.training.distributed import DistributedContext

    trainer_is_main = DistributedContext.from_env().is_main
    lr_steps = LearningRateRecorder()
    # Before the MLflow callback: a run stopped by a signal ends KILLED with its phase, not as any failure.
    training_phases = TrainingPhases(phases, on_exception=lambda exc: _end_stopped_run(phases, tracker, exc))
    callbacks: list[Any] = [lr_steps, training_phases]
    if cfg.callbacks.printer and trainer_is_main:
        callbacks.append(DefaultPrinterCallback(progress_bars=cfg.callbacks.progress_bars))
    if tracker is not None:
        from medkit_exp.tracking import MLflowCallback

        callbacks.append(MLflowCallback(tracker, log_checkpoints=cfg.tracking.log_checkpoints,
                                        end_run_on_train_end=False))
    trial = _optuna_trial(cfg, trainer_cfg, tracker) if trainer_is_main else None
    if trial is not None:
        callbacks.append(trial)  # last: the epoch is logged before a pruning stops the loop
    trainer = Trainer(component, trainer_cfg, data.splits["train"], data.splits["dev"], metrics_computer=metrics,
                      lr_scheduler_builder=scheduler, callbacks=callbacks)
    training_phases.trainer = trainer
    if tracker is not None:  # what trainer.precision=auto chose
        tracker.set_tags({"precision": trainer.precision, "precision.reason": trainer.precision_reason})
    phases.enter(PREPROCESSING)  # then training and dev evaluation (TrainingPhases)
    history = trainer.train()
    summary: dict[str, Any] = {"best_epoch": trainer.state.best_epoch, "precision": trainer.precision,
                               "precision_reason": trainer.precision_reason}
    pruned = trial is not None and trial.pruned_at_epoch is not None
    if pruned:
        summary["pruned_at_epoch"] = trial.pruned_at_epoch
        print(trainer.stop_reason, flush=True)
        if tracker is not None:
            tracker.set_tags({"sweep.pruned": "true", "sweep.pruned_at_epoch": str(trial.pruned_at_epoch)})
    if not trainer_is_main:
        return summary  # rank 0 writes the history, scores the test split and logs
    output_dir = Path(trainer.output_dir)
    (output_dir / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")

    best_dir = trainer.best_checkpoint
    best_epoch = trainer.state.best_epoch
    best_entry = history[best_epoch - 1] if best_epoch else history[-1]
    summary["best_checkpoint"] = str(best_dir / MODEL_DIR)
    summary.update({f"eval_{k}": v for k, v in (best_entry.get("eval") or {}).items()})
    if tracker is not None:  # the eval_* metrics in MLflow are the last epoch's; the run's result is the best's
        tracker.log_final_metrics({f"best_eval_{k}": v for k, v in (best_entry.get("eval") or {}).items()})

    trainer.optimizer = trainer.scheduler = None  # free the optimizer's moments before testing
    gc.collect()
    release_free_heap()  # what training freed would otherwise stay in the heap under the test's peak
    test_metrics: dict[str, float] = {}
    if data.splits["test"] and not pruned:  # a pruned trial's test score would only cost time
        phases.enter(TEST_PREDICTION)  # and the error report (the component says when)
        test_metrics = _score_test(component, trainer, best_dir / MODEL_DIR, data.splits["test"], output_dir)
        summary.update({f"test_{k}": v for k, v in test_metrics.items()})
        if tracker is not None:
            tracker.log_test_metrics(test_metrics)
    phases.enter(PLOTS)
    summary.update(_write_plots(output_dir, history, best_entry, test_metrics, trainer_cfg.checkpoint_metric,
                                lr_steps.points))
    if tracker is not None:
        phases.enter(ARTIFACT_LOGGING)
        for folder in ("plots", "analysis"):
            tracker.log_folder(output_dir / folder, folder)
        tracker.log_best_checkpoint(best_dir)
        if cfg.tracking.log_model and callable(getattr(component, "log_mlflow_model", None)):
            phases.enter(MODEL_LOGGING)
            summary.update(_log_model(component, tracker, best_dir / MODEL_DIR, best_epoch or 0,
                                      cfg.tracking.register_as))
    return summary


class TrainingPhases:
    """Trainer callback: tells `RunPhases` when training is in its dev evaluation, and a stop signal
    the Trainer's own handlers received (set ``trainer``); ``on_exception`` gets what stopped it."""

    def __init__(self, phases: Any, on_exception: Any) -> None:
        self.phases = phases
        self.trainer: Any = None
        self._on_exception = on_exception

    def _note_signal(self) -> None:
        received = getattr(self.trainer, "stop_signal", None)
        if received is not None:
            self.phases.note_signal(received)  # in the phase it came in, before the next one starts

    def on_train_begin(self, config: Any) -> None:
        self._note_signal()
        self.phases.enter(TRAINING)

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        self._note_signal()
        self.phases.enter(DEV_EVALUATION if phase == "eval" else TRAINING)

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        self._note_signal()

    def on_evaluate(self, metrics: dict[str, float], epoch: int) -> None:
        self._note_signal()
        self.phases.enter(TRAINING)  # the epoch's logging and checkpoint

    def on_exception(self, exception: BaseException) -> None:
        self._note_signal()
        self._on_exception(exception)


def _stop_signal(phases: Any, exc: BaseException) -> int | None:
    """The stop signal that ended the run (``exc`` is its interruption, or what a library made of
    it), else None; always None when the run does not handle signals (torchrun)."""
    if not phases.handling:
        return None
    return phases.signal if phases.signal is not None else signal_of(exc)


def _end_stopped_run(phases: Any, tracker: Any, exc: BaseException) -> None:
    """When a stop signal ended the run: end its MLflow run KILLED, tagged with the signal and the
    phase (sent, or kept in the spool file), once; any later signal stops at once."""
    signum = _stop_signal(phases, exc)
    if signum is None:
        return
    phases.stopping()
    if tracker is not None:
        tracker.fail(exc, stop_signal=signal_name(signum), phase=phases.stopped_in or phases.current)


def _print_stop(phases: Any, signum: int, tracker: Any, checkpoint_dir: Path) -> None:
    """The one line a stopped run prints: the signal, the phase, how its MLflow run ended, its checkpoints."""
    phase = phases.stopped_in or phases.current
    if tracker is not None and tracker.run_id:
        ended = "FINISHED" if phase == ENDING else "KILLED"
        outcome = f"MLflow run {tracker.run_id} ended as {ended}"
    else:
        outcome = "stopped"
    kept = (f"checkpoints kept in {checkpoint_dir}" if any(checkpoint_dir.glob("checkpoint_*"))
            else "no checkpoint written yet")
    unsent = f"; {tracker.unsent_summary}" if tracker is not None and tracker.unsent_summary else ""
    print(f"medkit_exp: {signal_name(signum)} received during {phase}: {outcome}; {kept}{unsent}",
          file=sys.stderr, flush=True)


def _optuna_trial(cfg: DictConfig, trainer_cfg: Any, tracker: Any) -> Any:
    """The reporter of this job's Optuna trial when the Optuna sweeper launched it, else None."""
    if not os.environ.get("MEDKIT_EXP_OPTUNA_TRIAL"):
        return None
    from medkit_exp.tracking.optuna_trial import OptunaTrialReporter

    trial = OptunaTrialReporter.from_env(str(cfg.objective or ""), trainer_cfg.epochs)
    if trial is not None and tracker is not None:
        if tracker.run_id:
            trial.record_run(tracker.run_id)
        tracker.set_tags({"sweep.trial": str(trial.number), "sweep.study": trial.study_name})
    return trial


def _score_test(component: Any, trainer: Any, model_dir: Path, items: list[Any], report_dir: Path) -> dict[str, float]:
    """The component's own ``score_test`` (given ``report_dir`` for its error analysis when it
    takes one), else the best checkpoint evaluated like the dev split."""
    import inspect

    score_test = getattr(component, "score_test", None)
    if callable(score_test):
        if "report_dir" in inspect.signature(score_test).parameters:
            return dict(score_test(model_dir, items, report_dir=report_dir))
        return dict(score_test(model_dir, items))
    component.load(model_dir)
    return trainer.evaluate(items)


class LearningRateRecorder:
    """A Trainer callback keeping ``(optimizer step, lr)`` of every step log, for the lr curve
    (the Trainer skips the hooks a callback does not define)."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []

    def on_log(self, logs: dict[str, float], global_step: int) -> None:
        if "lr" in logs:
            self.points.append((global_step, float(logs["lr"])))


def _write_plots(output_dir: Path, history: list[dict[str, Any]], best_entry: dict[str, Any],
                 test_metrics: dict[str, float], tracked_metric: str, lr_steps: list[tuple[int, float]]) -> dict[str, str]:
    """Learning curves and per-label scores as PNG under ``output_dir/plots``; a failure only warns."""
    from medkit_exp.training import plots

    folder = output_dir / "plots"
    try:
        plots.learning_curves(history, tracked_metric, folder / "learning_curves.png", lr_steps)
        by_split = {"dev": plots.per_label_scores(best_entry.get("eval") or {}),
                    "test": plots.per_label_scores(test_metrics)}
        plots.per_label_chart(by_split, folder / "per_label_scores.png")
    except Exception as exc:  # noqa: BLE001 - pictures are a help, never a reason to lose a run
        log.warning("Could not draw the run's plots: %s", exc)
    shown = {"plots": str(folder)}
    if (output_dir / "analysis" / "errors.html").is_file():
        shown["error_analysis"] = str(output_dir / "analysis" / "errors.html")
    return shown


def _log_model(component: Any, tracker: Any, model_dir: Path, epoch: int, register_as: str | None) -> dict[str, Any]:
    """Log the best checkpoint as the component's MLflow model; only ``register_as`` makes a failure fatal."""
    import mlflow

    if tracker.offline and not tracker.wait_until_online():
        reason = "the tracking server is unreachable; send_unsent uploads the best checkpoint later"
        if register_as:
            raise UserError(f"tracking.register_as={register_as}: the model could not be registered ({reason})")
        log.warning("The best checkpoint was not logged as an MLflow model: %s", reason)
        return {"model_uri": f"not logged ({reason})"}
    active = mlflow.active_run()
    try:
        if active is None or active.info.run_id != tracker.run_id:
            raise RuntimeError(f"run {tracker.run_id} is not the active MLflow run")
        logged = component.log_mlflow_model(model_dir, step=epoch, register_as=register_as)
    except Exception as exc:  # noqa: BLE001 - reported below, as one line
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if register_as:
            raise UserError(f"tracking.register_as={register_as}: the model could not be logged or registered "
                            f"({reason})") from exc
        log.warning("The best checkpoint was not logged as an MLflow model: %s", reason)
        return {"model_uri": f"not logged ({reason})"}
    summary = {"model_uri": logged.model_uri}
    if getattr(logged, "seconds", None) is not None:
        summary["model_log_s"] = logged.seconds
        log.info("Logged model %s in %.1f s", logged.model_uri, logged.seconds)
    if getattr(logged, "registered_uri", None):
        summary["registered_model"] = logged.registered_uri
    return summary


# ---------------------------------------------------------------------------- tracking
def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        from medkit_exp.tracking.sweep_resume import is_resume_override

        return [o for o in HydraConfig.get().overrides.task if not is_resume_override(o)]
    except Exception:  # not running under Hydra
        return []


def _make_tracker(cfg: DictConfig, choices: dict[str, str], data: Any, trainer_cfg: Any, resume_run_id: str | None):
    """Start (or continue) the job's MLflow run, with its tags and config artifacts."""
    from medkit_exp.tracking import TrackedRun, git_tags, run_name
    from medkit_exp.tracking.stale import fail_dead_runs, process_tags

    from medkit_exp.tracking.secrets import redact, redact_override, redact_text

    # MLflow prints the run's address with the URI's password in it; the summary prints it redacted.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    tracking = cfg.tracking
    overrides = [redact_override(o) for o in _hydra_overrides()]
    model = cfg.component.get("model") if isinstance(cfg.component, DictConfig) else None
    tags = {
        "component": choices["component"],
        "component.target": target_name(cfg.component) or "",
        "dataset.name": data.name,
        "dataset.digest": data.digest(),
        "dataset.source": data.source,
        "hydra.overrides": " ".join(overrides) or "(none)",
        "checkpoint.dir": str(Path(trainer_cfg.output_dir).resolve()),
        # What the UI shows in its Source column (MLflow would put the path of __main__.py).
        "mlflow.source.name": "python -m medkit_exp",
        "mlflow.source.type": "LOCAL",
    }
    if model:
        tags["model"] = str(model)
    tags.update(git_tags(Path(__file__).resolve().parent))
    tags.update(process_tags())
    if os.environ.get("MEDKIT_EXP_SWEEP_ID"):
        from medkit_exp.tracking.sweep_summary import configuration_of

        tags["sweep.id"] = os.environ["MEDKIT_EXP_SWEEP_ID"]
        tags["sweep.configuration"] = configuration_of(overrides)  # the seed left out: jobs to average
    name = tracking.run_name or run_name(choices["component"], str(model) if model else None, data.name, overrides)
    run = TrackedRun(
        experiment=tracking.experiment,
        tracking_uri=tracking.uri,
        tracking_root=tracking.root,
        run_name=name,
        params=redact(OmegaConf.to_container(cfg, resolve=True)),
        tags=tags,
        parent_run_id=os.environ.get("MEDKIT_EXP_PARENT_RUN_ID"),
        run_id=resume_run_id,
        required=tracking.required,
        system_metrics=tracking.system_metrics,
        spool_dir=trainer_cfg.output_dir,  # what a down server could not take waits beside the checkpoints
    )
    if run.start():
        from mlflow.tracking import MlflowClient

        for run_id in fail_dead_runs(MlflowClient(), run.experiment_id):
            log.warning("MLflow run %s was left RUNNING by a process that died; marked FAILED", run_id)
    if run.run_id:
        import mlflow

        from medkit_exp.resume import write_tracking_file

        write_tracking_file(Path(trainer_cfg.output_dir), run.run_id, redact_text(mlflow.get_tracking_uri()),
                            tracking.experiment)
    run.log_text(OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=True)))), "config.yaml")
    run.log_dict_artifact(data.summary(), "corpus_summary.json")
    run.log_datasets(data.mlflow_inputs())
    return run


_MAX_SHOWN = 8


def _shown_metrics(summary: dict[str, Any], shown: Any) -> list[str]:
    """The component's ``summary_metrics``, else the scalar eval metrics (not per label), at most eight."""
    if shown:
        return list(shown)
    from medkit_exp.training.callbacks import is_per_label

    names = [k[len("eval_"):] for k, v in summary.items() if k.startswith("eval_") and isinstance(v, (int, float))]
    return [n for n in names if not is_per_label(n)][:_MAX_SHOWN]


def _print_summary(cfg: DictConfig, summary: dict[str, Any], tracker, shown: Any = None, note: str = "") -> None:
    keys = _shown_metrics(summary, shown)

    def fmt(prefix: str) -> str:
        return ", ".join(f"{k}={summary[prefix + k]:.4f}" for k in keys if isinstance(summary.get(prefix + k), (int, float)))

    lines = [
        "",
        "== medkit_exp run summary ==",
        f"best epoch   : {summary.get('best_epoch')}",
        f"eval (dev)   : {fmt('eval_')}",
        f"test         : {fmt('test_')}" + (f"  ({note})" if note and any(k.startswith('test_') for k in summary) else ""),
        f"precision    : {summary.get('precision')}" + (f" ({summary['precision_reason']})"
                                                          if summary.get("precision_reason") != "asked" else ""),
        f"checkpoint   : {summary['best_checkpoint']}",
        f"plots        : {summary.get('plots')}",
        f"wall time    : {summary['wall_time_s']} s"
        + (" (" + ", ".join(f"{name} {s:g}" for name, s in summary["phase_seconds"].items() if s >= 0.1) + ")"
           if summary.get("phase_seconds") else ""),
    ]
    if summary.get("error_analysis"):
        lines.append(f"errors       : {summary['error_analysis']}"
                     + (" (artifact analysis/errors.html)" if tracker is not None else ""))
    if tracker is not None:
        lines.append(f"MLflow run   : {tracker.run_id} (experiment {cfg.tracking.experiment!r})")
        lines.append(f"see it with  : {tracker.ui_command()}")
        if "model_uri" in summary:
            lines.append(f"MLflow model : {summary['model_uri']}")
        if "registered_model" in summary:
            lines.append(f"registered as: {summary['registered_model']}")
        if tracker.unsent_summary:
            lines.append(f"NOT SENT     : {tracker.unsent_summary}")
    print("\n".join(lines), file=sys.stdout, flush=True)
