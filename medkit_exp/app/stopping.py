"""How a run ends when it does not end well: a stop signal (SIGINT, SIGTERM, SIGHUP) ends its
MLflow run KILLED with the phase it came in and prints one line; any other failure ends it FAILED.
`RunPhases` (`medkit_exp.training.phases`) receives the signals; this module decides what they mean
for the run."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medkit_exp.app.build import Experiment
from medkit_exp.tracking import RunTracker
from medkit_exp.training.phases import (
    DEV_EVALUATION,
    ENDING,
    TRAINING,
    RunPhases,
    mark_reported,
    signal_name,
    signal_of,
    stop_exception,
)


@contextmanager
def run_ends_cleanly(experiment: Experiment, phases: RunPhases) -> Iterator[None]:
    """Around tracking, training and testing: a stop signal ends the run KILLED (one line, then
    `KeyboardInterrupt` or `SystemExit` with 128 + the signal's number), any other exception FAILED;
    the component is freed either way."""
    try:
        yield
    except BaseException as exc:
        signum = stop_signal(phases, exc)
        if signum is None:
            experiment.tracker.fail(exc)
            raise
        end_stopped_run(phases, experiment.tracker, exc)
        print_stop(phases, signum, experiment.tracker, Path(experiment.trainer_cfg.output_dir))
        if signal_of(exc) != signum:  # a library turned the interruption into an error of its own
            raise mark_reported(stop_exception(signum)) from exc
        mark_reported(exc)
        raise
    finally:
        experiment.release_component()


def stop_signal(phases: RunPhases, exc: BaseException) -> int | None:
    """The stop signal that ended the run (``exc`` is its interruption, or what a library made of
    it), else None; always None when the run does not handle signals (torchrun)."""
    if not phases.handling:
        return None
    return phases.signal if phases.signal is not None else signal_of(exc)


def end_stopped_run(phases: RunPhases, tracker: RunTracker, exc: BaseException) -> None:
    """When a stop signal ended the run: end its MLflow run KILLED, tagged with the signal and the
    phase (sent, or kept in the spool file), once; any later signal stops at once."""
    signum = stop_signal(phases, exc)
    if signum is None:
        return
    phases.stopping()
    tracker.fail(exc, stop_signal=signal_name(signum), phase=phases.stopped_in or phases.current)


def print_stop(phases: RunPhases, signum: int, tracker: RunTracker, checkpoint_dir: Path) -> None:
    """The one line a stopped run prints: the signal, the phase, how its MLflow run ended, its checkpoints."""
    phase = phases.stopped_in or phases.current
    if tracker.run_id:
        ended = "FINISHED" if phase == ENDING else "KILLED"
        outcome = f"MLflow run {tracker.run_id} ended as {ended}"
    else:
        outcome = "stopped"
    kept = (f"checkpoints kept in {checkpoint_dir}" if any(checkpoint_dir.glob("checkpoint_*"))
            else "no checkpoint written yet")
    unsent = f"; {tracker.unsent_summary}" if tracker.unsent_summary else ""
    print(f"medkit_exp: {signal_name(signum)} received during {phase}: {outcome}; {kept}{unsent}",
          file=sys.stderr, flush=True)


class TrainingPhases:
    """Trainer callback: tells `RunPhases` when training is in its dev evaluation, and a stop signal
    the Trainer's own handlers received (set ``trainer``); ``on_exception`` gets what stopped it."""

    def __init__(self, phases: RunPhases, on_exception: Callable[[BaseException], None]) -> None:
        self.phases = phases
        self.trainer: Any = None
        self._on_exception = on_exception

    def _note_signal(self) -> None:
        received = getattr(self.trainer, "stop_signal", None)
        if received is not None:
            self.phases.note_signal(received)  # in the phase it came in, before the next one starts

    def on_train_begin(self, config: Any) -> None:
        self._note_signal()
        self.phases.enter(TRAINING)

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        self._note_signal()
        self.phases.enter(DEV_EVALUATION if phase == "eval" else TRAINING)

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        self._note_signal()

    def on_evaluate(self, metrics: dict[str, float], epoch: int) -> None:
        self._note_signal()
        self.phases.enter(TRAINING)  # the epoch's logging and checkpoint

    def on_exception(self, exception: BaseException) -> None:
        self._note_signal()
        self._on_exception(exception)
