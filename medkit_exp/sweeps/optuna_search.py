"""An Optuna search as a Hydra sweeper: durable, resumable, with pruning.

Hydra's own Optuna sweeper keeps the study where its jobs cannot reach it, so a job cannot
report its epochs and nothing can be pruned (facebookresearch/hydra#1954), and it pins an
Optuna whose SQLite storage fails with SQLAlchemy 2. This sweeper:

- keeps the study in RDB storage (``hydra.sweeper.storage``; by default the SQLite file
  ``multirun/optuna.db`` under the directory the command is run from). The study is named from
  the search itself (``<name>-<digest>``), so running the same command again continues it:
  trials done stay done, a trial left RUNNING by a process that died (Ctrl-C, kill -9, OOM)
  is marked FAIL as interrupted and its parameters are tried again;
- tells each job its trial (``hydra.job.env_set``, which every launcher honours); the job
  reports its objective at every epoch end and stops when ``hydra.sweeper.pruner`` says so
  (`medkit_exp.sweeps.optuna_trial`);
- records a failed job as a FAIL trial with its reason and goes on with the others;
- writes ``search_summary.json`` in the sweep folder (trials complete/pruned/failed, epochs
  run against a full search's, the best trial) and prints it as a table; the sweep's MLflow
  parent run logs it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.errors import UserError
from medkit_exp.sweeps import optuna_trial as jobside
from medkit_exp.sweeps.jobs import FAILED_MARKER
from medkit_exp.sweeps.search_space import SearchSpace, SearchSpaceError

log = logging.getLogger("medkit_exp.sweep")

SUMMARY_FILE = "search_summary.json"
DEFAULT_STORAGE_FILE = "multirun/optuna.db"

# Trial user attributes only the sweeper writes.
_SWEEPER_PID = "sweeper_pid"
_SWEEPER_HOST = "sweeper_host"
_INTERRUPTED = "interrupted"
_RETRY_OF = "retry_of"
_FAILURE = "failure"
_OVERRIDES = "overrides"
_SEARCH_DIGEST = "medkit_exp.search_digest"


def default_storage(base_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(base_dir).resolve() / DEFAULT_STORAGE_FILE}"


class OptunaSearch:
    """The sweeper's work; `hydra_plugins.medkit_exp_optuna.OptunaSweeper` is Hydra's handle on it."""

    def __init__(self, sampler: Any, direction: str, storage: str | None, study_name: str | None, n_trials: int,
                 n_jobs: int, pruner: str, pruner_options: Any, params: Any) -> None:
        self.sampler_config = sampler
        self.direction = str(direction)
        self.storage = storage
        self.study_name = study_name
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.pruner_name = str(pruner)
        self.pruner_options = _plain(pruner_options) or {}
        self.params = _plain(params) or {}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        # Checked here, not in __init__: Hydra would wrap the error in its own, over several lines.
        if self.direction not in ("maximize", "minimize"):
            raise UserError(f"hydra.sweeper.direction={self.direction} must be maximize or minimize")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise UserError(f"hydra.sweeper.n_trials={self.n_trials} and n_jobs={self.n_jobs} must be at least 1")
        jobside.make_pruner(self.pruner_name, self.pruner_options)  # a bad name fails before anything runs
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # ------------------------------------------------------------------ the search
    def sweep(self, arguments: Sequence[str]) -> None:
        assert self.config is not None, "setup() first"
        try:
            space = SearchSpace.parse(self.params, arguments)
        except SearchSpaceError as exc:
            raise UserError(f"hydra.sweeper.params: {exc}") from exc
        objective = str(self.config.get("objective") or "")
        digest = space.digest(self.direction, objective, self.pruner_name, self.pruner_options,
                              _plain(self.sampler_config))
        storage_url = str(self.storage or default_storage(os.getcwd()))
        name = str(self.study_name or f"{self._search_name()}-{digest}")
        study = self._open_study(storage_url, name, digest)
        done, retried = self._recover(study)
        to_run = max(self.n_trials - done, 0)
        shown_url = _redacted(storage_url)
        print(f"Optuna study {name} in {shown_url}: {done} trial(s) done"
              + (f", {retried} interrupted one(s) to try again" if retried else "")
              + f"; running {to_run} of hydra.sweeper.n_trials={self.n_trials}"
              + ("" if self.pruner_name == "none" else f" (pruner: {self.pruner_name})"), flush=True)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        while to_run > 0:
            batch = [study.ask() for _ in range(min(self.n_jobs, to_run))]
            jobs = [self._job_overrides(trial, space, storage_url, name) for trial in batch]
            try:
                results = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            except BaseException:
                self._interrupt(study, batch)
                raise
            for trial, result in zip(batch, results, strict=True):
                self._tell(study, trial, result)
            self.job_idx += len(batch)
            to_run -= len(batch)
        summary = summarize_study(study, objective, shown_url)
        (sweep_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(format_summary(summary), flush=True)

    def _search_name(self) -> str:
        choice = self.config.hydra.runtime.choices.get("hparams_search") if self.config is not None else None
        return str(choice or "search")

    def _open_study(self, storage_url: str, name: str, digest: str) -> Any:
        import optuna

        if storage_url.startswith("sqlite:///"):
            Path(storage_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        sampler = _instantiate_sampler(self.sampler_config)
        try:
            study = optuna.create_study(study_name=name, storage=jobside.open_storage(storage_url), sampler=sampler,
                                        pruner=jobside.make_pruner(self.pruner_name, self.pruner_options),
                                        direction=optuna.study.StudyDirection[self.direction.upper()],
                                        load_if_exists=True)
        except Exception as exc:
            raise UserError(f"hydra.sweeper.storage={_redacted(storage_url)}: cannot open the Optuna study "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0]}); give a writable SQLite path or a "
                            "reachable database URL") from exc
        if study.direction.name.lower() != self.direction:
            raise UserError(f"Optuna study {name} already exists with direction {study.direction.name.lower()}; "
                            "pick another hydra.sweeper.study_name")
        stored = study.user_attrs.get(_SEARCH_DIGEST)
        if stored is None:
            study.set_user_attr(_SEARCH_DIGEST, digest)
        elif stored != digest:
            raise UserError(f"Optuna study {name} in {_redacted(storage_url)} was made by another search (other "
                            "overrides, space, objective, pruner or sampler); pick another hydra.sweeper.study_name, "
                            "or leave it null to name the study after the search")
        return study

    def _recover(self, study: Any) -> tuple[int, int]:
        """Mark trials left RUNNING by a dead sweep as interrupted, queue them again; return
        (trials done, trials queued again)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == TrialState.RUNNING and not _sweeper_alive(trial.user_attrs):
                _mark_interrupted(study, trial.number)
        trials = study.get_trials(deepcopy=False)
        retried_numbers = {t.user_attrs.get(_RETRY_OF) for t in trials}
        queued = 0
        for trial in trials:
            interrupted = trial.state == TrialState.FAIL and trial.user_attrs.get(_INTERRUPTED)
            if interrupted and trial.number not in retried_numbers:
                study.enqueue_trial(trial.params, user_attrs={_RETRY_OF: trial.number})
                queued += 1
        done = sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and not t.user_attrs.get(_INTERRUPTED)))
        return done, queued

    def _job_overrides(self, trial: Any, space: SearchSpace, storage_url: str, name: str) -> list[str]:
        trial.set_user_attr(_SWEEPER_PID, os.getpid())
        trial.set_user_attr(_SWEEPER_HOST, socket.gethostname())
        overrides = space.suggest(trial)
        trial.set_user_attr(_OVERRIDES, " ".join(overrides))
        env = {jobside.TRIAL_ENV: str(trial.number), jobside.STUDY_ENV: name, jobside.STORAGE_ENV: storage_url,
               jobside.PRUNER_ENV: json.dumps({"name": self.pruner_name, "options": self.pruner_options})}
        return [*overrides, *(f"++hydra.job.env_set.{k}={_quoted(v)}" for k, v in env.items())]

    def _tell(self, study: Any, trial: Any, result: Any) -> None:
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        assert self.config is not None, "setup() first"
        attrs = _frozen(study, trial.number).user_attrs
        value = result.return_value if result.status == JobStatus.COMPLETED else None
        if attrs.get(jobside.PRUNED_AT_EPOCH):
            study.tell(trial, state=TrialState.PRUNED)
            return
        if isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(trial, float(value))
            return
        marker = Path(str(result.hydra_cfg.hydra.runtime.output_dir)) / FAILED_MARKER
        if marker.is_file():
            reason = marker.read_text(encoding="utf-8").strip()
        elif result.status == JobStatus.FAILED:
            reason = f"{type(result._return_value).__name__}: {result._return_value}".splitlines()[0]
        else:
            reason = f"the job returned {value!r}, not a number (is objective={self.config.objective} in its summary?)"
        trial.set_user_attr(_FAILURE, reason)
        study.tell(trial, state=TrialState.FAIL)

    def _interrupt(self, study: Any, batch: list[Any]) -> None:
        """The sweep itself stops (Ctrl-C, a launcher error): its running trials are interrupted, to retry."""
        for trial in batch:
            try:
                _mark_interrupted(study, trial.number)
            except Exception as exc:  # the stop's own error goes on
                log.warning("could not mark trial %d interrupted: %s", trial.number, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))


