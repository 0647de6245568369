"""The Trainer's stop signals: Ctrl-C, SIGTERM (a scheduler's end of job) and SIGHUP stop
training gracefully, after the current optimizer step and a checkpoint.

The app has its own handlers for the phases around training (`medkit_exp.training.phases`);
these replace them while the Trainer trains, outside torchrun (whose launcher owns signals).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def interruption(signum: int) -> BaseException:
    """What a stop signal becomes: Ctrl-C a KeyboardInterrupt, SIGTERM (SIGHUP) an exit with 143 (129)."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)


class StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP ask the loop to stop after the current optimizer step
    (or the epoch's evaluation) and a checkpoint; a second signal stops at once. A signal the
    loop did not act on (it came after the last step) still stops when training ends. Only
    installed from the main thread (Python's rule); the previous handlers come back after."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if exc_type is None and self.received is not None:
            raise interruption(self.received)

    def raise_if_received(self) -> None:
        """Raise the interruption of a signal received so far (the loop acts on it now)."""
        if self.received is not None:
            raise interruption(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise interruption(signum)
        self.received = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after the current step and writing a "
              "checkpoint (send it again to stop at once)", flush=True)
