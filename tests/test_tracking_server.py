"""A shared tracking server: a real `mlflow server` on loopback, a CLI run logged through it, read back over HTTP."""

from __future__ import annotations

import re
import shutil

import pytest
from support.readme_blocks import command, in_this_environment
from support.servers import free_port, serving
from test_cli import cli_env, quick_args, run_cli

TEXT = "The patient was started on metformin for type 2 diabetes after an HbA1c test."


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, mlflow_template_db):
    """README's ``mlflow server`` line (SQLite backend, proxied artifacts, 1 worker), run in a folder
    holding ``mlruns/``, on a free port instead of 5000; yields its URL and the ``mlruns`` folder.

    The store starts from the pre-migrated template DB (a fresh one would add a 5-7 s migration).
    MLflow's background job workers (GenAI features: 7 extra processes) are off, as README advises,
    which halves the startup (about 10 s instead of 23 s on a busy 2-core host). The server's
    process group is stopped at the end of the module.
    """
    root = tmp_path_factory.mktemp("tracking-server")
    (root / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, root / "mlruns" / "mlflow.db")
    port = free_port()
    args = in_this_environment(command("mlflow server --backend-store-uri").args)
    args[args.index("--port") + 1] = str(port)
    url = f"http://127.0.0.1:{port}"
    env = {**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with serving(args, f"{url}/health", root / "server.log", env=env, cwd=root, timeout_s=180):
        yield {"url": url, "root": root / "mlruns"}


def test_a_cli_run_through_the_server_is_read_back_over_http(mlflow_server, tiny_bert_dir, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    url = mlflow_server["url"]
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=2", "data.max_docs=16", "hydra.run.dir=out",
                      f"tracking.uri={url}", "tracking.experiment=shared", "tracking.register_as=shared-ner"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists()  # nothing was logged locally
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)
    assert re.search(rf"see it with\s+: {url}/#/experiments/\d+/runs/{run_id}", result.stdout)

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "shared"
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["component.model"] == str(tiny_bert_dir)
    assert [m.step for m in client.get_metric_history(run_id, "eval_f1")] == [1, 2]
    assert "test_f1" in run.data.metrics and len(client.get_metric_history(run_id, "train_loss")) == 2

    # Artifacts go through the server (mlflow-artifacts:/) into its --artifacts-destination.
    stored = list((mlflow_server["root"] / "artifacts").glob(f"*/{run_id}/artifacts/best_checkpoint/model.safetensors"))
    assert len(stored) == 1
    downloaded = client.download_artifacts(run_id, "best_checkpoint", str(tmp_path / "dl"))
    from_server = HFEntityMatcher(model=downloaded).predict([TextDocument(text=TEXT)])[0]
    local = re.search(r"checkpoint\s+: (\S+)", result.stdout).group(1)
    from_disk = HFEntityMatcher(model=local).predict([TextDocument(text=TEXT)])[0]
    assert [(e.label, e.spans) for e in from_server] == [(e.label, e.spans) for e in from_disk]

    # The model registry of the server holds the run's model.
    assert "registered as: models:/shared-ner/1" in result.stdout
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    try:
        rows = mlflow.pyfunc.load_model("models:/shared-ner/1").predict([TEXT])
    finally:
        mlflow.set_tracking_uri(previous)
    assert [(r.label, r.start, r.end) for r in rows.itertuples()] == [
        (e.label, e.spans[0].start, e.spans[-1].end) for e in from_disk]


def test_an_unreachable_server_is_a_one_line_error(tmp_path, tiny_bert_dir):
    port = free_port()  # nothing listens there
    result = run_cli([*quick_args(tiny_bert_dir), f"tracking.uri=http://127.0.0.1:{port}"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"MLflow tracking server http://127.0.0.1:{port} is unreachable" in lines[0], lines
    assert "tracking=none" in lines[0]


def test_parallel_sweep_jobs_log_everything_to_the_server(mlflow_server, tiny_bert_dir, tmp_path):
    """Two jobs at once against the server (four at once against a new SQLite store: test_launchers)."""
    from mlflow import MlflowClient

    url = mlflow_server["url"]
    result = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *quick_args(tiny_bert_dir),
                      "trainer.epochs=2", "data.max_docs=8", "trainer.lr=1e-3,5e-3",
                      "tracking.log_model=false", f"tracking.uri={url}", "tracking.experiment=parallel"],
                     tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=url)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.data.params["trainer.lr"] for r in children) == ["0.001", "0.005"]
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_f1")] == [1, 2]
        assert "test_f1" in run.data.metrics

