"""Hydra launchers: joblib (parallel local jobs), submitit (SLURM presets; its local executor runs for real)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO_ROOT
from test_cli import cli_env, client_for, quick_args, run_cli

needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install -e . installs it)",
)


def sweep_runs(workdir, experiment="medkit_exp"):
    """(parent run, child runs) of the only sweep logged in ``experiment``."""
    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("sweep-")]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


def test_joblib_runs_four_jobs_at_once_against_a_new_sqlite_store(tmp_path, tiny_bert_dir):
    """Four parallel jobs, and a store that does not exist yet: every run and metric recorded.

    Each job waits inside its MLflow run until the four are there (tests/support/barrier.py): run one
    after the other, the first would wait alone and fail.
    """
    barrier = tmp_path / "barrier"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", *quick_args(tiny_bert_dir),
            "trainer.epochs=2", "data.max_docs=8", "trainer.lr=1e-3,5e-3", "trainer.seed=0,1",
            "tracking.log_model=false", "hydra.sweep.dir=sweep",
            "scheduler._target_=support.barrier.linear_warmup_after_barrier", f"+scheduler.folder={barrier}",
            "+scheduler.parties=4"]
    env = {**cli_env(), "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
    result = subprocess.run([sys.executable, "-m", "medkit_exp", *args], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # Four worker processes, none of them the launching one, were waiting at the barrier together.
    assert len(list(barrier.iterdir())) == 4
    assert "database is locked" not in result.stderr
    launcher = yaml.safe_load((tmp_path / "sweep" / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 4

    parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert all(r.info.status == "FINISHED" for r in children)
    assert sorted((r.data.params["trainer.lr"], r.data.params["trainer.seed"]) for r in children) == [
        ("0.001", "0"), ("0.001", "1"), ("0.005", "0"), ("0.005", "1")]
    client = client_for(tmp_path)
    for run in children:  # every metric point of every job is there; the objective is the best epoch's
        history = client.get_metric_history(run.info.run_id, "eval_f1")
        assert [m.step for m in history] == [1, 2]
        assert run.data.metrics["best_eval_f1"] == pytest.approx(max(m.value for m in history))
        assert "test_f1" in run.data.metrics
    # The four runs were open at the same time (each started before the barrier, ended after it).
    assert max(r.info.start_time for r in children) < min(r.info.end_time for r in children)
    # Each job returned its objective; the parent recorded the best one and points at its run.
    best = max(children, key=lambda r: r.data.metrics["best_eval_f1"])
    assert parent.data.metrics["best_eval_f1"] == pytest.approx(best.data.metrics["best_eval_f1"])
    assert parent.data.metrics["jobs"] == 4
    tied = {r.info.run_id for r in children if r.data.metrics["best_eval_f1"] == best.data.metrics["best_eval_f1"]}
    assert parent.data.tags["best.run_id"] in tied
    assert parent.data.tags["sweep.objective"] == "eval_f1"


@needs_submitit
def test_submitit_local_runs_a_job_like_a_cluster_would(workdir, tiny_bert_dir):
    """submitit's local executor pickles the job and runs it in a new process, as on SLURM nodes."""
    result = run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                      *quick_args(tiny_bert_dir),
                      "trainer.epochs=1", "data.max_docs=16", "tracking.log_model=false", "trainer.seed=3",
                      "hydra.sweep.dir=sweep"], workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((workdir / "sweep" / ".submitit").iterdir())  # submitit's job folders and logs
    parent, children = sweep_runs(workdir)
    assert parent.info.status == "FINISHED" and len(children) == 1
    assert children[0].info.status == "FINISHED" and children[0].data.params["trainer.seed"] == "3"
    assert "best_eval_f1" in parent.data.metrics


def launcher_config(args, cwd):
    result = run_cli([*args, "--cfg", "hydra", "-p", "hydra.launcher"], cwd, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


@needs_submitit
def test_slurm_presets_compose_without_a_cluster(tmp_path):
    plain = launcher_config(["hydra/launcher=submitit_slurm"], tmp_path)
    assert plain["_target_"].endswith("submitit_launcher.SlurmLauncher")

    preset = launcher_config(["hydra/launcher=slurm_gpu"], tmp_path)
    assert preset["_target_"] == plain["_target_"]
    assert {k: preset[k] for k in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
                                   "array_parallelism", "max_num_timeout")} == {
        "partition": None, "timeout_min": 240, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 32,
        "array_parallelism": 16, "max_num_timeout": 0}

    tuned = launcher_config(["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu",
                             "hydra.launcher.timeout_min=60", "hydra.launcher.gpus_per_node=2",
                             "+hydra.launcher.additional_parameters.mail-type=END"], tmp_path)
    assert (tuned["partition"], tuned["timeout_min"], tuned["gpus_per_node"]) == ("gpu", 60, 2)
    assert tuned["additional_parameters"] == {"mail-type": "END"}


@needs_submitit
def test_a_mistyped_slurm_setting_is_a_one_line_error(tmp_path):
    result = run_cli(["hydra/launcher=slurm_gpu", "hydra.launcher.partiton=gpu", "--cfg", "hydra"], tmp_path,
                     timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Key 'partiton' not in 'SlurmQueueConf'" in lines[0]
