"""The named phases of a run, and a clean stop in every one of them.

`medkit_exp.app.run` goes through these phases, in this order:

    setup -> preprocessing -> training (dev evaluation at each epoch's end) -> test prediction
    (error report) -> plots -> artifact logging -> model logging -> ending

While `RunPhases` is active (the whole of ``run``), SIGINT, SIGTERM and SIGHUP stop the run
cleanly in any phase. Inside ``Trainer.train`` the Trainer's own handlers finish the current
optimizer step (or the epoch's evaluation) and write a checkpoint first; anywhere else the
phase stops at once. The app then ends the MLflow run as KILLED with the phase in its
``medkit.stopped_in`` tag (what the server did not take is kept in ``mlflow_unsent.json``),
prints one line and leaves with 128 + the signal's number (130, 143, 129). A second signal
stops at once, without the clean end. While the run is being started or ended in MLflow
(`deferred`), a signal waits until that is done, so that no run is left RUNNING.

A component announces its own phases with `phase` (``with phases.phase(ERROR_REPORT): ...``);
outside a run it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

SETUP = "setup"
PREPROCESSING = "preprocessing"
TRAINING = "training"
DEV_EVALUATION = "dev evaluation"
TEST_PREDICTION = "test prediction"
ERROR_REPORT = "error report"
PLOTS = "plots"
ARTIFACT_LOGGING = "artifact logging"
MODEL_LOGGING = "model logging"
ENDING = "ending"

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_REPORTED = "_medkit_exp_stop_reported"


def stop_exception(signum: int) -> BaseException:
    """What a stop signal becomes: SIGINT a KeyboardInterrupt, the others an exit with 128 + its number."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)


def signal_of(exc: BaseException) -> int | None:
    """The stop signal ``exc`` stands for (`stop_exception`'s inverse), else None."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code - 128 in STOP_SIGNALS:
        return exc.code - 128
    return None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def mark_reported(exc: BaseException) -> BaseException:
    """Note that the stop ``exc`` stands for was already told to the user in its one line."""
    setattr(exc, _REPORTED, True)
    return exc


def was_reported(exc: BaseException) -> bool:
    return bool(getattr(exc, _REPORTED, False))


def _stop_now(signum: int) -> None:
    """A second signal: leave at once, skipping the clean end (os.write: no print re-entered)."""
    os.write(2, f"\nmedkit_exp: second {signal_name(signum)}: stopping at once\n".encode())
    os._exit(128 + signum)


class RunPhases:
    """The phase a run is in, and, while active, the handlers that stop it cleanly (see the module).

    Args:
        handle_signals: False leaves signals alone (under torchrun the launcher owns them).
            Handlers are installed only from the main thread, never over a signal the process
            ignores (``nohup`` ignores SIGHUP), and the previous ones come back when the run ends.
    """

    def __init__(self, handle_signals: bool = True) -> None:
        self.handle_signals = handle_signals
        self.current = SETUP
        self.signal: int | None = None  # the first stop signal received, by these handlers or the Trainer's
        self.stopped_in: str | None = None  # the phase it came in
        self._previous_handlers: dict[int, Any] = {}
        self._previous_active: RunPhases | None = None
        self._deferring = False
        self._stopping = False
        self.seconds: dict[str, float] = {}  # wall time spent in each phase (a nested phase's apart)
        self._since = time.perf_counter()

    @property
    def handling(self) -> bool:
        """True while this object's handlers are installed."""
        return bool(self._previous_handlers)

    def __enter__(self) -> RunPhases:
        global _active
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                    self._previous_handlers[signum] = signal.signal(signum, self._handle)
        self._previous_active, _active = _active, self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        _active = self._previous_active

    def enter(self, name: str) -> None:
        """The run is now in phase ``name``."""
        if name != self.current:
            now = time.perf_counter()
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self._since
            self.current, self._since = name, now

    def timings(self) -> dict[str, float]:
        """Seconds spent so far in each phase, in the order the phases were first entered."""
        spent = dict(self.seconds)
        spent[self.current] = spent.get(self.current, 0.0) + time.perf_counter() - self._since
        return spent

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Phase ``name`` inside the current one (which comes back afterwards)."""
        outer = self.current
        self.enter(name)
        try:
            yield
        finally:
            self.enter(outer)

    def note_signal(self, signum: int) -> None:
        """A stop signal was received (by the Trainer's handlers): remember it and the phase."""
        if self.signal is None:
            self.signal, self.stopped_in = signum, self.current

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A stop signal received in this block stops the run only once the block is done."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signal is not None:
            raise stop_exception(self.signal)

    def stopping(self) -> None:
        """The run is being ended after a stop: from now on any signal stops at once."""
        self._stopping = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self._stopping or self.signal is not None:
            _stop_now(signum)
        self.note_signal(signum)
        if not self._deferring:
            raise stop_exception(signum)


_active: RunPhases | None = None


def active() -> RunPhases | None:
    """The phases of the run in progress in this process, if any."""
    return _active


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Announce phase ``name`` of the run in progress (a no-op outside a run)."""
    current = _active
    if current is None:
        yield
        return
    with current.phase(name):
        yield
