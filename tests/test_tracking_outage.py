"""The tracking server goes away during training: a real `mlflow server`, stopped and started again.

The run pauses after chosen epochs (tests/support/pause_at.py) so that the server stops and comes back
at known points of the training, whatever the machine's speed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from support.readme_blocks import command, in_this_environment
from support.servers import RestartableServer, free_port
from test_cli import cli_env, quick_args

EPOCHS = 4


@pytest.fixture
def server(tmp_path, mlflow_template_db):
    """README's ``mlflow server`` line on a free port, with a store that survives restarts."""
    root = tmp_path / "server"
    (root / "mlruns").mkdir(parents=True)
    shutil.copyfile(mlflow_template_db, root / "mlruns" / "mlflow.db")
    port = free_port()
    args = in_this_environment(command("mlflow server --backend-store-uri").args)
    args[args.index("--port") + 1] = str(port)
    url = f"http://127.0.0.1:{port}"
    control = RestartableServer(args, f"{url}/health", root / "server.log",
                                env={**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=root)
    control.url = url
    control.start()
    yield control
    control.stop()


def start_paused_run(workdir: Path, tiny_bert_dir: Path, url: str, pauses: str,
                     env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    signals = workdir / "signals"
    signals.mkdir()
    args = [*quick_args(tiny_bert_dir), f"trainer.epochs={EPOCHS}", "data.max_docs=24", "hydra.run.dir=out",
            "trainer.log_every_n_steps=1", f"tracking.uri={url}", "tracking.experiment=outage"]
    script = REPO_ROOT / "tests" / "support" / "pause_at.py"
    process = subprocess.Popen([sys.executable, str(script), str(signals), pauses, *args],
                               cwd=workdir, env={**cli_env(), **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process, signals


def wait_for_pause(process: subprocess.Popen, signals: Path, epoch: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not (signals / f"paused_{epoch}").exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before epoch {epoch}: {process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"epoch {epoch} not reached in {timeout_s} s"
        time.sleep(0.1)


def steps_of(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def assert_complete(client, run_id: str, output: str) -> None:
    """Every epoch and every optimizer step once, the history artifact whole, the run FINISHED."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in ("eval_f1", "eval_loss", "train_loss", "lr"):
        assert steps_of(client, run_id, key) == list(range(1, EPOCHS + 1)), key
    step_losses = steps_of(client, run_id, "step/train_loss")
    assert step_losses == list(range(1, len(step_losses) + 1)) and len(step_losses) >= EPOCHS
    history = json.loads(Path(client.download_artifacts(run_id, "history.json", output)).read_text())
    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    assert "test_f1" in run.data.metrics and "best_eval_f1" in run.data.metrics
    local = json.loads((Path(output).parent / "out" / "checkpoints" / "history.json").read_text())
    assert [e["eval"]["f1"] for e in local] == [m.value for m in sorted(
        client.get_metric_history(run_id, "eval_f1"), key=lambda m: m.step)]


def test_a_server_down_mid_training_gets_everything_when_it_is_back(server, workdir, tiny_bert_dir):
    from mlflow import MlflowClient

    process, signals = start_paused_run(workdir, tiny_bert_dir, server.url, "1,3")
    wait_for_pause(process, signals, 1)
    server.stop()  # down during epochs 2 and 3
    (signals / "go_1").touch()
    wait_for_pause(process, signals, 3)
    # Training went on, and what the server could not take is on disk beside the checkpoints.
    kept = json.loads((workdir / "out" / "checkpoints" / "mlflow_unsent.json").read_text())
    kept_epochs = sorted({step for key, _, _, step in kept["metrics"] if key == "eval_f1"})
    assert kept_epochs == [2, 3]
    assert (workdir / "out" / "checkpoints").is_dir()
    server.start()
    (signals / "go_3").touch()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    logs = out + err
    assert "MLflow logging failed" in logs and "MLflow logging works again" in logs, logs[-3000:]
    assert "NOT SENT" not in out and not (workdir / "out" / "checkpoints" / "mlflow_unsent.json").exists()
    run_id = re.search(r"MLflow run\s+: (\w+)", out).group(1)
    assert_complete(MlflowClient(server.url), run_id, str(workdir / "dl"))


def test_a_server_that_never_comes_back_leaves_a_command_that_sends_everything(server, workdir, tiny_bert_dir):
    from mlflow import MlflowClient

    # A failed call gives up at once instead of after MLflow's retries (a user setting the run
    # honours; the other test keeps the defaults): the outage path costs no waiting here.
    process, signals = start_paused_run(workdir, tiny_bert_dir, server.url, "1",
                                        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    wait_for_pause(process, signals, 1)
    server.stop()
    (signals / "go_1").touch()
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]  # the training itself succeeded
    line = next(line for line in out.splitlines() if line.startswith("NOT SENT"))
    send = re.search(r"send them with: (python -m medkit_exp\.send_unsent \S+)$", line).group(1)
    assert (workdir / "out" / "checkpoints" / "mlflow_unsent.json").is_file()
    assert (workdir / "out" / "checkpoints" / "history.json").is_file()
    best = re.search(r"checkpoint\s+: (\S+)", out).group(1)
    assert Path(best).is_dir()

    refused = subprocess.run(send.split(), cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "still unreachable" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    server.start()
    sent = subprocess.run(send.split(), cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert "ended FINISHED" in sent.stdout
    assert not (workdir / "out" / "checkpoints" / "mlflow_unsent.json").exists()
    assert (workdir / "out" / "checkpoints" / "mlflow_unsent.json.sent").is_file()
    run_id = re.search(r"MLflow run\s+: (\w+)", out).group(1)
    client = MlflowClient(server.url)
    assert_complete(client, run_id, str(workdir / "dl"))
    assert "model.safetensors" in {Path(a.path).name for a in client.list_artifacts(run_id, "best_checkpoint")}

    again = subprocess.run([*send.split()[:-1], str(workdir / "out" / "checkpoints" / "mlflow_unsent.json.sent")],
                           cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "sent 0 metric point(s)" in again.stdout  # nothing twice
    assert_complete(client, run_id, str(workdir / "dl2"))


def test_a_run_killed_during_an_outage_sends_what_it_kept_when_resumed(mlflow_root, tmp_path, monkeypatch):
    """Epoch 2 is logged while the backend refuses metrics, then the process 'dies' (the run is
    never finished): the spool holds epoch 2; the resumed run sends it first and logs on from
    there; another run started in the same folder sets a foreign spool aside instead of
    overwriting it."""
    from mlflow import MlflowClient
    from test_tracking_callback import entry

    from medkit_exp.tracking.run import TrackedRun

    settings = {"experiment": "tests", "tracking_root": mlflow_root, "spool_dir": tmp_path / "ckpt",
                "flush_timeout_s": 5}
    first = TrackedRun(**settings)
    first.start()
    first.log_epoch(entry(1, 1.0, 0.5), epoch=1)
    real_log_batch = MlflowClient.log_batch

    def refuse_metrics(self, run_id, metrics=(), *args, **kwargs):
        if metrics:
            raise ConnectionError("server gone")
        return real_log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", refuse_metrics)
    first.log_epoch(entry(2, 0.5, 0.6), epoch=2)
    spool = tmp_path / "ckpt" / "mlflow_unsent.json"
    assert sorted({step for key, _, _, step in json.loads(spool.read_text())["metrics"] if key == "eval_f1"}) == [2]
    first._sender.close(0)  # the process dies: the run is never finished
    import mlflow

    mlflow.end_run()
    monkeypatch.setattr(MlflowClient, "log_batch", real_log_batch)  # the server is back (undo() would
    # also undo the fixture's environment, pointing MLflow elsewhere)

    client = MlflowClient()
    assert [m.step for m in client.get_metric_history(first.run_id, "eval_f1")] == [1]
    resumed = TrackedRun(**settings, run_id=first.run_id)
    resumed.start()
    assert sorted(m.step for m in client.get_metric_history(first.run_id, "eval_f1")) == [1, 2]
    assert not spool.exists() and (tmp_path / "ckpt" / "mlflow_unsent.json.sent").is_file()
    resumed.log_epoch(entry(2, 0.5, 0.6), epoch=2)  # the checkpoint was of epoch 1: epoch 2 again
    resumed.log_epoch(entry(3, 0.4, 0.7), epoch=3)
    resumed.finish()
    assert sorted(m.step for m in client.get_metric_history(first.run_id, "eval_f1")) == [1, 2, 3]

    spool.write_text(json.dumps({"run_id": first.run_id, "metrics": [], "calls": []}))
    other = TrackedRun(**settings)
    other.start()
    assert (tmp_path / "ckpt" / f"mlflow_unsent.{first.run_id}.json").is_file() and not spool.exists()
    other.finish()
