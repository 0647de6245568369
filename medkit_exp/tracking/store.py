"""Where runs are stored: a remote MLflow server, or an embedded SQLite store under ``mlruns/``.

Embedded layout: ``<root>/mlflow.db`` (runs, params, metrics) and ``<root>/artifacts/``.
MLflow 3 refuses its old file store, so SQLite is the local default. Browse it with::

    mlflow server --backend-store-uri sqlite:///mlruns/mlflow.db \\
                  --artifacts-destination mlruns/artifacts --host 127.0.0.1 --port 5000 --workers 1
"""

from __future__ import annotations

import logging
import os
import sqlite3
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException

from medkit_exp.errors import MedkitExpError
from medkit_exp.model_uris.store_uri import default_tracking_uri as default_tracking_uri  # re-exported
from medkit_exp.model_uris.store_uri import sqlite_path, tracking_uri_or_default
from medkit_exp.tracking.secrets import redact_text

log = logging.getLogger(__name__)

LOCK_NAME = ".init.lock"
# MLflow's client retries a request to a server that is down 7 times with back-off: about 4
# minutes per call. The run's own sender keeps what failed and tries again, so shorter retries
# (about 10 s per call) let a run notice an outage quickly. A user's own setting wins.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
LOCK_TIMEOUT_S = 300  # a first migration takes 5-7 s; several waiting processes queue behind it


class TrackingUnavailableError(MedkitExpError, RuntimeError):
    """The configured tracking server cannot be reached."""


class TrackingAuthError(TrackingUnavailableError):
    """The tracking server refused the credentials, or the user may not use the experiment."""


USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"  # read by MLflow's client, with MLFLOW_TRACKING_PASSWORD
CREDENTIALS_FIX = ("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or give them in the URI "
                   "(tracking.uri=http://USER:PASSWORD@host:port)")


def tracking_username(uri: str | None) -> str | None:
    """The account a ``http(s)`` tracking server sees: ``$MLFLOW_TRACKING_USERNAME`` (MLflow's client
    sends it over the URI's user part), else the user part of ``uri``; None for other stores."""
    if not uri or not uri.startswith(("http://", "https://")):
        return None
    return os.environ.get(USERNAME_ENV) or urllib.parse.urlsplit(uri).username or None


def ui_command(uri: str | None, experiment_id: str | None, run_id: str | None) -> str:
    """How to browse a run: the ``mlflow ui`` command for a SQLite store, else the run's URL
    (credentials redacted); "tracking is off" without a store."""
    uri = redact_text(uri) if uri else None
    if not uri:
        return "tracking is off"
    if not uri.startswith("sqlite:///"):
        if uri.startswith(("http://", "https://")) and run_id:
            return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return uri
    artifacts = Path(uri[len("sqlite:///"):].split("?", 1)[0]).parent / "artifacts"
    return (f"mlflow ui --backend-store-uri {uri} --artifacts-destination {artifacts} --port 5000\n"
            f"then open    : http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")


def setup_tracking(
    uri: str | None = None,
    experiment: str = "medkit_exp",
    root: str | os.PathLike[str] = "mlruns",
    wal: bool = True,
    check_timeout_s: float = 5.0,
) -> str:
    """Point MLflow at a store, make sure ``experiment`` exists there and is active; return its id.

    The store is ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else an embedded SQLite DB
    ``<root>/mlflow.db`` with artifacts in ``<root>/artifacts``. For any SQLite store, creation
    (schema migration + experiment) runs under a file lock next to the DB, so several processes
    may create the same store at once; new experiments there keep their artifacts in an
    ``artifacts/`` folder next to the DB, independent of the working directory, and the DB is
    switched to WAL journaling (faster commits; not for network file systems).
    A remote server that does not answer raises `TrackingUnavailableError`.
    """
    uri = tracking_uri_or_default(uri, root)
    db_path = sqlite_path(uri)
    if db_path is None:
        if uri.startswith(("http://", "https://")):
            check_reachable(uri, check_timeout_s)
            for name, value in HTTP_RETRY_DEFAULTS.items():
                os.environ.setdefault(name, value)
        mlflow.set_tracking_uri(uri)
        try:
            experiment_id = mlflow.set_experiment(experiment).experiment_id
            mark_training_experiment(experiment_id)
            return experiment_id
        except MlflowException as exc:
            raise _setup_error(uri, experiment, exc) from exc
    return _setup_sqlite(uri, db_path, experiment, wal)


def _setup_sqlite(uri: str, db_path: Path, experiment: str, wal: bool) -> str:
    artifacts = db_path.parent / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    # Concurrent first-time alembic migrations of one DB crash; the lock serialises them.
    with FileLock(str(db_path.parent / LOCK_NAME), timeout=LOCK_TIMEOUT_S):
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
            except MlflowException:  # created meanwhile by a process that used another lock path
                created = mlflow.get_experiment_by_name(experiment)
                if created is None:
                    raise
                experiment_id = created.experiment_id
        if wal:
            _enable_wal(db_path)
        mark_training_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# The experiment tag MLflow 3's UI reads to open an experiment on its training runs instead of
# its GenAI overview (traces, token usage); "custom_model_development" is its value for training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def mark_training_experiment(experiment_id: str) -> None:
    """Tag the experiment as a model-training one (unless its kind was already chosen)."""
    client = mlflow.MlflowClient()
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def _setup_error(uri: str, experiment: str, exc: MlflowException) -> TrackingUnavailableError:
    """One line for a server that refused setting up ``experiment``: bad credentials (401), no
    permission (403), anything else."""
    shown = redact_text(uri)
    user = tracking_username(uri)
    status = exc.get_http_status_code()
    if status == 401 or exc.error_code == "UNAUTHENTICATED":
        if user:
            return TrackingAuthError(f"MLflow tracking server {shown}: authentication failed for user {user!r} "
                                     f"(wrong user name or password); {CREDENTIALS_FIX}")
        return TrackingAuthError(f"MLflow tracking server {shown} requires authentication and no user was given; "
                                 f"{CREDENTIALS_FIX}")
    if status == 403 or exc.error_code == "PERMISSION_DENIED":
        return TrackingAuthError(f"MLflow tracking server {shown}: user {user!r} may not use experiment "
                                 f"{experiment!r} (permission denied); ask the server's admin for EDIT on it, "
                                 "or choose another tracking.experiment")
    return TrackingUnavailableError(f"MLflow tracking at {shown} failed: {redact_text(exc.message.splitlines()[0])}"
                                    " (run with tracking=none to train without tracking)")


def _enable_wal(db_path: Path) -> None:
    try:
        con = sqlite3.connect(db_path, timeout=20)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:  # only a speed-up: never fail setup for it
        log.debug("Could not switch %s to WAL: %s", db_path, exc)


def check_reachable(uri: str, timeout: float) -> None:
    # MLflow's own client retries with back-off for minutes; fail fast instead. The user part
    # of http://user:password@host is credentials, not a host name: leave it out of the probe.
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: reachable (some servers have no /health)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return  # it answered; TLS settings are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS...)
        raise TrackingUnavailableError(
            f"MLflow tracking server {redact_text(uri)} is unreachable ({reason}); start it, fix the URI,"
            " or run with tracking=none"
        ) from None

