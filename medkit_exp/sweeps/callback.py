"""Group the runs of a Hydra multirun under one MLflow parent run.

Hydra calls `on_multirun_start` once in the launching process; the parent run's id is
passed to every job through an environment variable (inherited by joblib workers too),
and each job's `MLflowCallback` starts its run with that parent. At the end the parent
records the best job by the sweep's objective, and the configurations ranked by their mean
objective over seeds (`medkit_exp.sweeps.summary`). Hydra skips `on_multirun_end` when a job
raises, so an exit hook marks the parent FAILED in that case instead of leaving it RUNNING.
The same command run again with the same sweep folder (or ``+sweep.resume=<parent run id>``)
attaches to the same parent run and each job skips, resumes or re-runs itself
(`medkit_exp.sweeps.resume`).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from typing import TYPE_CHECKING, Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medkit_exp.sweeps.jobs import PARENT_ENV, SWEEP_ENV, failed_jobs, run_objective

if TYPE_CHECKING:
    from medkit_exp.sweeps.summary import ConfigurationScore

log = logging.getLogger("medkit_exp.sweep")

# Failed jobs of the last sweep this process launched: (job folder, reason). The CLI reads it
# after the sweep to exit non-zero; each launcher's workers leave their marker files behind.
LAST_SWEEP_FAILURES: list[tuple[str, str]] = []
# The stop signal (SIGTERM...) that ended this process's sweep, set by the CLI: the parent run ends KILLED.
STOPPED_BY_SIGNAL: list[str] = []


def objective_maximized(config: DictConfig) -> bool:
    """Whether a higher ``objective`` is better: ``objective_mode`` (max or min) when set, else
    the sweeper's ``direction`` (Optuna), else ``trainer.checkpoint_mode`` when the objective is
    the checkpoint metric's eval value (``eval_mae`` with ``checkpoint_metric=mae``), else max."""
    mode = config.get("objective_mode")
    if mode:
        return str(mode) == "max"
    direction = config.hydra.sweeper.get("direction") if "hydra" in config else None
    if direction:
        return "min" not in str(direction)
    trainer = config.get("trainer") or {}
    if config.get("objective") == f"eval_{trainer.get('checkpoint_metric')}":
        return trainer.get("checkpoint_mode", "max") == "max"
    return True


