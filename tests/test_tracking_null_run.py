"""`NullRun` and `TrackedRun` offer the same calls (`RunTracker`), and `TrackedRun`'s one guard rule."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from medkit_exp.tracking import NullRun, RunTracker, TrackedRun


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def protocol_members() -> set[str]:
    return {name for name in RunTracker.__dict__ if not name.startswith("_")}


def parameters(method) -> list[tuple[str, inspect._ParameterKind, bool]]:
    """Name, kind and whether it has a default, for each parameter but ``self``."""
    return [(p.name, p.kind, p.default is not p.empty) for p in inspect.signature(method).parameters.values()][1:]


def test_null_run_has_every_public_method_and_property_of_tracked_run():
    missing = public_names(TrackedRun) - public_names(NullRun)
    assert not missing, f"NullRun lacks {sorted(missing)}"
    for name in public_names(TrackedRun):
        tracked, null = getattr(TrackedRun, name), getattr(NullRun, name)
        if callable(tracked):
            assert callable(null), name
            assert parameters(null) == parameters(tracked), name
        else:  # a property or a plain attribute: NullRun answers with a value
            assert not callable(null), name


def test_the_protocol_lists_what_both_offer():
    set_in_init = {"run_id", "experiment_id"}  # TrackedRun's instance attributes among the protocol's members
    assert protocol_members() == public_names(TrackedRun) | set_in_init == public_names(NullRun)
    tracked = TrackedRun()
    assert all(hasattr(tracked, name) for name in set_in_init)
    assert isinstance(NullRun(), RunTracker) and isinstance(tracked, RunTracker)
    assert TrackedRun.enabled is True and NullRun.enabled is False


def test_a_null_run_takes_every_call_and_does_nothing(tmp_path):
    run = NullRun()
    run.start()
    run.set_tags({"a": 1})
    run.log_params({"lr": 1})
    run.log_step_metrics({"loss": 1.0}, 1)
    run.remember_eval({"f1": 0.5}, 1)
    run.log_epoch({"eval": {"f1": 0.5}}, 1, 2.0)
    run.log_test_metrics({"f1": 0.5})
    run.log_final_metrics({"best_eval_f1": 0.5})
    run.log_dict_artifact({"a": 1}, "a.json")
    run.log_config("a: 1\n")
    run.log_text("x", "x.txt")
    run.log_folder(tmp_path, "plots")
    run.log_datasets([{"name": "train"}])
    assert run.record_checkpoint(tmp_path) is None
    assert run.log_best_checkpoint(tmp_path) is False and run.log_checkpoint(tmp_path, "last_checkpoint") is False
    run.upload_checkpoints("best_and_last")
    run.flush()
    assert run.wait_until_online() is False
    run.fail(RuntimeError("x"), stop_signal="SIGTERM", phase="training")
    run.finish()
    assert (run.run_id, run.experiment_id, run.unsent_summary, run.offline, run.logging) == (None, None, "", False,
                                                                                              False)
    assert run.ui_command() == "tracking is off"
    assert list(tmp_path.iterdir()) == []


def test_a_null_run_does_not_load_mlflow():
    code = ("import sys; from medkit_exp.tracking import NullRun; NullRun().log_text('x', 'x.txt'); "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_ending_or_waiting_never_starts_a_run(mlflow_root):
    run = TrackedRun(experiment="tests", tracking_root=mlflow_root)
    run.flush()
    assert run.wait_until_online() is False
    run.fail(RuntimeError("before the start"))
    run.finish()
    assert run.run_id is None and MlflowClient(f"sqlite:///{mlflow_root / 'mlflow.db'}").get_experiment_by_name(
        "tests") is None


@pytest.mark.parametrize("write", ["set_tags", "log_datasets", "log_folder"])
def test_every_write_starts_the_run_when_needed(mlflow_root, tmp_path, write):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "f1.txt").write_text("0.5")
    run = TrackedRun(experiment="tests", tracking_root=mlflow_root)
    if write == "set_tags":
        run.set_tags({"stage": "first"})
    elif write == "log_datasets":
        run.log_datasets([{"name": "train", "digest": "abc", "context": "training", "source": {"folder": "x"}}])
    else:
        run.log_folder(tmp_path / "plots", "plots")
    run.finish()
    assert run.run_id is not None
    client = MlflowClient()
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    if write == "set_tags":
        assert stored.data.tags["stage"] == "first"
    elif write == "log_datasets":
        assert [d.dataset.name for d in stored.inputs.dataset_inputs] == ["train"]
    else:
        assert [a.path for a in client.list_artifacts(run.run_id, "plots")] == ["plots/f1.txt"]
