"""A user's own component, data and metric (examples/my_regressor, examples/my_conf) get the whole
experiment side: CLI run, MLflow run, test scores, sweeps ranked by a min objective, resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from support.forked_cli import run_python

EXAMPLES = REPO_ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # the example package, as a user's launch folder would give it
USER_ARGS = ["--config-dir", str(EXAMPLES / "my_conf"), "component=my_component", "data=my_data",
             "metrics=my_metric", "trainer.checkpoint_metric=mae", "trainer.checkpoint_mode=min",
             "objective=eval_mae", "trainer.batch_size=32", "callbacks.progress_bars=false", "threads=1"]


def run_user_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(EXAMPLES), str(REPO_ROOT / "tests")]))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MEDKIT_EXP_PARENT_RUN_ID", None)
    flags = [a for a in args if a.startswith("-") and not a.startswith("~")]  # Hydra's flags come first
    overrides = [a for a in args if a not in flags]
    return run_python(["-m", "medkit_exp", *flags, *USER_ARGS, *overrides], cwd, env, timeout)


def client_for(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


def run_id_of(stdout: str) -> str:
    return re.search(r"MLflow run\s+: (\w+)", stdout).group(1)


def test_own_component_runs_with_the_whole_experiment_side(workdir):
    result = run_user_cli(["trainer.epochs=6", "trainer.lr=0.01", "scheduler=step5", "scheduler.step_size=4",
                           "hydra.run.dir=out"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(workdir)
    run = client.get_run(run_id_of(result.stdout))
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["component._target_"] == "my_regressor.MLPRegressor" and params["component.hidden"] == "16"
    assert params["data.n_train"] == "256" and params["scheduler.step_size"] == "4"
    assert tags["component"] == "my_component" and tags["dataset.name"] == "my_data"

    history = json.loads((workdir / "out" / "checkpoints" / "history.json").read_text())
    eval_mae = client.get_metric_history(run.info.run_id, "eval_mae")
    assert [(m.step, m.value) for m in eval_mae] == [(h["epoch"], pytest.approx(h["eval"]["mae"])) for h in history]
    # StepLR every 4 epochs, stepped per epoch: the lr after epochs 4-6 is halved.
    lrs = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr"), key=lambda m: m.step)]
    assert lrs == pytest.approx([0.01] * 3 + [0.005] * 3)

    best_epoch = min(history, key=lambda h: h["eval"]["mae"])["epoch"]  # min: checkpoint_mode=min
    assert tags["best_checkpoint.epoch"] == str(best_epoch)
    assert run.data.metrics["eval_mae"] == pytest.approx(history[best_epoch - 1]["eval"]["mae"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.json", "best_checkpoint"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "best_checkpoint")] == ["best_checkpoint/weights.pt"]

    # test_* are the best checkpoint's scores on the test split, by the user's own metrics computer.
    from my_regressor import MLPRegressor, RegressionMetrics, synthetic_splits

    model = MLPRegressor(hidden=16)
    model.load(workdir / "out" / "checkpoints" / f"checkpoint_{best_epoch:03d}" / "model")
    test = synthetic_splits()["test"]
    batch = model.collate([model.preprocess(item) for item in test])
    import torch

    from medkit_exp.training.precision import autocast

    with autocast(tags["precision"], torch.device("cpu")):  # as the run computed (trainer.precision=auto)
        output, _ = model.forward(batch, return_loss=False, eval_mode=True)
    expected = RegressionMetrics().compute(RegressionMetrics().prepare_batch(output, batch))
    assert run.data.metrics["test_mae"] == pytest.approx(expected["mae"], rel=1e-5)
    assert run.data.metrics["test_rmse"] == pytest.approx(expected["rmse"], rel=1e-5)
    assert "test         : loss=" in result.stdout and "mae=" in result.stdout


def test_own_component_sweep_ranks_its_jobs_by_a_minimised_objective(workdir):
    result = run_user_cli(["-m", "trainer.epochs=3", "trainer.lr=0.0005,0.05"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("medkit_exp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "sweep.id" in r.data.tags and "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    best = min(children, key=lambda r: r.data.metrics["eval_mae"])
    assert parents[0].data.tags["best.run_id"] == best.info.run_id
    assert parents[0].data.metrics["best_eval_mae"] == pytest.approx(best.data.metrics["eval_mae"])


def test_own_component_resumes_into_the_same_run_as_an_uninterrupted_one(workdir):
    # A constant lr: the schedule must not depend on trainer.epochs, which the resume raises.
    common = ["trainer.lr=0.01", "scheduler=none"]
    straight = run_user_cli([*common, "trainer.epochs=4", "hydra.run.dir=straight"], workdir)
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = run_user_cli([*common, "trainer.epochs=2", "hydra.run.dir=resumed"], workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_user_cli([*common, "trainer.epochs=4", "hydra.run.dir=resumed", "trainer.resume_from=last"], workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_id_of(first.stdout) == run_id_of(second.stdout)  # one MLflow run, continued

    client = client_for(workdir)

    def maes(run_id):
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, "eval_mae"), key=lambda m: m.step)]

    assert maes(run_id_of(second.stdout)) == maes(run_id_of(straight.stdout))
    assert len(maes(run_id_of(second.stdout))) == 4


def test_a_medkit_style_component_trains_where_it_was_built(workdir):
    result = run_user_cli(["component._target_=support.medkit_style_component.MedkitStyleRegressor",
                           "~component.n_features", "~component.dropout", "~component.optimizer", "data.n_features=4",
                           "trainer.epochs=2", "trainer.lr=0.01", "tracking=none"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test         : loss=" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["+component.no_such_arg=1"], "component.no_such_arg: my_regressor.MLPRegressor has no argument 'no_such_arg'"),
    (["component.hidden=abc"], "component.hidden='abc' is not of type int"),
    (["component._target_=my_regressor.NoSuchClass"], "component._target_=my_regressor.NoSuchClass cannot be imported"),
    (["component._target_=nowhere.Model"], "component._target_=nowhere.Model cannot be imported (ModuleNotFoundError"),
    (["component._target_=collections.OrderedDict"], "which is not a TrainableComponent (no load, preprocess"),
    (["metrics._target_=my_regressor.MLPRegressor"], "which is not a MetricsComputer"),
    (["component.hidden=-3"], "component=my_component: n_features must be >= 1 and hidden >= 0"),
    (["+data.unknown=2"], "data.unknown: my_regressor.synthetic_splits has no argument 'unknown'"),
    (["trainer.checkpoint_metric=f1"], "trainer.checkpoint_metric='f1' is not a computed metric"),
])
def test_a_bad_node_fails_in_one_line_before_anything_is_written(workdir, args, expected):
    result = run_user_cli([*args, "trainer.epochs=1", "hydra.run.dir=out"], workdir)
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    if "checkpoint_metric" in args[0]:  # found during training: after the printer's first line
        lines = [line for line in lines if line.startswith("medkit_exp: error")]
    assert len(lines) == 1 and expected in lines[0], lines
    if "checkpoint_metric" not in args[0]:  # the rest fail before training: no run, no checkpoint
        assert not (workdir / "out" / "checkpoints").exists()
        experiment = client_for(workdir).get_experiment_by_name("medkit_exp")
        assert experiment is None or client_for(workdir).search_runs([experiment.experiment_id]) == []


def test_own_component_trains_data_parallel_under_torchrun(workdir):
    """2 gloo processes of batch 16 give the weights of 1 process of batch 32; rank 0 alone tests and logs."""
    import torch

    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(EXAMPLES)]))
    env.pop("MLFLOW_TRACKING_URI", None)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "medkit_exp",
                          *USER_ARGS, "trainer.epochs=2", "trainer.lr=0.01", "trainer.batch_size=16",
                          "trainer.precision=fp32", "hydra.run.dir=ddp"],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = run_user_cli(["trainer.epochs=2", "trainer.lr=0.01", "trainer.batch_size=32", "hydra.run.dir=single",
                           "tracking=none", "trainer.precision=fp32"], workdir)  # the same weights to 1e-5: fp32
    assert single.returncode == 0, single.stderr[-3000:]
    weights = [torch.load(workdir / side / "checkpoints" / "checkpoint_002" / "model" / "weights.pt")
               for side in ("ddp", "single")]
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-5
    assert ddp.stdout.count("== medkit_exp run summary ==") == 1
    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "test_mae" in runs[0].data.metrics
