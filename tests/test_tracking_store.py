"""setup_tracking: embedded SQLite store, explicit URIs, concurrent creation, unreachable servers."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from medkit_exp.tracking import TrackingUnavailableError, default_tracking_uri, setup_tracking

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_embedded_store_lives_under_root(mlflow_root):
    experiment_id = setup_tracking(root=mlflow_root, experiment="exp-a")
    assert mlflow.get_tracking_uri() == f"sqlite:///{mlflow_root / 'mlflow.db'}"
    assert default_tracking_uri(mlflow_root) == mlflow.get_tracking_uri()
    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.name == "exp-a"
    assert experiment.artifact_location == (mlflow_root / "artifacts").as_uri()
    assert setup_tracking(root=mlflow_root, experiment="exp-a") == experiment_id
    with sqlite3.connect(mlflow_root / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_write_their_artifacts_under_root(mlflow_root):
    setup_tracking(root=mlflow_root)
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    assert (mlflow_root / "artifacts" / run.info.run_id / "artifacts" / "note.txt").read_text() == "hello"


def test_uri_argument_and_environment_variable_win_over_root(mlflow_root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(mlflow_root / "mlflow.db", other / "mlflow.db")
    uri = f"sqlite:///{other / 'mlflow.db'}"
    setup_tracking(uri, root=mlflow_root)
    assert mlflow.get_tracking_uri() == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    experiment_id = setup_tracking(root=mlflow_root, experiment="from-env")
    assert mlflow.get_tracking_uri() == uri
    assert MlflowClient().get_experiment(experiment_id).artifact_location == (other / "artifacts").as_uri()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_with_a_one_line_hint():
    uri = f"http://user:secret@127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(TrackingUnavailableError) as info:
        setup_tracking(uri)
    message = str(info.value)
    assert "\n" not in message and "tracking=none" in message
    assert "127.0.0.1" in message and "secret" not in message


def test_a_silent_server_is_probed_once_then_reported():
    """A server that accepts connections and never answers: one bounded probe, not MLflow's
    minutes of retries with back-off. The kernel accepts the connections into the listener's
    backlog; they are counted afterwards, so no thread has to keep up with the probe."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        with pytest.raises(TrackingUnavailableError, match="timed out"):
            setup_tracking(f"http://127.0.0.1:{listener.getsockname()[1]}", check_timeout_s=1.0)
        listener.setblocking(False)
        requests = []
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            with connection:
                connection.settimeout(10)
                requests.append(connection.recv(200))
    assert len(requests) == 1 and requests[0].startswith(b"GET "), requests


_CREATE_AND_LOG = """
import sys
from support.barrier import wait_at_barrier
from medkit_exp.tracking import setup_tracking
import mlflow
wait_at_barrier(sys.argv[2], int(sys.argv[3]))  # every process imported and waiting before any creates the store
experiment_id = setup_tracking(root=sys.argv[1], experiment="concurrent")
with mlflow.start_run():
    mlflow.log_metric("x", 1.0)
print(experiment_id)
"""


def test_processes_creating_the_same_store_at_once_all_succeed(tmp_path):
    root = tmp_path / "fresh-mlruns"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", _CREATE_AND_LOG, str(root), str(barrier), "3"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    # communicate(), not wait(): a child whose log fills its pipe would otherwise block until the timeout.
    outputs = [p.communicate(timeout=300) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    for code, _, err in results:
        assert code == 0, err[-2000:]
    assert len({out.strip() for _, out, _ in results}) == 1
    assert len(list(barrier.iterdir())) == 3  # the three were waiting together before any created the store
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("concurrent")
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert not (tmp_path / "mlruns").exists()  # nothing depends on the working directory
