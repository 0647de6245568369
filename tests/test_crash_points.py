"""A run killed at any point of its epoch and checkpoint bookkeeping, then resumed with
``trainer.resume_from=last``, leaves the MLflow run an uninterrupted run would have left:
every epoch's metrics once, every optimizer step's once, the same values.

The kill is an ``os._exit`` injected at a chosen point by tests/support/crash_at.py, so each point is hit
exactly, however fast or loaded the machine is.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from test_cli import cli_env, client_for, quick_args, run_cli

POINTS = ["epoch_queued", "during_checkpoint", "index_not_updated", "after_checkpoint", "step_queued"]
HISTORIES = ["train_loss", "eval_f1", "eval_loss", "lr", "step/train_loss"]


def run_args(model_dir) -> list[str]:
    return [*quick_args(model_dir), "data.max_docs=24", "trainer.epochs=3", "trainer.checkpoint_period=1",
            "trainer.log_every_n_steps=1", "tracking.log_model=false"]


def histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in HISTORIES}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mlflow_template_db, tiny_bert_dir):
    import shutil

    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, folder / "mlruns" / "mlflow.db")
    result = run_cli([*run_args(tiny_bert_dir), "hydra.run.dir=straight"], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(folder)
    (run,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    return histories(client, run.info.run_id)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_point_then_resume_logs_every_metric_once(point, workdir, tiny_bert_dir, uninterrupted):
    args = run_args(tiny_bert_dir)
    killed = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "support" / "crash_at.py"), point, *args,
                             "hydra.run.dir=killed"], cwd=workdir, env=cli_env(), capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert "Epoch 3 " not in killed.stdout + killed.stderr or point == "step_queued"
    resumed = run_cli([*args, "trainer.resume_from=last", "hydra.run.dir=resumed"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client = client_for(workdir)
    (run,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    assert run.info.status == "FINISHED"
    got = histories(client, run.info.run_id)
    for key in HISTORIES:
        assert [s for s, _ in got[key]] == [s for s, _ in uninterrupted[key]], f"{key} steps after a kill at {point}"
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in uninterrupted[key]], rel=1e-6), key
