"""The training loop, top to bottom in one class.

`Trainer.train()` preprocesses every item once, then for each epoch: forward, backward,
optimizer (and scheduler) step with gradient accumulation and clipping, evaluation,
metrics, an atomic checkpoint, early stopping. Everything that watches the run (printing,
MLflow) is a callback; the loop itself knows nothing about tracking.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import DataLoader

from medkit_exp.training import checkpoint as ckpt
from medkit_exp.training.batch import BatchData
from medkit_exp.training.batching import CPU_BF16_PAD_MULTIPLE, choose_padded_lengths, plan_batches
from medkit_exp.training.callbacks import DefaultPrinterCallback, TrainerCallback
from medkit_exp.training.config import TrainerConfig, as_trainer_config
from medkit_exp.training.distributed import DistributedContext
from medkit_exp.training.host_memory import release_free_heap
from medkit_exp.training.precision import autocast, compile_model, resolve_precision
from medkit_exp.training.protocols import MetricsComputer, create_optimizer
from medkit_exp.training.schedulers import SchedulerBuilder, build_scheduler, is_plateau


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingSetupError(ValueError):
    """The trainer's inputs cannot work together (reported before training starts)."""


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_end`` to end training after this epoch, as a success.

    The epoch's checkpoint is still written, the other callbacks still see the epoch, and
    `Trainer.train` returns the history; `Trainer.stop_reason` keeps the message. A sweep's
    pruner stops a bad trial this way.
    """


def _interruption(signum: int) -> BaseException:
    """What a stop signal becomes: Ctrl-C a KeyboardInterrupt, SIGTERM (SIGHUP) an exit with 143 (129)."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)


class _StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP ask the loop to stop after the current optimizer step
    (or the epoch's evaluation) and a checkpoint; a second signal stops at once. A signal the
    loop did not act on (it came after the last step) still stops when training ends. Only
    installed from the main thread (Python's rule); the previous handlers come back after."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if exc_type is None and self.received is not None:
            raise _interruption(self.received)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise _interruption(signum)
        self.received = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after the current step and writing a "
              "checkpoint (send it again to stop at once)", flush=True)


_log = logging.getLogger(__name__)


class _Callbacks:
    """Calls the same hook on every callback, in order.

    Every hook is optional (a medkit callback has no ``on_log`` or ``on_exception``), and a hook
    gets only the arguments its signature takes (medkit's ``on_step_end`` takes no
    ``batch_size``). An error raised by a callback's ``on_exception`` is logged, never raised:
    it must not hide the error that stopped training.
    """

    def __init__(self, callbacks: Sequence[TrainerCallback]) -> None:
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str):
        def call(**kwargs: Any) -> None:
            stop: StopTraining | None = None
            for callback in self.callbacks:
                method = getattr(callback, hook, None)
                if method is None:
                    continue
                if hook == "on_exception":
                    try:
                        method(**_accepted(method, kwargs))
                    except Exception as exc:  # noqa: BLE001 - the original error goes on, this one is told
                        _log.warning("%s.on_exception failed: %s", type(callback).__name__, exc)
                    continue
                try:
                    method(**_accepted(method, kwargs))
                except StopTraining as exc:  # every callback still sees the hook, then the loop stops
                    stop = stop or exc
            if stop is not None:
                raise stop

        return call


# Arguments a hook may name as medkit's base TrainerCallback does -> the name the Trainer passes.
_MEDKIT_ARGUMENTS = {"epoch_time": "epoch_duration"}


