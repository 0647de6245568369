"""Trainer callbacks: everything that watches a run (printing, tracking) lives here.

The Trainer calls every hook with keyword arguments whose names are the ones in the base
class below, so a callback overrides only the hooks it needs and never crashes on the
others (medkit's base class named an argument differently from what its Trainer passed).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_end`` to end training after this epoch, as a success.

    The epoch's checkpoint is still written, the other callbacks still see the epoch, and
    `Trainer.train` returns the history; `Trainer.stop_reason` keeps the message. A sweep's
    pruner stops a bad trial this way.
    """


class TrainerCallback:
    """Base class: every hook is a no-op. Override what you need."""

    def on_train_begin(self, config: Any) -> None:
        """Before the first epoch; ``config`` is the `TrainerConfig`."""

    def on_train_end(self) -> None:
        """After the last epoch (also after early stopping)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before training epoch ``epoch`` (1-based)."""

    def on_epoch_end(self, metrics: dict[str, Any], epoch: int, epoch_duration: float) -> None:
        """After an epoch's training and evaluation; ``metrics`` is that epoch's history entry."""

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        """Before batch ``step_idx`` (0-based) of ``nb_batches`` in ``phase`` ("train" or "eval")."""

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str, batch_size: int = 0,
                    loss: float | None = None) -> None:
        """After a batch; ``loss`` is that batch's loss when one was computed."""

    def on_log(self, logs: dict[str, float], global_step: int) -> None:
        """Every ``log_every_n_steps`` optimizer steps: running train loss, learning rate."""

    def on_evaluate(self, metrics: dict[str, float], epoch: int) -> None:
        """After an evaluation pass, with its metrics (``loss`` included)."""

    def on_save(self, checkpoint_dir: Path) -> None:
        """After a checkpoint was written (atomically) to ``checkpoint_dir``."""

    def on_exception(self, exception: BaseException) -> None:
        """When training stops on an exception (KeyboardInterrupt included), before it propagates."""


class CallbackList:
    """Calls a hook on every callback, in order: one method per hook of `TrainerCallback`, so
    that calling a hook that does not exist raises AttributeError.

    A callback may leave any hook out (a medkit callback has no ``on_log`` or ``on_exception``),
    and a hook gets only the arguments its signature takes (medkit's ``on_step_end`` takes no
    ``batch_size``), under medkit's names where it uses them (``epoch_time``). A `StopTraining`
    raised by a hook reaches the caller once every callback has seen the hook. An error raised
    by an ``on_exception`` is logged, never raised: it must not hide the error that stopped
    training.

    ``callbacks``: `TrainerCallback` objects, or any objects with some of its hooks (medkit's).
    """

    def __init__(self, callbacks: Sequence[object]) -> None:
        self.callbacks = list(callbacks)

    def on_train_begin(self, *, config: Any) -> None:
        self._call("on_train_begin", config=config)

    def on_train_end(self) -> None:
        self._call("on_train_end")

    def on_epoch_begin(self, *, epoch: int) -> None:
        self._call("on_epoch_begin", epoch=epoch)

    def on_epoch_end(self, *, metrics: dict[str, Any], epoch: int, epoch_duration: float) -> None:
        self._call("on_epoch_end", metrics=metrics, epoch=epoch, epoch_duration=epoch_duration)

    def on_step_begin(self, *, step_idx: int, nb_batches: int, phase: str) -> None:
        self._call("on_step_begin", step_idx=step_idx, nb_batches=nb_batches, phase=phase)

    def on_step_end(self, *, step_idx: int, nb_batches: int, phase: str, batch_size: int,
                    loss: float | None) -> None:
        self._call("on_step_end", step_idx=step_idx, nb_batches=nb_batches, phase=phase, batch_size=batch_size,
                   loss=loss)

    def on_log(self, *, logs: dict[str, float], global_step: int) -> None:
        self._call("on_log", logs=logs, global_step=global_step)

    def on_evaluate(self, *, metrics: dict[str, float], epoch: int | None) -> None:
        self._call("on_evaluate", metrics=metrics, epoch=epoch)

    def on_save(self, *, checkpoint_dir: Path) -> None:
        self._call("on_save", checkpoint_dir=checkpoint_dir)

    def on_exception(self, *, exception: BaseException) -> None:
        for callback in self.callbacks:
            method = getattr(callback, "on_exception", None)
            if method is None:
                continue
            try:
                method(**_accepted(method, {"exception": exception}))
            except Exception as exc:  # the original error goes on; this one is logged
                log.warning("%s.on_exception failed: %s", type(callback).__name__, exc, exc_info=True)

    def _call(self, hook: str, **kwargs: Any) -> None:
        stop: StopTraining | None = None
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is None:
                continue
            try:
                method(**_accepted(method, kwargs))
            except StopTraining as exc:  # every callback still sees the hook, then the loop stops
                stop = stop or exc
        if stop is not None:
            raise stop


