"""An interrupted grid sweep resumes: its parent run again, and each job told what to do.

Hydra's basic sweeper launches every job of a grid again when its command is re-run. Here,
the sweep's parent run is recorded in the sweep folder (``medkit_exp_sweep.json``), so the
same command with the same ``hydra.sweep.dir`` attaches to that parent run again (as does
``+sweep.resume=<parent run id>`` from any folder). Each job of an attached sweep then looks
up, among the parent's children, the runs with its own overrides (the ``hydra.overrides`` tag,
redacted as stored, in any order) and:

- skips itself when one of them FINISHED, and gives the sweeper that run's objective;
- continues the latest one from its last checkpoint, in that same MLflow run, when it was
  interrupted: KILLED, left RUNNING by a process that died, or ended FAILED by
  `medkit_exp.tracking.stale` for that reason;
- starts a new run when the latest one FAILED, or was interrupted before any checkpoint;
- runs as usual when there is none: changing the grid only runs the new points.

The callback (`medkit_exp.sweeps.callback`) calls `attach_parent`; the app calls `prepare_job`
before it builds anything. Optuna trials are left to the Optuna sweeper, which resumes its
study itself.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkit_exp.errors import UserError
from medkit_exp.sweeps.jobs import FAILED_MARKER, PARENT_ENV, run_objective
from medkit_exp.sweeps.optuna_trial import TRIAL_ENV
from medkit_exp.sweeps.summary import override_key
from medkit_exp.tracking.stale import DIED_TAG, HOST_TAG, PID_TAG, alive

RESUME_KEY = "sweep.resume"  # +sweep.resume=<parent run id>
RESUMED_ENV = "MEDKIT_EXP_SWEEP_RESUMED"  # set for the jobs of a sweep attached to an earlier parent run
SWEEP_FILE = "medkit_exp_sweep.json"  # in the sweep folder: which parent run the sweep's jobs belong to
EARLIER_FAILED_MARKER = "medkit_exp_failed.earlier.txt"
SKIP, RESUME, RERUN, RUN = "skip", "resume", "rerun", "run"


# ---------------------------------------------------------------------------- what a job is
def is_resume_override(override: str) -> bool:
    """Whether ``override`` is ``+sweep.resume=...`` (not part of what a job is)."""
    return override_key(override) == RESUME_KEY


def job_key(overrides: str | Iterable[str]) -> tuple[str, ...]:
    """What identifies a job across attempts: its overrides (a list, or a ``hydra.overrides``
    tag), in any order, without ``+sweep.resume``."""
    text = overrides if isinstance(overrides, str) else " ".join(overrides)
    return tuple(sorted(t for t in text.split() if t != "(none)" and not is_resume_override(t)))


def latest_per_job(runs: list[Any]) -> list[Any]:
    """One run per job (per overrides, and per Optuna trial): the one a resumed sweep kept, its
    FINISHED run if it has one, else its latest."""
    chosen: dict[tuple, Any] = {}
    for run in sorted(runs, key=_rank):
        tags = run.data.tags
        chosen[(job_key(tags.get("hydra.overrides", run.info.run_id)), tags.get("sweep.trial"))] = run
    return list(chosen.values())


def _rank(run: Any) -> tuple[bool, int]:
    return run.info.status == "FINISHED", run.info.start_time or 0


# ---------------------------------------------------------------------------- the decision
@dataclass
class JobPlan:
    """What a job of a resumed sweep does: ``skip``, ``resume`` (``run_id``), ``rerun`` or ``run``."""

    action: str
    run_id: str | None = None  # the earlier run it skips for, continues, or replaces
    objective: float | None = None  # a skipped job's objective, as its run logged it
    reason: str = ""

    @property
    def skipped(self) -> bool:
        return self.action == SKIP


def decide(runs: list[Any], objective: str) -> JobPlan:
    """The plan of a job whose earlier runs (same parent, same overrides) are ``runs``.

    Raises `UserError` when the latest one is RUNNING in a live process of this host."""
    if not runs:
        return JobPlan(RUN)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if finished:
        run = max(finished, key=_rank)
        return JobPlan(SKIP, run.info.run_id, run_objective(run.data.metrics, objective), "FINISHED")
    run = max(runs, key=_rank)
    status, tags, run_id = run.info.status, run.data.tags, run.info.run_id
    if status == "RUNNING":
        host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
        if host == socket.gethostname() and pid.isdigit() and alive(int(pid)):
            raise UserError(f"MLflow run {run_id} of this sweep job is still running (process {pid}); wait for it "
                            "or stop it, then run the sweep again")
        how = "left RUNNING by a process that died" if host == socket.gethostname() else f"left RUNNING on {host}"
    elif status == "KILLED":
        how = "KILLED"
    elif status == "FAILED" and tags.get(DIED_TAG):
        how = "left by a process that died"
    else:
        error = (tags.get("medkit.error") or "").splitlines()
        return JobPlan(RERUN, run_id, reason=status + (f" ({error[0][:200]})" if error else ""))
    if checkpoint_folder(run) is None:
        return JobPlan(RERUN, run_id, reason=f"{how} before its first checkpoint")
    return JobPlan(RESUME, run_id, reason=how)


def checkpoint_folder(run: Any) -> Path | None:
    """The run's checkpoint folder (tag ``checkpoint.dir``) when it holds a checkpoint index."""
    from medkit_exp.training.checkpoint import INDEX_FILE

    folder = run.data.tags.get("checkpoint.dir")
    return Path(folder) if folder and (Path(folder) / INDEX_FILE).is_file() else None