def _accepted(method: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``method`` takes (all of them if it takes ``**kwargs``), under
    medkit's names where its signature uses them."""
    names = _parameter_names(getattr(method, "__func__", method))
    if names is None:
        return kwargs
    accepted = {k: v for k, v in kwargs.items() if k in names}
    for medkit_name, name in _MEDKIT_ARGUMENTS.items():
        if medkit_name in names and name in kwargs:
            accepted.setdefault(medkit_name, kwargs[name])
    return accepted


@functools.lru_cache(maxsize=256)
def _parameter_names(function: Any) -> frozenset[str] | None:
    """Names a function accepts by keyword; None when it takes ``**kwargs`` (or has no signature)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(parameters)


def resolve_device(name: str, component: Any = None) -> torch.device:
    """The torch device of ``trainer.device``; ``auto`` keeps a component where it already is
    (when that device is usable), else picks CUDA when present, else the CPU."""
    if name != "auto":
        return torch.device(name)
    current = getattr(component, "device", None)
    if current is not None:
        current = torch.device(current)
        if current.type == "cpu" or (current.type == "cuda" and torch.cuda.is_available()):
            return current
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def example_weight(component: Any, example: Any) -> float:
    """Terms of the loss mean an example brings: the component's own measure, else 1 (a row)."""
    measure = getattr(component, "example_weight", None)
    return float(measure(example)) if callable(measure) else 1.0


def example_length(component: Any, example: Any) -> int:
    """Length used to group batches: the component's own measure, else ``len(input_ids)``."""
    measure = getattr(component, "example_length", None)
    if callable(measure):
        return int(measure(example))
    if isinstance(example, dict):
        if "length" in example:
            return int(example["length"])
        if "input_ids" in example:
            return len(example["input_ids"])
    return 1


class Trainer:
    """Fine-tune a `TrainableComponent` on ``train_data``, evaluating on ``eval_data``.

    ``lr_scheduler_builder(optimizer)`` (or ``(optimizer, num_training_steps)``) may return
    any torch scheduler or ``transformers.get_scheduler(...)``; it is stepped per optimizer
    step or per epoch as ``config.lr_scheduler_interval`` says, and a ``ReduceLROnPlateau``
    is stepped per epoch with the eval metric ``config.metric_to_track_lr``.

    ``callbacks`` is a list of callbacks or one callback; ``callback`` (medkit's argument) adds
    one. Without either, a `DefaultPrinterCallback` reports progress. ``config`` may also be
    medkit's ``TrainerConfig`` (its settings are read by name, see `as_trainer_config`).
    """

    def __init__(
        self,
        component: Any,
        config: TrainerConfig,
        train_data: Iterable[Any],
        eval_data: Iterable[Any] | None = None,
        metrics_computer: MetricsComputer | None = None,
        lr_scheduler_builder: SchedulerBuilder | None = None,
        callbacks: Sequence[TrainerCallback] | TrainerCallback | None = None,
        callback: TrainerCallback | None = None,
    ) -> None:
        config = as_trainer_config(config)
        config.validate()
        self.component = component
        self.config = config
        self.train_data = list(train_data)
        self.eval_data = list(eval_data) if eval_data is not None else []
        if not self.train_data:
            raise TrainingSetupError("train_data is empty: give the Trainer at least one training item")
        self.metrics_computer = metrics_computer
        self.lr_scheduler_builder = lr_scheduler_builder
        self.dist = DistributedContext.from_env()
        if callback is not None:  # medkit's argument: one callback
            callbacks = [callback, *([] if callbacks is None else
                                     callbacks if isinstance(callbacks, (list, tuple)) else [callbacks])]
        if callbacks is None:
            callbacks = [DefaultPrinterCallback()] if self.dist.is_main else []
        elif isinstance(callbacks, TrainerCallback) or not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]  # one callback (a medkit one too)
        self.callbacks = _Callbacks(callbacks)
        self.output_dir = Path(config.output_dir)
        self.device = resolve_device(config.device, component)
        # The precision computed in (fp32 or bf16) and why: trainer.precision=auto decides here.
        self.precision, self.precision_reason = resolve_precision(config.precision, self.device)
        self.state = ckpt.LoopState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.stopped_early = False
        self.stop_reason: str | None = None  # the message of a callback's StopTraining
        self._signals = _StopSignals()

    # ------------------------------------------------------------------ public API
    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    @property
    def stop_signal(self) -> int | None:
        """The stop signal (SIGINT, SIGTERM, SIGHUP) received while training, if any; training then
        ends with a checkpoint and raises (`KeyboardInterrupt`, or `SystemExit` with 128 + its number)."""
        return self._signals.received

    @property
    def best_checkpoint(self) -> Path | None:
        name = ckpt.read_index(self.output_dir).get("best")
        return self.output_dir / name if name else None

    @property
    def last_checkpoint(self) -> Path | None:
        name = ckpt.read_index(self.output_dir).get("last")
        return self.output_dir / name if name else None

    def train(self) -> list[dict[str, Any]]:
        """Run the training; return the history, one entry per epoch."""
        # Under torchrun the launcher owns signals; a graceful stop would need every rank to agree.
        signals = contextlib.nullcontext() if self.dist.enabled else self._signals
        try:
            with signals:
                return self._train()
        except BaseException as exc:
            self.callbacks.on_exception(exception=exc)
            raise
        finally:
            self.dist.teardown()

    # ------------------------------------------------------------------ the loop
    def _train(self) -> list[dict[str, Any]]:
        cfg = self.config
        seed_everything(cfg.seed)
        self.device = self.dist.setup(self.device)
        self.precision, self.precision_reason = resolve_precision(self.config.precision, self.device)
        self.output_dir = Path(self.dist.broadcast(str(self.output_dir)))  # rank 0's folder for all
        if self.dist.is_main:
            ckpt.check_writable(self.output_dir)  # know it before hours of training, not after
        self._place_component()
        if cfg.compile:
            try:
                compile_model(self.component)
            except ValueError as exc:
                raise TrainingSetupError(f"trainer.{exc}") from exc
        train_examples = self._preprocess(self.train_data)
        eval_examples = self._preprocess(self.eval_data)
        train_lengths = [example_length(self.component, e) for e in train_examples]
        self._set_batch_padding(train_lengths)
        prepare = getattr(self.component, "prepare_for_training", None)
        if callable(prepare):
            prepare(train_examples)
        self._train_weights = [example_weight(self.component, e) for e in train_examples]

        resume_state = None
        if cfg.resume_from:
            checkpoint_dir = ckpt.resolve_checkpoint(cfg.resume_from, self.output_dir)
            resume_state = ckpt.load_trainer_state(checkpoint_dir)
            try:
                self.component.load(checkpoint_dir / ckpt.MODEL_DIR)
            except (ValueError, OSError) as exc:  # another model or label set
                raise ckpt.CheckpointError(f"cannot resume from {checkpoint_dir}: {exc}") from exc
            self._place_component()

        self.optimizer = create_optimizer(self.component, cfg.lr)
        batches_per_epoch = math.ceil(len(train_examples) / (cfg.batch_size * self.dist.world_size))
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
        if self.lr_scheduler_builder is not None:
            horizon = steps_per_epoch * cfg.epochs if cfg.lr_scheduler_interval == "step" else cfg.epochs
            self.scheduler = build_scheduler(self.lr_scheduler_builder, self.optimizer, horizon)

        if resume_state is not None:
            ckpt.check_optimizer_state(self.optimizer, resume_state["optimizer"], cfg.resume_from)
            self.optimizer.load_state_dict(resume_state["optimizer"])
            if self.scheduler is not None and resume_state.get("scheduler") is not None:
                self.scheduler.load_state_dict(resume_state["scheduler"])
            self.state = ckpt.LoopState(**resume_state["loop"])
            ckpt.restore_rng_states(resume_state["rng"])

        self.callbacks.on_train_begin(config=cfg)
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):  # a mid-epoch checkpoint resumes its epoch
            epoch_start = time.perf_counter()
            self.callbacks.on_epoch_begin(epoch=epoch)
            train_metrics, samples_per_s = self._train_epoch(epoch, train_examples, train_lengths)
            # glibc keeps freed activations in fragmented heaps; without this, evaluation's larger
            # batches grow the process on top of them, a little more every epoch (host_memory.py)
            release_free_heap()
            entry: dict[str, Any] = {"epoch": epoch, "train": train_metrics}
            if eval_examples:
                entry["eval"] = self.evaluate_examples(eval_examples, epoch=epoch)
                release_free_heap()
            entry["train_samples_per_s"] = samples_per_s
            self._step_scheduler_per_epoch(entry)
            entry["lr"] = self.optimizer.param_groups[0]["lr"]  # after this epoch's scheduler steps
            self.state.epoch = epoch
            self.state.history.append(entry)
            improved = self._update_best(entry)
            entry["epoch_duration"] = time.perf_counter() - epoch_start
            # The epoch goes to the callbacks (MLflow waits until it is stored) before its checkpoint
            # is written: a checkpoint never gets ahead of the run's record, so a process killed in
            # between resumes from the previous checkpoint and logs this epoch again, not never.
            try:
                self.callbacks.on_epoch_end(metrics=entry, epoch=epoch, epoch_duration=entry["epoch_duration"])
            except StopTraining as stop:
                self.stop_reason = str(stop) or type(stop).__name__
            finally:  # a callback that raises (to stop) still leaves the epoch's checkpoint
                self._maybe_checkpoint(epoch, improved)
            if self._signals.received is not None:  # it came during the evaluation or the last window
                raise _interruption(self._signals.received)
            if self.stop_reason is not None:
                break
            patience = cfg.early_stopping_patience
            if patience is not None and self.state.epochs_without_improvement >= patience:
                self.stopped_early = True
                break
        self.callbacks.on_train_end()
        return self.state.history

    def _train_epoch(self, epoch: int, examples: list[Any], lengths: list[int]) -> tuple[dict[str, float], float]:
        """One pass over the training examples; returns the epoch's train metrics and samples/s."""
        batches = self._batch_indices(epoch, lengths)
        batch_weights = [sum(self._train_weights[i] for i in batch) for batch in batches]
        local_batches = [self.dist.shard(b) for b in batches]  # this process's share of each global batch
        # A run resumed from a mid-epoch checkpoint skips the batches that epoch already saw.
        first = self.state.batches_done
        totals = EpochTotals.restore(self.state.partial_epoch)
        loader = iter(self._loader(examples, [b for b in local_batches[first:] if b]))
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)

        for batch_idx in range(first, len(batches)):
            indices = local_batches[batch_idx]
            self.callbacks.on_step_begin(step_idx=batch_idx, nb_batches=len(batches), phase="train")
            batch = next(loader).to_device(self.device) if indices else None
            loss_value = self._train_batch(batch, indices, self._window_weight(batch_weights, batch_idx), totals)
            if loss_value is not None and not math.isfinite(loss_value):
                self._handle_non_finite(loss_value, epoch, batch_idx)
                loss_value = None
            end_of_window = (batch_idx + 1) % self.config.grad_accum_steps == 0 or batch_idx + 1 == len(batches)
            if end_of_window:
                self._optimizer_step()
                self._maybe_log_step(totals)
            self.callbacks.on_step_end(step_idx=batch_idx, nb_batches=len(batches), phase="train",
                                       batch_size=len(indices), loss=loss_value)
            if end_of_window and self._signals.received is not None and batch_idx + 1 < len(batches):
                totals.seconds += time.perf_counter() - started
                self._stop_mid_epoch(epoch, batch_idx + 1, totals)

        self.state.batches_done, self.state.partial_epoch = 0, None
        return self._epoch_train_metrics(totals, totals.seconds + time.perf_counter() - started)

    def _window_weight(self, batch_weights: list[float], batch_idx: int) -> float:
        """Loss terms (rows, or labelled tokens) of the accumulation window of ``batch_idx``, all processes."""
        accum = self.config.grad_accum_steps
        start = batch_idx - batch_idx % accum
        return sum(batch_weights[start : start + accum])

    def _train_batch(self, batch: BatchData | None, indices: list[int], window_weight: float,
                     totals: "EpochTotals") -> float | None:
        """Forward and backward on this process's part of one batch; the loss value (None: no part)."""
        if batch is None:
            return None
        with self._autocast():
            output, loss = self.component.forward(batch, return_loss=True, eval_mode=False)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return loss_value
        # Each micro-batch weighs its share of the loss terms of its accumulation window across
        # processes, so that accumulating k batches, or running on k processes, gives the update
        # of one batch k times larger.
        local_weight = sum(self._train_weights[i] for i in indices)
        if window_weight > 0:
            (loss * (local_weight / window_weight)).backward()
        totals.add(loss_value, local_weight, len(indices))
        if self.config.do_metrics_in_training and self.metrics_computer is not None:
            _extend(totals.metric_data, self.metrics_computer.prepare_batch(output, batch))
        return loss_value

    def _maybe_log_step(self, totals: "EpochTotals") -> None:
        """Every ``log_every_n_steps`` optimizer steps: the train loss since the last log, and the lr."""
        if self.state.global_step % self.config.log_every_n_steps != 0:
            return
        loss_sum, weight = self.dist.sum(totals.log_loss_sum, totals.log_weight)
        if weight:
            logs = {"train_loss": loss_sum / weight, "lr": self.optimizer.param_groups[0]["lr"]}
            self.callbacks.on_log(logs=logs, global_step=self.state.global_step)
        totals.log_loss_sum, totals.log_weight = 0.0, 0.0

    def _epoch_train_metrics(self, totals: "EpochTotals", seconds: float) -> tuple[dict[str, float], float]:
        loss_sum, weight, samples = self.dist.sum(totals.loss_sum, totals.weight, totals.samples)
        metrics = {"loss": loss_sum / weight if weight else float("nan")}
        metric_data = self.dist.gather_lists(totals.metric_data)
        if metric_data and self.metrics_computer is not None:
            metrics.update(self.metrics_computer.compute(metric_data))
        return metrics, (samples / seconds if seconds > 0 else 0.0)

    def _stop_mid_epoch(self, epoch: int, batches_done: int, totals: "EpochTotals") -> None:
        """Write a checkpoint of the interrupted epoch, then raise the signal's interruption."""
        self.state.batches_done, self.state.partial_epoch = batches_done, asdict(totals)
        self._save_checkpoint(ckpt.checkpoint_name(epoch, self.state.global_step), epoch, improved=False)
        raise _interruption(self._signals.received)

    def _optimizer_step(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.dist.sum_gradients(params)
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None and not is_plateau(self.scheduler) and self.config.lr_scheduler_interval == "step":
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def _handle_non_finite(self, loss_value: float, epoch: int, batch_idx: int) -> None:
        where = f"epoch {epoch}, batch {batch_idx + 1}, after optimizer step {self.state.global_step}"
        if self.config.nan_policy == "skip" and self.state.nan_skips < self.config.max_nan_skips:
            self.state.nan_skips += 1
            return
        last = self.last_checkpoint
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss is {loss_value} at {where} ({kept}); lower trainer.lr, check the data, "
            f"or set trainer.nan_policy=skip"
        )

    def evaluate(self, items: Iterable[Any]) -> dict[str, float]:
        """Loss and metrics of the component, as it is now, on raw ``items`` (e.g. a test split).

        Runs in this process alone (after a distributed training, rank 0 calls it) and tells no
        callback: the evaluation of an epoch is `evaluate_examples`.
        """
        examples = self._preprocess(list(items))
        if not examples:
            return {}
        return self.evaluate_examples(examples, epoch=None, alone=True)

    def evaluate_examples(self, examples: list[Any], epoch: int | None = None, alone: bool = False) -> dict[str, float]:
        """Loss and metrics of the component on preprocessed ``examples`` (an epoch's evaluation).

        ``alone``: evaluate every example in this process without telling callbacks.
        """
        dist = DistributedContext() if alone else self.dist
        callbacks = _Callbacks([]) if alone else self.callbacks
        batch_size = self.config.eval_batch_size
        batches = [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]
        batches = batches[dist.rank :: dist.world_size]  # whole batches per process
        loader = self._loader(examples, batches)
        metric_data: dict[str, list[Any]] = {}
        loss_sum, weight = 0.0, 0.0
        with torch.no_grad():
            for batch_idx, (indices, batch) in enumerate(zip(batches, loader)):
                callbacks.on_step_begin(step_idx=batch_idx, nb_batches=len(batches), phase="eval")
                batch = batch.to_device(self.device)
                with self._autocast():
                    output, loss = self.component.forward(batch, return_loss=True, eval_mode=True)
                loss_value = float(loss) if loss is not None else None
                if loss_value is not None:  # weighted like the train loss: by loss terms
                    batch_weight = sum(example_weight(self.component, examples[i]) for i in indices)
                    loss_sum += loss_value * batch_weight
                    weight += batch_weight
                if self.metrics_computer is not None:
                    _extend(metric_data, self.metrics_computer.prepare_batch(output, batch))
                callbacks.on_step_end(
                    step_idx=batch_idx, nb_batches=len(batches), phase="eval", batch_size=len(indices), loss=loss_value
                )
        loss_sum, weight = dist.sum(loss_sum, weight)
        metric_data = dist.gather_lists(metric_data)
        metrics = {"loss": loss_sum / weight} if weight else {}
        if self.metrics_computer is not None and metric_data:
            metrics.update(self.metrics_computer.compute(metric_data))
        callbacks.on_evaluate(metrics=metrics, epoch=epoch)
        return metrics

    # ------------------------------------------------------------------ helpers
    def _place_component(self) -> None:
        move = getattr(self.component, "to", None)
        if callable(move):
            move(self.device)
        elif torch.device(self.component.device) != self.device:
            raise TrainingSetupError(
                f"the component is on {self.component.device} but trainer.device resolves to {self.device}; "
                "create the component on that device or add a to(device) method"
            )

    def _set_batch_padding(self, train_lengths: list[int]) -> None:
        """Tell a component with ``pad_to_multiple_of`` (and ``pad_lengths``) how to pad its batches.

        ``trainer.pad_to_multiple_of`` set: multiples of it (0: the longest example). Unset, in
        bf16 on CPU, where oneDNN compiles and caches a kernel per batch shape: the lengths that
        pad epoch 1's training batches least with no more distinct shapes than multiples of 16
        would give (`choose_padded_lengths`), and multiples of 16 beyond the longest of them.
        """
        if not hasattr(self.component, "pad_to_multiple_of"):
            return
        multiple, lengths = self.config.pad_to_multiple_of, None
        if multiple is None:
            cpu_bf16 = self.precision == "bf16" and self.device.type == "cpu"
            multiple = CPU_BF16_PAD_MULTIPLE if cpu_bf16 else 0
            if cpu_bf16 and hasattr(self.component, "pad_lengths") and train_lengths:
                longest = [max(train_lengths[i] for i in batch) for batch in self._batch_indices(1, train_lengths)]
                lengths = choose_padded_lengths(longest, len({-(-n // multiple) for n in longest}))
        self.component.pad_to_multiple_of = multiple or None
        if hasattr(self.component, "pad_lengths"):
            self.component.pad_lengths = lengths

    def _preprocess(self, items: list[Any]) -> list[Any]:
        """Preprocess every item once for the whole run; a list result adds several examples."""
        examples: list[Any] = []
        for item in items:
            result = self.component.preprocess(item)
            if isinstance(result, list):
                examples.extend(result)
            else:
                examples.append(result)
        return examples

    def _batch_indices(self, epoch: int, lengths: list[int]) -> list[list[int]]:
        size = self.config.batch_size * self.dist.world_size  # global batches, sharded in _train_epoch
        return plan_batches(lengths, size, self.config.seed, epoch, self.config.batch_order)

    def _loader(self, examples: list[Any], batches: list[list[int]]) -> DataLoader:
        return DataLoader(
            examples,
            batch_sampler=batches,
            collate_fn=self.component.collate,
            num_workers=self.config.num_workers,
            # Its own generator: creating a loader iterator must not draw from the global RNG,
            # or a run resumed mid-epoch would see different dropout masks.
            generator=torch.Generator().manual_seed(0),
        )

    def _autocast(self):
        return autocast(self.precision, self.device)

    def _step_scheduler_per_epoch(self, entry: dict[str, Any]) -> None:
        if self.scheduler is None:
            return
        if is_plateau(self.scheduler):
            self.scheduler.step(tracked_metric(entry, self.config.metric_to_track_lr, "trainer.metric_to_track_lr"))
        elif self.config.lr_scheduler_interval == "epoch":
            self.scheduler.step()

    def _update_best(self, entry: dict[str, Any]) -> bool:
        value = tracked_metric(entry, self.config.checkpoint_metric, "trainer.checkpoint_metric")
        best = self.state.best_metric
        better = best is None or (value < best if self.config.checkpoint_mode == "min" else value > best)
        if better:
            self.state.best_metric = value
            self.state.best_epoch = entry["epoch"]
            self.state.epochs_without_improvement = 0
        else:
            self.state.epochs_without_improvement += 1
        return better

    def _maybe_checkpoint(self, epoch: int, improved: bool) -> None:
        cfg = self.config
        periodic = cfg.checkpoint_period > 0 and epoch % cfg.checkpoint_period == 0
        if periodic or improved or epoch == cfg.epochs:
            self._save_checkpoint(ckpt.checkpoint_name(epoch), epoch, improved)

    def _save_checkpoint(self, name: str, epoch: int, improved: bool) -> None:
        cfg = self.config
        last_entry = self.state.history[-1] if self.state.history else {}
        trainer_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": ckpt.capture_rng_states(),
            "loop": asdict(self.state),
            "config": asdict(cfg),
        }
        summary = {
            "epoch": epoch,
            "complete_epoch": self.state.batches_done == 0,
            "global_step": self.state.global_step,
            "metric": cfg.checkpoint_metric,
            "value": tracked_metric(last_entry, cfg.checkpoint_metric) if last_entry else None,
            "is_best": improved,
            "best_epoch": self.state.best_epoch,
            "config": asdict(cfg),
        }
        if not self.dist.is_main:  # rank 0 writes; the others wait until the checkpoint is complete
            self.dist.barrier()
            return
        path = ckpt.write_checkpoint(self.output_dir, name, self.component.save, trainer_state, summary)
        index = ckpt.read_index(self.output_dir)
        index.update({"last": path.name, "metric": cfg.checkpoint_metric, "mode": cfg.checkpoint_mode})
        if improved:
            index.update({"best": path.name, "best_metric": self.state.best_metric, "best_epoch": epoch})
        ckpt.update_index(self.output_dir, index)
        ckpt.rotate_checkpoints(self.output_dir, index, cfg.keep_checkpoints)
        self.dist.barrier()
        self.callbacks.on_save(checkpoint_dir=path)


def tracked_metric(entry: dict[str, Any], name: str, option: str | None = None) -> float | None:
    """Metric ``name`` of an epoch's history entry: its eval value, or its train value without
    eval data. With ``option`` (the setting that named it), a missing metric raises
    `TrainingSetupError` naming the metrics there are; without, it gives None."""
    phase = entry.get("eval") or entry.get("train") or {}
    if name in phase:
        return phase[name]
    if option is None:
        return None
    raise TrainingSetupError(f"{option}={name!r} is not a computed metric (available: {sorted(phase)}); "
                             "set it to one of those")


@dataclass
class EpochTotals:
    """Running sums of a training epoch; a mid-epoch checkpoint keeps them (as a dict) so that
    the resumed epoch ends with the same figures as an uninterrupted one."""

    loss_sum: float = 0.0  # loss x weight, over the epoch
    weight: float = 0.0  # loss terms seen (rows, or labelled tokens)
    samples: int = 0
    log_loss_sum: float = 0.0  # the same since the last step log
    log_weight: float = 0.0
    metric_data: dict[str, list[Any]] = field(default_factory=dict)  # do_metrics_in_training
    seconds: float = 0.0  # time spent before an interruption

    @classmethod
    def restore(cls, saved: dict[str, Any] | None) -> "EpochTotals":
        return cls(**saved) if saved else cls()

    def add(self, loss_value: float, weight: float, samples: int) -> None:
        self.loss_sum += loss_value * weight
        self.weight += weight
        self.log_loss_sum += loss_value * weight
        self.log_weight += weight
        self.samples += samples


def _extend(store: dict[str, list[Any]], batch_data: dict[str, list[Any]]) -> None:
    for key, values in batch_data.items():
        store.setdefault(key, []).extend(values)