# ---------------------------------------------------------------------------- the summary
def summarize_study(study: Any, objective: str, storage: str) -> dict[str, Any]:
    """What the search did: trials by state, epochs run against a full search's, the best trial."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get(_INTERRUPTED)
        state = "interrupted" if interrupted else t.state.name.lower()
        last_reported = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append({"trial": t.number, "state": state, "value": t.value if state == "complete" else None,
                     "last_reported": last_reported,
                     "epochs_run": int(t.user_attrs.get(jobside.EPOCHS_RUN, 0)),
                     "epochs_planned": int(t.user_attrs.get(jobside.EPOCHS_PLANNED, 0)),
                     "pruned_at_epoch": t.user_attrs.get(jobside.PRUNED_AT_EPOCH),
                     "failure": t.user_attrs.get(_FAILURE), "params": t.params,
                     "mlflow_run_id": t.user_attrs.get(jobside.MLFLOW_RUN_ID)})
    counts = {state: sum(1 for r in rows if r["state"] == state)
              for state in ("complete", "pruned", "fail", "interrupted", "running", "waiting")}
    complete = [r for r in rows if r["state"] == "complete"]
    best = None
    if complete:
        best_trial = study.best_trial
        best = next(r for r in complete if r["trial"] == best_trial.number)
    epochs_run = sum(r["epochs_run"] for r in rows)
    epochs_full = sum(r["epochs_planned"] for r in rows)
    return {"study": study.study_name, "storage": storage, "direction": study.direction.name.lower(),
            "objective": objective, "trials": counts, "epochs_run": epochs_run, "epochs_full": epochs_full,
            "best": best, "rows": rows}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the table printed at the end of the search."""
    counts = summary["trials"]
    objective = summary["objective"]
    full = summary["epochs_full"]
    share = f" ({summary['epochs_run'] / full:.0%})" if full else ""
    lines = ["", f"== Optuna search {summary['study']} ({summary['direction']} {objective}) ==",
             f"trials       : {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"
             + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else ""),
             f"epochs       : {summary['epochs_run']} run of the {full} a full search would run{share}"]
    best = summary["best"]
    if best:
        params = " ".join(f"{k}={v}" for k, v in best["params"].items())
        lines.append(f"best         : trial {best['trial']} {objective}={best['value']:.4f} {params}"
                     + (f" (MLflow run {best['mlflow_run_id']})" if best.get("mlflow_run_id") else ""))
    else:
        lines.append("best         : no trial completed")
    lines.append(f"{'trial':>5}  {'state':<11} {objective:>10}  {'epochs':>6}  params")
    for r in summary["rows"]:
        shown = r["value"] if r["value"] is not None else r["last_reported"]
        value = f"{shown:.4f}" if isinstance(shown, (int, float)) else "-"
        params = " ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        note = f"  ({r['failure']})" if r.get("failure") else ""
        epochs = f"{r['epochs_run']:>2}/{r['epochs_planned']:<3}"
        lines.append(f"{r['trial']:>5}  {r['state']:<11} {value:>10}  {epochs}  {params}{note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers
def _mark_interrupted(study: Any, number: int) -> None:
    from optuna.trial import TrialState

    trial = _frozen(study, number)
    if trial.state != TrialState.RUNNING:
        return
    storage = study._storage  # a finished trial takes no attribute, so this one is set while it runs
    storage.set_trial_user_attr(trial._trial_id, _INTERRUPTED, True)
    study.tell(number, state=TrialState.FAIL)


def _frozen(study: Any, number: int) -> Any:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _sweeper_alive(attrs: dict[str, Any]) -> bool:
    """Whether the sweep that started a RUNNING trial is still running (this host only)."""
    pid = attrs.get(_SWEEPER_PID)
    if pid is None or attrs.get(_SWEEPER_HOST) != socket.gethostname():
        return pid is not None  # another host's sweep: cannot tell, assume alive; no pid: not run by a sweep
    if int(pid) == os.getpid():
        return False  # this process is starting the search: any trial it ran is over
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _instantiate_sampler(config: Any) -> Any:
    from hydra.utils import instantiate

    if config is None:
        return None
    try:
        return instantiate(config)
    except Exception as exc:
        raise UserError(f"hydra.sweeper.sampler: {str(exc).splitlines()[0]}; see optuna.samplers") from exc


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _redacted(url: str) -> str:
    from medkit_exp.tracking.secrets import redact_text

    return redact_text(url)
