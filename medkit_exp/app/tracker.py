"""Start, continue and end the job's MLflow run: its name, tags, params and config artifacts,
and the best checkpoint logged as the component's MLflow model."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.app.build import Experiment
from medkit_exp.app.folds import cv_tags
from medkit_exp.app.model_sources import base_model
from medkit_exp.app.nodes import target_name
from medkit_exp.errors import UserError
from medkit_exp.tracking import NullRun, RunTracker

log = logging.getLogger("medkit_exp")


def start_tracking(experiment: Experiment, resume_run_id: str | None) -> RunTracker:
    """The job's MLflow run, started (or continued: ``resume_run_id``) with its tags and config
    artifacts; a `NullRun` when tracking is off or this process is not rank 0."""
    cfg = experiment.cfg
    if not (cfg.tracking.enabled and experiment.main_process):
        return NullRun()
    from medkit_exp.tracking import TrackedRun, run_name
    from medkit_exp.tracking.secrets import redact, redact_override, redact_text
    from medkit_exp.tracking.stale import fail_dead_runs

    # MLflow prints the run's address with the URI's password in it; the summary prints it redacted.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    tracking, trainer_cfg = cfg.tracking, experiment.trainer_cfg
    overrides = [redact_override(o) for o in hydra_overrides()]
    model = cfg.component.get("model") if isinstance(cfg.component, DictConfig) else None
    name = tracking.run_name or run_name(experiment.choices["component"], str(model) if model else None,
                                         experiment.data.name, overrides)
    run = TrackedRun(
        experiment=tracking.experiment,
        tracking_uri=tracking.uri,
        tracking_root=tracking.root,
        run_name=name,
        params=redact(OmegaConf.to_container(cfg, resolve=True)),
        tags=run_tags(experiment, overrides, model),
        parent_run_id=os.environ.get("MEDKIT_EXP_PARENT_RUN_ID"),
        run_id=resume_run_id,
        required=tracking.required,
        system_metrics=tracking.system_metrics,
        spool_dir=trainer_cfg.output_dir,  # what a down server could not take waits beside the checkpoints
    )
    if run.start() and run.experiment_id:
        from mlflow.tracking import MlflowClient

        for run_id in fail_dead_runs(MlflowClient(), run.experiment_id):
            log.warning("MLflow run %s was left RUNNING by a process that died; marked FAILED", run_id)
    if run.run_id:
        import mlflow

        from medkit_exp.app.resume import write_tracking_file

        write_tracking_file(Path(trainer_cfg.output_dir), run.run_id, redact_text(mlflow.get_tracking_uri()),
                            tracking.experiment)
    run.log_text(OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=True)))), "config.yaml")
    run.log_dict_artifact(experiment.data.summary(), "corpus_summary.json")
    run.log_datasets(experiment.data.mlflow_inputs())
    run.log_model_inputs(sorted({m.model_id for m in experiment.base_models.values() if m.model_id}))
    return run


def run_tags(experiment: Experiment, overrides: list[str], model: Any) -> dict[str, str]:
    """What the run's tags say: component, data and its digest, overrides, code, process, sweep."""
    from medkit_exp.tracking import git_tags
    from medkit_exp.tracking.stale import process_tags
    from medkit_exp.tracking.tags import base_model_tags

    cfg, data = experiment.cfg, experiment.data
    tags = {
        "component": experiment.choices["component"],
        "component.target": target_name(cfg.component) or "",
        "dataset.name": data.name,
        "dataset.digest": data.digest(),
        "dataset.source": data.source,
        "hydra.overrides": " ".join(overrides) or "(none)",
        "checkpoint.dir": str(Path(experiment.trainer_cfg.output_dir).resolve()),
        # What the UI shows in its Source column (MLflow would put the path of __main__.py).
        "mlflow.source.name": "python -m medkit_exp",
        "mlflow.source.type": "LOCAL",
    }
    if model:
        tags["model"] = str(model)
    base = base_model(experiment.base_models)
    if base is not None:  # lineage: the URI as written, what it named, the run that made the model
        tags.update(base_model_tags(base.given, base.concrete, base.source_run_id))
    tags.update(cv_tags(cfg))  # a cross-validation job's fold: what the CV parent groups and pools by
    tags.update(git_tags(Path(__file__).resolve().parent))
    tags.update(process_tags())
    if os.environ.get("MEDKIT_EXP_SWEEP_ID"):
        from medkit_exp.sweeps.summary import configuration_of

        tags["sweep.id"] = os.environ["MEDKIT_EXP_SWEEP_ID"]
        tags["sweep.configuration"] = configuration_of(overrides)  # seed and fold left out: jobs to average
    return tags


def hydra_overrides() -> list[str]:
    """The job's command-line overrides (a sweep's resume override left out); none outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    from medkit_exp.sweeps.resume import is_resume_override

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not is_resume_override(o)]


def log_model(component: Any, tracker: RunTracker, model_dir: Path, epoch: int,
              register_as: str | None) -> dict[str, Any]:
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
    except Exception as exc:  # a component's own logging code can raise anything: reported as one line
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