class MLflowSweepCallback(Callback):
    """Hydra callback: one parent MLflow run per multirun (imports mlflow only in multiruns)."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self._ended = False
        self._resumed = False  # attached to the parent run of an earlier, interrupted attempt

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from medkit_exp.sweeps import resume as sweep_resume

        if not config.tracking.enabled:
            if sweep_resume.asked_parent(config) is not None:
                _refuse(f"+{sweep_resume.RESUME_KEY} continues a tracked sweep; drop tracking=none")
            return
        from mlflow.tracking import MlflowClient

        from medkit_exp.tracking.store import setup_tracking

        experiment_id = setup_tracking(config.tracking.uri, config.tracking.experiment, config.tracking.root)
        client = MlflowClient()
        from medkit_exp.errors import UserError

        try:
            earlier = sweep_resume.earlier_parent(client, config, experiment_id)
        except UserError as exc:
            _refuse(str(exc))
        if earlier is not None:
            sweep_resume.attach_parent(client, earlier, str(config.hydra.sweep.dir))
            self.parent_run_id, sweep_id, self._resumed = earlier.info.run_id, earlier.data.tags["sweep.id"], True
            os.environ[sweep_resume.RESUMED_ENV] = "1"
        else:
            sweep_id = time.strftime("%Y%m%d-%H%M%S")
            from medkit_exp.tracking.secrets import redact_override

            overrides = " ".join(redact_override(o) for o in config.hydra.overrides.task) or "(none)"
            run = client.create_run(
                experiment_id,
                run_name=f"sweep-{sweep_id}",
                tags={"sweep.id": sweep_id, "sweep.overrides": overrides, "sweep.objective": config.objective,
                      "sweep.sweeper": config.hydra.sweeper._target_.rsplit(".", 1)[-1]},
            )
            self.parent_run_id = run.info.run_id
        sweep_resume.record_parent(str(config.hydra.sweep.dir), self.parent_run_id, config.tracking.experiment)
        os.environ[PARENT_ENV] = self.parent_run_id
        os.environ[SWEEP_ENV] = sweep_id
        atexit.register(self._end, "FAILED")
        log.info("MLflow parent run of this sweep: %s", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        LAST_SWEEP_FAILURES[:] = failed_jobs(config.hydra.sweep.dir)
        parent = self.parent_run_id
        if parent is None:
            return
        try:
            self._record_best(config, parent)
            self._record_search(config, parent)
            from medkit_exp.sweeps.cv_parent import record_cross_validation

            record_cross_validation(config, parent, objective_maximized(config), self._resumed)  # fold jobs only
            if LAST_SWEEP_FAILURES:
                import json

                from mlflow.tracking import MlflowClient

                client = MlflowClient()
                client.log_metric(parent, "failed_jobs", len(LAST_SWEEP_FAILURES))
                failures = [{"job": job, "reason": reason} for job, reason in LAST_SWEEP_FAILURES]
                client.log_text(parent, json.dumps(failures, indent=2), "failed_jobs.json")
        finally:
            self._end("FINISHED")

    def _record_best(self, config: DictConfig, parent: str) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        experiment_id = client.get_run(parent).info.experiment_id
        children: list[Any] = list(client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        ))
        if self._resumed:  # each job once: the run it kept (earlier attempts' FAILED runs left out)
            from medkit_exp.sweeps.resume import latest_per_job

            children = latest_per_job(children)
        objective = config.objective
        scored = [r for r in children if run_objective(r.data.metrics, objective) is not None]
        client.log_metric(parent, "jobs", len(children))
        if not scored:
            return
        pick = max if objective_maximized(config) else min
        best = pick(scored, key=lambda r: _objective_of(r, objective))
        client.log_metric(parent, f"best_{objective}", _objective_of(best, objective))
        client.set_tag(parent, "best.run_id", best.info.run_id)
        client.set_tag(parent, "best.run_name", best.info.run_name or "")
        best_overrides = best.data.tags.get("hydra.overrides", "")
        client.set_tag(parent, "best.overrides", best_overrides)
        print(
            f"Sweep best {objective}={_objective_of(best, objective):.4f}: run {best.info.run_id} "
            f"({best_overrides}); parent run {parent}",
            flush=True,
        )
        try:
            self._record_configurations(client, parent, scored, objective, maximize=pick is max)
        except Exception as exc:  # the jobs are done and logged; the summary is an extra
            log.warning("could not rank the sweep's configurations on parent run %s: %s", parent, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))

    def _record_search(self, config: DictConfig, parent: str) -> None:
        """The Optuna search's summary (trials by state, epochs, best trial) on the parent run."""
        import json
        from pathlib import Path

        from mlflow.tracking import MlflowClient

        from medkit_exp.sweeps.optuna_search import SUMMARY_FILE

        path = Path(config.hydra.sweep.dir) / SUMMARY_FILE
        if not path.is_file():
            return
        summary = json.loads(path.read_text(encoding="utf-8"))
        client = MlflowClient()
        client.log_artifact(parent, str(path))
        metrics = {f"search_trials_{state}": n for state, n in summary["trials"].items()}
        metrics.update(search_epochs_run=summary["epochs_run"], search_epochs_full=summary["epochs_full"])
        for key, value in metrics.items():
            client.log_metric(parent, key, value)
        tags = {"search.study": summary["study"], "search.storage": summary["storage"]}
        best = summary.get("best")
        if best:
            tags.update({"search.best_trial": str(best["trial"]), "search.best_params": json.dumps(best["params"]),
                         "search.best_run_id": best.get("mlflow_run_id") or ""})
            client.log_metric(parent, f"search_best_{summary['objective']}", best["value"])
        for key, value in tags.items():
            client.set_tag(parent, key, value)

    def _record_configurations(self, client: Any, parent: str, scored: list[Any], objective: str,
                                maximize: bool) -> None:
        """Rank configurations by their mean over seeds: ``sweep_summary.json`` and ``best_config.*`` on the parent."""
        from medkit_exp.sweeps.summary import format_ranking, rank_configurations

        # Jobs tag their configuration (the app does); an untagged run stands alone.
        ranking = rank_configurations(
            ((r.data.tags.get("sweep.configuration", r.info.run_id), r.info.run_id,
              _objective_of(r, objective)) for r in scored),
            maximize=maximize,
        )
        best = ranking[0]
        client.log_dict(parent, {"objective": objective, "maximize": maximize,
                                             "configurations": [g.as_dict() for g in ranking]}, "sweep_summary.json")
        client.set_tag(parent, "best_config.overrides", best.overrides)
        client.log_metric(parent, f"best_config_mean_{objective}", best.mean)
        client.log_metric(parent, "best_config_runs", best.runs)
        if best.std is not None:
            client.log_metric(parent, f"best_config_std_{objective}", best.std)
        significance = _test_significance(client, parent, ranking, objective, maximize)
        if any(group.runs > 1 for group in ranking):  # seeds were repeated: the ranking says more than the best job
            from medkit_exp.sweeps.significance import p_column

            print(format_ranking(ranking, objective, p_vs_best=p_column(ranking, significance)), flush=True)
        if significance is not None:
            print(significance["verdict"], flush=True)
        self._log_sweep_plots(client, parent, scored, ranking, objective)

    def _log_sweep_plots(self, client: Any, parent: str, scored: list[Any], ranking: list[ConfigurationScore],
                         objective: str) -> None:
        """``plots/objective_by_hyperparameter.png`` and ``plots/ranked_configurations.png`` on the parent."""
        import tempfile
        from pathlib import Path

        from medkit_exp.sweeps.summary import SEED_KEYS
        from medkit_exp.training import plots

        runs: list[dict[str, Any]] = [
            {"params": dict(o.split("=", 1) for o in r.data.tags.get("hydra.overrides", "").split() if "=" in o),
             "value": _objective_of(r, objective)} for r in scored]
        keys = {key for run in runs for key in run["params"]}
        swept = {k for k in keys if k not in SEED_KEYS and len({run["params"].get(k) for run in runs}) > 1}
        for run in runs:
            run["params"] = {k: v for k, v in run["params"].items() if k in swept}
        shared = set.intersection(*(set(g.overrides.split()) for g in ranking)) if ranking else set()
        rows = [{**g.as_dict(), "overrides": " ".join(t for t in g.overrides.split() if t not in shared)}
                for g in ranking]
        with tempfile.TemporaryDirectory() as tmp:
            plots.objective_by_hyperparameter(runs, objective, Path(tmp) / "objective_by_hyperparameter.png")
            plots.ranked_configurations(rows, objective, Path(tmp) / "ranked_configurations.png")
            client.log_artifacts(parent, tmp, "plots")

    def _end(self, status: str) -> None:
        if self._ended or self.parent_run_id is None:
            return
        self._ended = True
        if status == "FAILED" and STOPPED_BY_SIGNAL:
            status = "KILLED"
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
            if status == "FAILED" and not self._resumed and not _has_children(client, self.parent_run_id):
                # Refused before any job ran (a bad search setting): no empty parent left behind.
                client.delete_run(self.parent_run_id)
            else:
                client.set_terminated(self.parent_run_id, status=status)
        except Exception as exc:  # ending a parent run must never hide the sweep's own error
            log.warning("could not end the sweep's parent run %s: %s", self.parent_run_id, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
        from medkit_exp.sweeps.resume import RESUMED_ENV

        for name in (PARENT_ENV, SWEEP_ENV, RESUMED_ENV):
            os.environ.pop(name, None)


def _refuse(message: str) -> NoReturn:
    """End the command with a one-line error, exit 2: Hydra turns a callback's exception into a
    warning and runs the sweep anyway, so this exits instead (before any job or parent run)."""
    import sys

    print(f"medkit_exp: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _test_significance(client: Any, parent: str, ranking: list[ConfigurationScore], objective: str,
                       maximize: bool = True) -> dict[str, Any] | None:
    """The best configuration against the next ones on their stored test predictions
    (`medkit_exp.sweeps.significance`): ``sweep_significance.json`` and the tag
    ``best_config.significant`` on the parent; None for a single configuration."""
    if len(ranking) < 2:
        return None
    from mlflow.exceptions import MlflowException

    from medkit_exp.errors import MedkitExpError, UserError, one_line
    from medkit_exp.stats import DocumentCounts
    from medkit_exp.sweeps.significance import sweep_significance
    from medkit_exp.tracking.predictions import run_predictions

    def load(run_id: str) -> DocumentCounts:
        try:
            return run_predictions(client, run_id).counts()
        except MlflowException as exc:
            raise UserError(one_line(exc)) from exc

    try:
        significance = sweep_significance(ranking, objective, load, maximize=maximize)
        client.log_dict(parent, significance, "sweep_significance.json")
        runner_up = significance["comparisons"][0]
        client.set_tag(parent, "best_config.significant",
                       "untested" if "untested" in runner_up else str(runner_up["significant"]).lower())
    except (MedkitExpError, MlflowException, OSError, ValueError) as exc:
        log.warning("could not test the sweep's best configuration on parent run %s: %s", parent, exc)
        return {"comparisons": [], "verdict": f"Best configuration vs runner-up: not tested ({one_line(exc)})."}
    return significance


def _objective_of(run: Any, objective: str) -> float:
    """The objective of one of the sweep's scored runs (those whose objective was logged)."""
    value = run_objective(run.data.metrics, objective)
    if value is None:
        raise ValueError(f"run {run.info.run_id} logged no {objective}")
    return value


def _has_children(client: Any, parent_run_id: str) -> bool:
    """Whether any run was started under ``parent_run_id``."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=1)
    return bool(children)
