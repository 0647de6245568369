"""Opening and ending an MLflow run: start one, continue one (resume), or adopt the active one;
record how it ended (FINISHED, FAILED with its error, KILLED with the stop signal)."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import RunTag

from medkit_exp.tracking.failures import warn_on_failure
from medkit_exp.tracking.secrets import redact, redact_text
from medkit_exp.tracking.store import tracking_username
from medkit_exp.tracking.tags import git_tags

PARENT_RUN_ENV = "MEDKIT_EXP_PARENT_RUN_ID"  # set by medkit_exp.sweeps in multiruns; jobs attach to that run
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM))
_EXIT_CODES = {128 + s for s in _EXIT_SIGNALS} | {-s for s in _EXIT_SIGNALS}


@dataclass
class OpenedRun:
    """The run `open_run` started, continued or adopted."""

    run_id: str
    experiment_id: str
    owned: bool  # started or continued here, so ended here; False for an adopted active run


def open_run(client: MlflowClient, experiment_id: str, *, run_name: str | None, tags: Mapping[str, Any],
             parent_run_id: str | None, resume_run_id: str | None, nested: bool,
             system_metrics: bool) -> OpenedRun:
    """Continue run ``resume_run_id``; else adopt the active run (unless ``nested`` or another
    parent is asked for); else start a run in ``experiment_id``, the child of ``parent_run_id``
    (default ``$MEDKIT_EXP_PARENT_RUN_ID``) or of the active run. ``tags`` (with the git tags and
    the server's user name) and ``run_name`` are set redacted."""
    user = tracking_username(mlflow.get_tracking_uri())
    # On a server with accounts, the run belongs to the account, not to the local login.
    all_tags = redact({**git_tags(), **({"mlflow.user": user} if user else {}), **{k: str(v) for k, v in tags.items()}})
    name = redact_text(run_name) if run_name else run_name
    active = mlflow.active_run()
    parent = parent_run_id or (None if nested else os.environ.get(PARENT_RUN_ENV) or None)
    if resume_run_id:
        existing = client.get_run(resume_run_id)
        mlflow.set_experiment(experiment_id=existing.info.experiment_id)
        run = mlflow.start_run(run_id=resume_run_id, run_name=name, tags=all_tags, log_system_metrics=system_metrics)
        return OpenedRun(run.info.run_id, existing.info.experiment_id, owned=True)
    if active is not None and not nested and parent in (None, active.info.run_id):
        client.log_batch(active.info.run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        return OpenedRun(active.info.run_id, experiment_id, owned=False)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=nested or active is not None,
                           parent_run_id=parent, tags=all_tags, log_system_metrics=system_metrics)
    return OpenedRun(run.info.run_id, experiment_id, owned=True)


def end_run(client: MlflowClient, run_id: str, status: str) -> bool:
    """Record the end of run ``run_id`` with ``status``; False (with a warning) when the backend did not take it."""
    with warn_on_failure("Could not mark MLflow run %s as %s", run_id, status, brief=True):
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status=status)  # leaves the run inactive here even if the server is down
        else:
            client.set_terminated(run_id, status=status)
        return True
    return False


def failure_status(exception: BaseException, stop_signal: str | None) -> str:
    """KILLED for a stop signal, Ctrl-C or a signal's exit code, else FAILED."""
    if stop_signal is not None or isinstance(exception, KeyboardInterrupt):
        return "KILLED"
    return "KILLED" if isinstance(exception, SystemExit) and exception.code in _EXIT_CODES else "FAILED"


def failure_tags(exception: BaseException, stop_signal: str | None, phase: str | None) -> dict[str, str]:
    """``medkit.stop_signal`` and ``medkit.stopped_in`` (``phase``) for a stop signal, else
    ``medkit.error`` (the error, redacted, at most 5,000 characters)."""
    if stop_signal is not None:
        return {"medkit.stop_signal": stop_signal, **({"medkit.stopped_in": phase} if phase else {})}
    return {"medkit.error": redact_text(f"{type(exception).__name__}: {exception}")[:5000]}
