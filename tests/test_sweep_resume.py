"""An interrupted grid sweep resumes: the same parent run, finished jobs skipped, the interrupted
one continued in its own run, failed ones run again, new ones run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from test_cli import cli_env, client_for, quick_args, run_cli


# ---------------------------------------------------------------------------- the decision
def job_run(client, experiment_id, parent_id, overrides, status, tags=None, metrics=None):
    """A child run of ``parent_id`` as a sweep job leaves it."""
    run = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "hydra.overrides": overrides,
                                                 **(tags or {})})
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def checkpoints(folder: Path) -> str:
    """A folder holding a checkpoint index, as the Trainer leaves it."""
    folder.mkdir(parents=True)
    (folder / "checkpoints.json").write_text(json.dumps({"last": "checkpoint_001"}))
    return str(folder)


def dead_pid() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()


def test_each_earlier_state_of_a_job_gives_its_plan(mlflow_root, tmp_path):
    import socket

    from mlflow.tracking import MlflowClient

    from medkit_exp.errors import UserError
    from medkit_exp.sweeps.resume import RERUN, RESUME, RUN, SKIP, children, decide, job_key
    from medkit_exp.tracking.stale import DIED_TAG, HOST_TAG, PID_TAG, fail_dead_runs
    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(None, "plans", mlflow_root)
    client = MlflowClient()
    parent = client.create_run(experiment_id, tags={"sweep.id": "s"}).info.run_id
    host = socket.gethostname()
    here = {HOST_TAG: host}
    ids = {
        "finished": job_run(client, experiment_id, parent, "trainer.lr=1 trainer.seed=0", "FINISHED",
                            metrics={"eval_f1": 0.5, "best_eval_f1": 0.7}),
        "killed": job_run(client, experiment_id, parent, "trainer.lr=2", "KILLED",
                          {"checkpoint.dir": checkpoints(tmp_path / "killed")}),
        "killed_early": job_run(client, experiment_id, parent, "trainer.lr=3", "KILLED",
                                {"checkpoint.dir": str(tmp_path / "none_yet")}),
        "dead": job_run(client, experiment_id, parent, "trainer.lr=4", "RUNNING",
                        {**here, PID_TAG: dead_pid(), "checkpoint.dir": checkpoints(tmp_path / "dead")}),
        "alive": job_run(client, experiment_id, parent, "trainer.lr=5", "RUNNING", {**here, PID_TAG: str(os.getpid())}),
        "failed": job_run(client, experiment_id, parent, "trainer.lr=6", "FAILED",
                          {"medkit.error": "ValueError: loss is nan\nmore",
                           "checkpoint.dir": checkpoints(tmp_path / "failed")}),
        "stale": job_run(client, experiment_id, parent, "trainer.lr=7", "RUNNING",
                         {**here, PID_TAG: dead_pid(), "checkpoint.dir": checkpoints(tmp_path / "stale")}),
    }
    # A later job's run ended the dead one FAILED: it still reads as interrupted, not failed.
    assert set(fail_dead_runs(client, experiment_id)) == {ids["dead"], ids["stale"]}
    assert client.get_run(ids["stale"]).data.tags[DIED_TAG] == "true"
    # the earlier attempt of a job that was then run again and finished: the finished one counts
    job_run(client, experiment_id, parent, "trainer.seed=0 trainer.lr=1", "FAILED")
    unrelated = client.create_run(experiment_id, tags={"hydra.overrides": "trainer.lr=1 trainer.seed=0"})
    client.set_terminated(unrelated.info.run_id, "FINISHED")  # not a child of this sweep

    runs = children(client, parent)
    assert len(runs) == 8

    def plan(*overrides):
        return decide([r for r in runs if job_key(r.data.tags["hydra.overrides"]) == job_key(overrides)], "eval_f1")

    finished = plan("trainer.seed=0", "trainer.lr=1", "+sweep.resume=abc")  # any order, the resume override left out
    assert (finished.action, finished.run_id, finished.objective) == (SKIP, ids["finished"], 0.7) and finished.skipped
    assert (plan("trainer.lr=2").action, plan("trainer.lr=2").run_id) == (RESUME, ids["killed"])
    assert plan("trainer.lr=3").action == RERUN and "before its first checkpoint" in plan("trainer.lr=3").reason
    assert plan("trainer.lr=4").action == RESUME and plan("trainer.lr=7").action == RESUME
    with pytest.raises(UserError, match=f"{ids['alive']} of this sweep job is still running"):
        plan("trainer.lr=5")
    failed = plan("trainer.lr=6")
    assert (failed.action, failed.run_id, failed.reason) == (RERUN, ids["failed"], "FAILED (ValueError: loss is nan)")
    assert plan("trainer.lr=8").action == RUN and not plan("trainer.lr=8").skipped


def test_each_job_counts_once_in_a_resumed_sweep_its_finished_run_first():
    from types import SimpleNamespace

    from medkit_exp.sweeps.resume import job_key, latest_per_job

    def run(run_id, overrides, status, start, trial=None):
        tags = {"hydra.overrides": overrides, **({"sweep.trial": trial} if trial else {})}
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status, start_time=start),
                               data=SimpleNamespace(tags=tags))

    runs = [run("a1", "lr=1 seed=0", "FAILED", 1), run("a2", "seed=0 lr=1", "FINISHED", 2),
            run("b1", "lr=2", "FINISHED", 3), run("b2", "lr=2", "FAILED", 4),
            run("c1", "lr=3", "FINISHED", 5, trial="0"), run("c2", "lr=3", "FINISHED", 6, trial="1")]
    assert sorted(r.info.run_id for r in latest_per_job(runs)) == ["a2", "b1", "c1", "c2"]
    assert job_key("(none)") == job_key([]) == ()


def test_a_new_run_never_writes_over_earlier_checkpoints(tmp_path):
    from medkit_exp.sweeps.resume import unused_folder

    folder = tmp_path / "3" / "checkpoints"
    assert unused_folder(folder) == folder  # nothing there yet
    checkpoints(folder)  # a failed attempt's, or another job's when the grid changed
    assert unused_folder(folder) == folder.with_name("checkpoints-2")
    checkpoints(folder.with_name("checkpoints-2"))
    assert unused_folder(folder) == folder.with_name("checkpoints-3")


# ---------------------------------------------------------------------------- end to end
HELD = 2  # the third job (Hydra numbers jobs from 0)


def sweep_args(model_dir: Path) -> list[str]:
    return ["-m", *quick_args(model_dir), "data.max_docs=16", "trainer.epochs=2", "trainer.checkpoint_period=1",
            "trainer.log_every_n_steps=1", "tracking.log_model=false", "tracking.system_metrics=false",
            "trainer.lr=1e-3,5e-3", "trainer.seed=0,1", "hydra.sweep.dir=sweep"]


def files_and_times(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_grid_sweep_killed_in_its_third_job_resumes_where_it_stopped(workdir, tiny_bert_dir):
    args = sweep_args(tiny_bert_dir)
    held = workdir / "held"
    held.mkdir()
    script = REPO_ROOT / "tests" / "support" / "hold_sweep_job.py"
    process = subprocess.Popen([sys.executable, str(script), str(held), str(HELD), "1", *args], cwd=workdir,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = held / f"job{HELD}_epoch1"
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # after job 3's first checkpoint: nothing can end its run
    output = process.communicate(timeout=60)[0]
    assert marker.exists(), output[-3000:]

    client = client_for(workdir)
    experiment_id = client.get_experiment_by_name("medkit_exp").experiment_id
    (parent,) = [r for r in client.search_runs([experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    before = {r.data.tags["hydra.overrides"]: r for r in client.search_runs([experiment_id])
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(r.info.status for r in before.values()) == ["FINISHED", "FINISHED", "RUNNING"]
    (interrupted,) = [r for r in before.values() if r.info.status == "RUNNING"]
    assert Path(interrupted.data.tags["checkpoint.dir"]) == workdir / "sweep" / str(HELD) / "checkpoints"
    done = {r.info.run_id: r for r in before.values() if r.info.status == "FINISHED"}
    kept = {run_id: files_and_times(Path(r.data.tags["checkpoint.dir"])) for run_id, r in done.items()}

    result = run_cli(args, workdir, timeout=600)  # the same command, the same sweep folder
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"MLflow parent run {parent.info.run_id} (3 earlier job run(s))" in out
    skipped = [line for line in out.splitlines() if line.startswith("Sweep job skipped: MLflow run ")]
    assert sorted(line.split()[5] for line in skipped) == sorted(done)
    assert f"Sweep job resumed: MLflow run {interrupted.info.run_id} was left RUNNING by a process that died" in out
    checkpoint = Path(interrupted.data.tags["checkpoint.dir"]) / "checkpoint_001"
    assert f"Resuming from {checkpoint} in MLflow run {interrupted.info.run_id}" in out

    runs = client.search_runs([experiment_id])
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [parent.info.run_id]
    after = {r.data.tags["hydra.overrides"]: r for r in runs
             if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(after) == 4 and len([r for r in runs if r.info.run_id != parent.info.run_id]) == 4
    for overrides, run in before.items():
        assert after[overrides].info.run_id == run.info.run_id  # no new run for any job that had one
    for run_id, earlier in done.items():  # not run again: the same end, the same checkpoint files
        run = client.get_run(run_id)
        assert (run.info.status, run.info.end_time) == ("FINISHED", earlier.info.end_time)
        assert files_and_times(Path(run.data.tags["checkpoint.dir"])) == kept[run_id]

    resumed = client.get_run(interrupted.info.run_id)
    assert resumed.info.status == "FINISHED" and "process.died" not in resumed.data.tags
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "eval_f1")] == [1, 2]
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "step/train_loss")]
    assert sorted(steps) == list(range(1, len(steps) + 1)) and len(steps) >= 2  # each step once, none lost
    history = json.loads((checkpoint.parent / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]

    (new,) = [r for overrides, r in after.items() if overrides not in before]
    assert new.info.status == "FINISHED"
    assert Path(new.data.tags["checkpoint.dir"]) == workdir / "sweep" / "3" / "checkpoints"

    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs"] == 4
    assert parent.data.tags["sweep.resumes"] == "1" and parent.data.tags["best.run_id"] in {
        r.info.run_id for r in after.values()}
    summary = json.loads(Path(client.download_artifacts(parent.info.run_id, "sweep_summary.json",
                                                        str(workdir))).read_text())
    ranked = sorted(run_id for c in summary["configurations"] for run_id in c["run_ids"])
    assert ranked == sorted(r.info.run_id for r in after.values())

    # Naming the parent from another folder: every job finished, so every job is skipped.
    again = run_cli([*args[:-1], "hydra.sweep.dir=elsewhere", f"+sweep.resume={parent.info.run_id}"], workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("Sweep job skipped: ") == 4
    assert len(client.search_runs([experiment_id])) == 5
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_resuming_a_run_that_is_not_a_sweep_parent_is_a_one_line_error(workdir):
    client = client_for(workdir)
    experiment_id = client.create_experiment("medkit_exp",
                                             artifact_location=(workdir / "mlruns" / "artifacts").as_uri())
    job = client.create_run(experiment_id, tags={"sweep.id": "x", "mlflow.parentRunId": "p"}).info.run_id
    for run_id in (job, "0" * 32):
        result = run_cli(["-m", "trainer.seed=0,1", f"+sweep.resume={run_id}"], workdir, timeout=120)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.strip().splitlines() == [
            f"medkit_exp: error: +sweep.resume={run_id} is not the parent run of a sweep in this tracking store "
            "(its run_name is sweep-<date>-<time>)"]
    assert len(client.search_runs([experiment_id])) == 1  # no parent run made
