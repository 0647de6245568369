"""SIGINT, SIGTERM and SIGHUP stop a run cleanly in every phase (`medkit_exp.training.phases`).

Each test starts `python -m medkit_exp` held at the start of one phase (tests/support/stop_at.py),
waits for the phase's marker file, sends the signal, and reads the run back from MLflow: it
ended KILLED at a known time with the phase in its tags, kept the metrics logged before the
signal and every checkpoint, printed one line and left with 128 + the signal's number.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from support.stop_at import StopAtServer
from test_cli import cli_env, client_for, quick_args

from medkit_exp.training.callbacks import TrainerCallback

WAIT_S = 240.0  # a safety net only: each run reaches its phase in seconds


@pytest.fixture(scope="module")
def runs():
    server = StopAtServer(cli_env())
    yield server
    server.close()


def run_args(model_dir: Path, epochs: int = 1, log_model: bool = False) -> list[str]:
    return [*quick_args(model_dir), "data.max_docs=24", f"trainer.epochs={epochs}", "trainer.checkpoint_period=1",
            "trainer.log_every_n_steps=1", f"tracking.log_model={str(log_model).lower()}",
            "tracking.system_metrics=false"]


def stop_in(runs: StopAtServer, workdir: Path, spec: str, signals: list[int], args: list[str],
            wait_for: str = "reached") -> tuple[int, str]:
    """Start a run held at ``spec``, send ``signals`` once it is there; its exit status and stderr."""
    markers = workdir / "markers"
    markers.mkdir()
    pid = runs.start(markers, spec, args, workdir, cli_env())
    deadline = time.monotonic() + WAIT_S
    for signum in signals:
        while not (markers / wait_for).exists():
            status = runs.ended(timeout=0.05)
            if status is not None:
                stderr = (workdir / "stderr.txt").read_text()
                pytest.fail(f"the run ended ({status}) before {wait_for}: {stderr[-3000:]}")
            assert time.monotonic() < deadline, f"the run never reached {spec}"
        os.kill(pid, signum)
        wait_for = "ending"  # the second signal, if any, goes to the run being ended
    status = runs.ended(timeout=WAIT_S)
    assert status is not None, "the run did not stop"
    return status, (workdir / "stderr.txt").read_text()


def the_run(workdir: Path):
    client = client_for(workdir)
    (run,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    return client, run


def stop_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("medkit_exp:")]


PHASES = [
    # phase (stop_at spec), signal, epochs, what MLflow holds of what came before, checkpoints left
    ("training@1", signal.SIGHUP, 2, {"eval_f1": [1]}, ("checkpoint_001", "checkpoint_002_step_")),
    ("dev evaluation", signal.SIGTERM, 2, {"eval_f1": [1]}, ("checkpoint_001",)),
    ("test prediction", signal.SIGINT, 1, {"eval_f1": [1], "best_eval_f1": [1]}, ("checkpoint_001",)),
    ("error report", signal.SIGTERM, 1, {"eval_f1": [1], "best_eval_f1": [1]}, ("checkpoint_001",)),
    ("plots", signal.SIGHUP, 1, {"eval_f1": [1], "test_f1": [1]}, ("checkpoint_001",)),
    ("model logging", signal.SIGTERM, 1, {"eval_f1": [1], "test_f1": [1]}, ("checkpoint_001",)),
]


@pytest.mark.parametrize("spec, signum, epochs, logged, checkpoints", PHASES,
                         ids=[f"{p[0].split('@')[0].replace(' ', '_')}-{p[1].name}" for p in PHASES])
def test_a_signal_in_each_phase_ends_the_run_killed_with_its_phase(runs, workdir, tiny_bert_dir, spec, signum, epochs,
                                                                   logged, checkpoints):
    phase = spec.split("@")[0]
    args = [*run_args(tiny_bert_dir, epochs, log_model=phase == "model logging"), "hydra.run.dir=out"]
    status, stderr = stop_in(runs, workdir, spec, [signum], args)

    assert status == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    client, run = the_run(workdir)
    folder = workdir / "out" / "checkpoints"
    (line,) = stop_lines(stderr)
    assert line == (f"medkit_exp: {signum.name} received during {phase}: MLflow run {run.info.run_id} ended as "
                    f"KILLED; checkpoints kept in {folder}")
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert run.data.tags["medkit.stopped_in"] == phase and run.data.tags["medkit.stop_signal"] == signum.name
    for key, steps in logged.items():
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == steps, key
    assert client.get_metric_history(run.info.run_id, "step/train_loss")
    if phase in ("training", "dev evaluation", "test prediction", "error report"):
        assert "test_f1" not in run.data.metrics  # stopped before the test scores
    if phase == "model logging":
        assert "plots" in {a.path for a in client.list_artifacts(run.info.run_id)}
    kept = sorted(p.name for p in folder.glob("checkpoint_*"))
    assert len(kept) == len(checkpoints) and all(k.startswith(c) for k, c in zip(kept, checkpoints, strict=True)), kept
    assert json.loads((folder / "checkpoints.json").read_text())["last"] == kept[-1]
    assert not (folder / "mlflow_unsent.json").exists()  # everything reached the store


def test_a_second_signal_stops_at_once(runs, workdir, tiny_bert_dir):
    """The first signal ends the run cleanly; a second one while that is under way exits at once."""
    args = [*run_args(tiny_bert_dir), "hydra.run.dir=out"]
    status, stderr = stop_in(runs, workdir, "test prediction+hold", [signal.SIGTERM, signal.SIGTERM], args)

    assert status == 143, stderr[-3000:]
    assert stop_lines(stderr) == ["medkit_exp: second SIGTERM: stopping at once"]
    _, run = the_run(workdir)
    assert run.info.status == "RUNNING"  # its clean end was skipped, as asked
    assert (workdir / "out" / "checkpoints" / "checkpoint_001").is_dir()


def test_a_signal_in_a_sweep_job_stops_the_sweep(runs, workdir, tiny_bert_dir):
    args = ["-m", *run_args(tiny_bert_dir), "trainer.seed=0,1", "hydra.sweep.dir=sweep"]
    status, stderr = stop_in(runs, workdir, "test prediction", [signal.SIGTERM], args)

    assert status == 143, stderr[-3000:]
    assert len(stop_lines(stderr)) == 1 and "received during test prediction" in stderr
    client = client_for(workdir)
    runs_made = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    (parent,) = [r for r in runs_made if r.info.run_name.startswith("sweep-")]
    (job,) = [r for r in runs_made if r is not parent]  # the second job never started
    assert job.info.status == "KILLED" and job.data.tags["medkit.stopped_in"] == "test prediction"
    assert parent.info.status == "KILLED" and parent.info.end_time is not None
    assert not list((workdir / "sweep").glob("*/medkit_exp_failed.txt"))  # not a failed job
    assert not (workdir / "sweep" / "1").exists()


# ---------------------------------------------------------------------------- in this process
class SignalAt(TrainerCallback):
    """Sends ``signum`` to this process at the first call of ``hook`` (as a user or a scheduler would)."""

    def __init__(self, signum: int, hook: str) -> None:
        self.signum, self.sent = signum, False
        setattr(self, hook, self.send)

    def send(self, **kwargs) -> None:
        if not self.sent and kwargs.get("phase", "eval") == "eval":
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum, hook, epochs",
                         [(signal.SIGHUP, "on_step_begin", 2), (signal.SIGTERM, "on_train_end", 1)],
                         ids=["sighup-in-the-dev-evaluation", "sigterm-after-the-last-step"])
def test_a_signal_after_the_epochs_last_step_stops_once_its_checkpoint_is_written(tmp_path, signum, hook, epochs):
    """The loop checks for a signal after each optimizer step but the epoch's last; one that comes
    in the evaluation, or after the last epoch, still stops training with a checkpoint kept."""
    from support.dummy_component import DummyClassifier
    from test_trainer import EVAL, TRAIN, config

    from medkit_exp.training import Trainer

    def unhandled(signum, frame):  # what the signal would do to this test process if the Trainer missed it
        raise RuntimeError(f"{signal.Signals(signum).name} reached the caller's handler")

    trainer = Trainer(DummyClassifier(), config(tmp_path, epochs=epochs), TRAIN, EVAL,
                      callbacks=[SignalAt(signum, hook)])
    previous = signal.signal(signum, unhandled)
    try:
        with pytest.raises(SystemExit) as stopped:
            trainer.train()
    finally:
        signal.signal(signum, previous)
    assert stopped.value.code == 128 + signum and trainer.stop_signal == signum
    assert [entry["epoch"] for entry in trainer.history] == [1]
    assert json.loads((tmp_path / "out" / "checkpoints.json").read_text())["last"] == "checkpoint_001"


def test_run_phases_restore_the_callers_handlers_and_leave_ignored_signals_alone():
    from medkit_exp.training.phases import RunPhases

    def callers(signum, frame):
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, callers)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    try:
        with RunPhases() as phases:
            assert signal.getsignal(signal.SIGTERM) == phases._handle
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_signal_while_the_run_is_started_or_ended_waits_until_that_is_done():
    from medkit_exp.training.phases import ENDING, RunPhases

    done = []
    with RunPhases() as phases:
        phases.enter(ENDING)
        with pytest.raises(SystemExit) as stopped, phases.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0)  # the handler runs here, and lets the block go on
            done.append("run ended")
    assert done == ["run ended"] and stopped.value.code == 143
    assert (phases.signal, phases.stopped_in) == (signal.SIGTERM, ENDING)


def test_a_component_announces_its_phase_only_inside_a_run():
    from medkit_exp.training.phases import ERROR_REPORT, TEST_PREDICTION, RunPhases, phase

    with phase(ERROR_REPORT):  # outside a run: nothing happens
        pass
    with RunPhases(handle_signals=False) as phases:
        phases.enter(TEST_PREDICTION)
        with phase(ERROR_REPORT):
            assert phases.current == ERROR_REPORT
        assert phases.current == TEST_PREDICTION


def test_run_phases_time_each_phase_a_nested_one_apart(monkeypatch):
    from medkit_exp.training import phases as phases_module

    clock = iter([0.0, 2.0, 5.0, 6.0, 10.0, 10.5])
    monkeypatch.setattr(phases_module.time, "perf_counter", lambda: next(clock))
    run = phases_module.RunPhases(handle_signals=False)  # setup from 0.0
    run.enter(phases_module.TRAINING)  # 2.0
    run.enter(phases_module.TEST_PREDICTION)  # 5.0
    with run.phase(phases_module.ERROR_REPORT):  # 6.0 .. 10.0
        pass
    assert run.timings() == {"setup": 2.0, "training": 3.0, "test prediction": 1.5, "error report": 4.0}