def callback_list(callbacks: Sequence[TrainerCallback] | TrainerCallback | None, callback: TrainerCallback | None,
                  is_main: bool) -> list[object]:
    """The Trainer's ``callbacks`` (a list, or one callback, a medkit one too) with medkit's one ``callback``
    first; a `DefaultPrinterCallback` on the main process when neither is given."""
    if callbacks is None and callback is None:
        return [DefaultPrinterCallback()] if is_main else []
    if callbacks is None:
        given: list[object] = []
    elif isinstance(callbacks, (list, tuple)):
        given = list(callbacks)
    else:
        given = [callbacks]  # one callback (a medkit one too)
    return given if callback is None else [callback, *given]


# Arguments a hook may name as medkit's base TrainerCallback does -> the name the Trainer passes.
MEDKIT_ARGUMENTS = {"epoch_time": "epoch_duration"}


def _accepted(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``method`` takes (all of them if it takes ``**kwargs``), under
    medkit's names where its signature uses them."""
    names = _parameter_names(getattr(method, "__func__", method))
    if names is None:
        return kwargs
    accepted = {k: v for k, v in kwargs.items() if k in names}
    for medkit_name, name in MEDKIT_ARGUMENTS.items():
        if medkit_name in names and name in kwargs:
            accepted.setdefault(medkit_name, kwargs[name])
    return accepted


@functools.lru_cache(maxsize=256)
def _parameter_names(function: Callable[..., Any]) -> frozenset[str] | None:
    """Names a function accepts by keyword; None when it takes ``**kwargs`` (or has no signature)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(parameters)


class DefaultPrinterCallback(TrainerCallback):
    """Progress bars for train and eval (loss, samples/s) and a readable epoch summary."""

    def __init__(self, stream: Any = None, progress_bars: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        # None lets tqdm decide: bars on a terminal, none in log files and CI.
        self.progress_bars = progress_bars
        self._bar: tqdm | None = None
        self._phase_start = 0.0
        self._samples = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    def _print(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def on_train_begin(self, config: Any) -> None:
        self._print(
            f"Training for {config.epochs} epoch(s), batch size {config.batch_size}"
            f" x {config.grad_accum_steps} accumulation, lr {config.lr}"
        )

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if step_idx == 0:
            disable = None if self.progress_bars is None else not self.progress_bars
            self._bar = tqdm(total=nb_batches, desc=phase, leave=False, file=self.stream, disable=disable)
            self._phase_start = time.perf_counter()
            self._samples = 0
            self._loss_sum = 0.0
            self._loss_count = 0

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str, batch_size: int = 0,
                    loss: float | None = None) -> None:
        self._samples += batch_size
        if loss is not None:
            self._loss_sum += loss
            self._loss_count += 1
        if self._bar is not None:
            elapsed = max(time.perf_counter() - self._phase_start, 1e-9)
            postfix = {"samples/s": f"{self._samples / elapsed:.1f}"}
            if self._loss_count:
                postfix["loss"] = f"{self._loss_sum / self._loss_count:.4f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            if step_idx + 1 == nb_batches:
                self._bar.close()
                self._bar = None

    def on_epoch_end(self, metrics: dict[str, Any], epoch: int, epoch_duration: float) -> None:
        parts = [f"Epoch {epoch} ({epoch_duration:.1f}s)"]
        for phase in ("train", "eval"):
            values = metrics.get(phase) or {}
            shown = {k: v for k, v in values.items() if _is_headline(k)}
            if shown:
                parts.append(phase + ": " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
        self._print(" | ".join(parts))

    def on_save(self, checkpoint_dir: Path) -> None:
        self._print(f"Checkpoint saved: {checkpoint_dir}")

    def on_exception(self, exception: BaseException) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_PER_LABEL_SUFFIXES = ("_precision", "_recall", "_f1", "_support")
_AVERAGES = ("macro_", "micro_", "weighted_")


def is_per_label(metric: str) -> bool:
    """True for a per-label score (``Disease_f1``), false for an overall one (``f1``, ``macro_f1``, ``mae``)."""
    return metric.endswith(_PER_LABEL_SUFFIXES) and not metric.startswith(_AVERAGES)


def _is_headline(metric: str) -> bool:
    """Keep the summary line short: overall figures, not one per label."""
    return not is_per_label(metric)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