def children(client: Any, parent_run_id: str) -> list[Any]:
    """Every run started under ``parent_run_id`` (all pages)."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# ---------------------------------------------------------------------------- the job's side
def prepare_job(cfg: Any, trainer_cfg: Any) -> JobPlan:
    """Decide what this job does in a resumed sweep, and set it up: a skip prints one line, a
    resume points ``trainer_cfg.resume_from`` at the earlier run, a new run gets a checkpoint
    folder no earlier run holds. Outside a resumed sweep: ``run``, nothing looked up."""
    from omegaconf import OmegaConf

    if OmegaConf.select(cfg, RESUME_KEY) is not None and not _in_multirun():
        raise UserError(f"+{RESUME_KEY} resumes a sweep: add -m and the sweep's own overrides")
    parent = os.environ.get(PARENT_ENV)
    if not (os.environ.get(RESUMED_ENV) and parent and cfg.tracking.enabled) or os.environ.get(TRIAL_ENV):
        return JobPlan(RUN)
    from mlflow.tracking import MlflowClient

    from medkit_exp.tracking.secrets import redact_override
    from medkit_exp.tracking.store import setup_tracking

    setup_tracking(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.root)
    client = MlflowClient()
    key = job_key(redact_override(o) for o in _task_overrides())
    earlier = [r for r in children(client, parent) if job_key(r.data.tags.get("hydra.overrides", "")) == key]
    plan = decide(earlier, str(cfg.objective or ""))
    if plan.action == SKIP:
        shown = f"{cfg.objective}={plan.objective:.4f}" if plan.objective is not None else f"no {cfg.objective}"
        print(f"Sweep job skipped: MLflow run {plan.run_id} FINISHED with the same overrides ({shown})", flush=True)
    elif plan.action == RESUME and plan.run_id is not None:
        trainer_cfg.resume_from = plan.run_id  # resolve_resume: its checkpoint folder, and the run itself
        tags = client.get_run(plan.run_id).data.tags
        for tag in (DIED_TAG, "medkit.error"):  # the run goes on: what ended it no longer holds
            if tag in tags:
                client.delete_tag(plan.run_id, tag)
        print(f"Sweep job resumed: MLflow run {plan.run_id} was {plan.reason}", flush=True)
    else:
        if plan.action == RERUN:
            print(f"Sweep job run again in a new MLflow run: run {plan.run_id} was {plan.reason}", flush=True)
        trainer_cfg.output_dir = str(unused_folder(Path(trainer_cfg.output_dir)))
    return plan


def unused_folder(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``-3``... when it holds an earlier run's checkpoints (a failed
    attempt's, or another job's when the grid changed): they are kept, not overwritten."""
    from medkit_exp.training.checkpoint import INDEX_FILE

    candidate, n = folder, 1
    while (candidate / INDEX_FILE).is_file():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not running under Hydra
        return False


# ---------------------------------------------------------------------------- the sweep's side
def asked_parent(config: Any) -> str | None:
    """The run id of ``+sweep.resume=<id>`` as typed on the command line, else None."""
    for override in config.hydra.overrides.task:
        if is_resume_override(override):
            return override.split("=", 1)[1].strip().strip("'\"")
    return None


def is_sweep_parent(run: Any) -> bool:
    return "sweep.id" in run.data.tags and "mlflow.parentRunId" not in run.data.tags


def earlier_parent(client: Any, config: Any, experiment_id: str) -> Any:
    """The parent run this sweep continues: ``+sweep.resume``'s (checked: a one-line error when
    it is not a sweep's parent run of this experiment), else the one recorded in the sweep
    folder, else None (a new sweep)."""
    from mlflow.exceptions import MlflowException

    asked = asked_parent(config)
    if asked is not None:
        try:
            run = client.get_run(asked)
        except MlflowException:
            run = None
        if run is None or run.info.lifecycle_stage != "active" or not is_sweep_parent(run):
            raise UserError(f"+{RESUME_KEY}={asked} is not the parent run of a sweep in this tracking store "
                            "(its run_name is sweep-<date>-<time>)")
        if run.info.experiment_id != experiment_id:
            raise UserError(f"+{RESUME_KEY}={asked} is a sweep of another experiment (id {run.info.experiment_id}); "
                            "set tracking.experiment to that one")
        return run
    path = Path(str(config.hydra.sweep.dir)) / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["parent_run_id"]
        run = client.get_run(recorded)
    except (OSError, ValueError, KeyError, MlflowException):
        return None  # another tracking store's, or deleted: a new sweep
    if run.info.lifecycle_stage == "active" and is_sweep_parent(run) and run.info.experiment_id == experiment_id:
        return run
    return None


def attach_parent(client: Any, parent: Any, sweep_dir: str) -> None:
    """Reopen ``parent`` for this sweep: RUNNING again, its resumes counted, the failure markers
    of the earlier attempt set aside (a job failing again leaves a new one)."""
    run_id = parent.info.run_id
    resumes = int(parent.data.tags.get("sweep.resumes", "0") or 0) + 1
    if parent.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "sweep.resumes", str(resumes))
    for marker in Path(sweep_dir).glob(f"*/{FAILED_MARKER}"):
        marker.replace(marker.with_name(EARLIER_FAILED_MARKER))
    print(f"Resuming sweep {parent.data.tags.get('sweep.id')}: MLflow parent run {run_id} "
          f"({len(children(client, run_id))} earlier job run(s)); jobs that finished are skipped", flush=True)


def record_parent(sweep_dir: str, parent_run_id: str, experiment: str) -> None:
    """Write in the sweep folder which parent run its jobs belong to (what a re-run attaches to)."""
    folder = Path(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"parent_run_id": parent_run_id, "experiment": experiment}
    (folder / SWEEP_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
