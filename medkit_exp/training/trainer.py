"""The training loop, top to bottom in one class.

`Trainer.train()` sets up (preprocesses every item once), resumes from a checkpoint when
asked, then for each epoch: forward, backward, optimizer (and scheduler) step with gradient
accumulation and clipping, evaluation, metrics, an atomic checkpoint, early stopping.
Everything that watches the run (printing, MLflow) is a callback. What the loop stands on
lives beside it: `signals`, `callbacks`, `runtime` (device, seeds), `protocols` (the
component's contract and defaults), `batching`, `precision`, `checkpoint`, `loop_state`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medkit_exp.training import checkpoint as ckpt
from medkit_exp.training import protocols, schedulers
from medkit_exp.training.batch import BatchData
from medkit_exp.training.batching import batch_loader, eval_batches, plan_batches, set_batch_padding, window_weight
from medkit_exp.training.callbacks import CallbackList, StopTraining, TrainerCallback, callback_list
from medkit_exp.training.config import TrainerConfig, as_trainer_config
from medkit_exp.training.distributed import DistributedContext
from medkit_exp.training.errors import NonFiniteLossError, TrainingSetupError
from medkit_exp.training.host_memory import release_free_heap
from medkit_exp.training.loop_state import EpochTotals, LoopState, extend_lists, required_metric
from medkit_exp.training.precision import autocast, compile_model, resolve_precision
from medkit_exp.training.protocols import MetricsComputer, TrainableComponent
from medkit_exp.training.runtime import resolve_device, seed_everything
from medkit_exp.training.schedulers import SchedulerBuilder
from medkit_exp.training.signals import StopSignals


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

    def __init__(self, component: TrainableComponent, config: TrainerConfig, train_data: Iterable[Any],
                 eval_data: Iterable[Any] | None = None, metrics_computer: MetricsComputer | None = None,
                 lr_scheduler_builder: SchedulerBuilder | None = None,
                 callbacks: Sequence[TrainerCallback] | TrainerCallback | None = None,
                 callback: TrainerCallback | None = None) -> None:
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
        self.callbacks = CallbackList(callback_list(callbacks, callback, self.dist.is_main))
        self.output_dir = Path(config.output_dir)
        self.device = resolve_device(config.device, component)
        # The precision computed in (fp32 or bf16) and why: trainer.precision=auto decides here, once
        # (torchrun's process group later picks this process's GPU, of the same type: the same answer).
        self.precision, self.precision_reason = resolve_precision(config.precision, self.device)
        self.state = LoopState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.stopped_early = False
        self.stop_reason: str | None = None  # the message of a callback's StopTraining
        # Dev metrics of the model as it was given, with trainer.eval_before_training (not on resume).
        self.initial_eval: dict[str, float] | None = None
        self._signals = StopSignals()
        self._train_weights: list[float] = []

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
    def _optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            raise RuntimeError("the optimizer is created when train() starts (and dropped by its caller after)")
        return self.optimizer

    @property
    def best_checkpoint(self) -> Path | None:
        return ckpt.indexed_checkpoint(self.output_dir, "best")

    @property
    def last_checkpoint(self) -> Path | None:
        return ckpt.indexed_checkpoint(self.output_dir, "last")

    def train(self) -> list[dict[str, Any]]:
        """Set up, resume when asked, then train epoch by epoch; return the history, one entry per epoch."""
        with self._running():
            train_examples, train_lengths, eval_examples = self._set_up()
            saved = self._load_checkpoint() if self.config.resume_from else None  # its model; the rest below
            self._create_optimizer(len(train_examples))
            if saved is not None:
                self.state = ckpt.restore_training(saved, self._optimizer, self.scheduler, str(self.config.resume_from))
            if saved is None and self.config.eval_before_training and eval_examples:
                self.initial_eval = self.evaluate_examples(eval_examples, alone=True)
            self.callbacks.on_train_begin(config=self.config)
            for epoch in range(self.state.epoch + 1, self.config.epochs + 1):  # mid-epoch checkpoint: its epoch
                epoch_start = time.perf_counter()
                self.callbacks.on_epoch_begin(epoch=epoch)
                entry = self._fit_epoch(epoch, train_examples, train_lengths, eval_examples)
                improved = self._update_best(entry)
                entry["epoch_duration"] = time.perf_counter() - epoch_start
                if self._end_epoch(entry, improved):
                    break
            self.callbacks.on_train_end()
        return self.state.history

    # ------------------------------------------------------------------ set up and resume
    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """The stop signals' handlers while training; callbacks told of an exception that ends it."""
        # Under torchrun the launcher owns signals; a graceful stop would need every rank to agree.
        signals = contextlib.nullcontext() if self.dist.enabled else self._signals
        try:
            with signals:
                yield
        except BaseException as exc:
            self.callbacks.on_exception(exception=exc)
            raise
        finally:
            self.dist.teardown()

    def _set_up(self) -> tuple[list[Any], list[int], list[Any]]:
        """Seed, join the process group, check the output folder, place (and compile) the component
        and preprocess the data once: the training examples, their lengths, the eval examples."""
        cfg = self.config
        seed_everything(cfg.seed)
        self.device = self.dist.setup(self.device)
        self.output_dir = Path(self.dist.broadcast(str(self.output_dir)))  # rank 0's folder for all
        if self.dist.is_main:
            ckpt.check_writable(self.output_dir)  # know it before hours of training, not after
        protocols.place_component(self.component, self.device)
        if cfg.compile:
            try:
                compile_model(self.component)
            except ValueError as exc:
                raise TrainingSetupError(f"trainer.{exc}") from exc
        train_examples = protocols.preprocess_all(self.component, self.train_data)
        eval_examples = protocols.preprocess_all(self.component, self.eval_data)
        if not eval_examples and not cfg.do_metrics_in_training and cfg.checkpoint_metric != "loss":
            raise TrainingSetupError(f"trainer.checkpoint_metric={cfg.checkpoint_metric!r} is computed on the dev "
                                     "split, which is empty; give a dev split, or set trainer.checkpoint_metric=loss")
        train_lengths = [protocols.example_length(self.component, e) for e in train_examples]
        cpu_bf16 = self.precision == "bf16" and self.device.type == "cpu"
        set_batch_padding(self.component, cfg.pad_to_multiple_of, cpu_bf16, train_lengths,
                          lambda: self._batch_indices(1, train_lengths))
        protocols.prepare_for_training(self.component, train_examples)
        self._train_weights = [protocols.example_weight(self.component, e) for e in train_examples]
        return train_examples, train_lengths, eval_examples

    def _load_checkpoint(self) -> dict[str, Any]:
        """Load the model of ``trainer.resume_from``'s checkpoint; return its trainer state."""
        saved = ckpt.load_for_resume(str(self.config.resume_from), self.output_dir, self.component.load)
        protocols.place_component(self.component, self.device)
        return saved

    def _create_optimizer(self, train_examples: int) -> None:
        cfg = self.config
        self.optimizer = protocols.create_optimizer(self.component, cfg.lr)
        if self.lr_scheduler_builder is not None:
            horizon = schedulers.scheduler_horizon(train_examples, self.dist.world_size, cfg)
            self.scheduler = schedulers.build_scheduler(self.lr_scheduler_builder, self.optimizer, horizon)

    # ------------------------------------------------------------------ the loop
    def _fit_epoch(self, epoch: int, train_examples: list[Any], train_lengths: list[int],
                   eval_examples: list[Any]) -> dict[str, Any]:
        """Train an epoch, evaluate, step a per-epoch scheduler; the epoch's history entry (appended)."""
        train_metrics, samples_per_s = self._train_epoch(epoch, train_examples, train_lengths)
        # glibc keeps freed activations in fragmented heaps; without this, evaluation's larger
        # batches grow the process on top of them, a little more every epoch (host_memory.py)
        release_free_heap()
        entry: dict[str, Any] = {"epoch": epoch, "train": train_metrics}
        if eval_examples:
            entry["eval"] = self.evaluate_examples(eval_examples, epoch=epoch)
            release_free_heap()
        entry["train_samples_per_s"] = samples_per_s
        schedulers.step_per_epoch(self.scheduler, self.config.lr_scheduler_interval,
                       lambda: required_metric(entry, self.config.metric_to_track_lr, "trainer.metric_to_track_lr"))
        entry["lr"] = self._optimizer.param_groups[0]["lr"]  # after this epoch's scheduler steps
        self.state.epoch = epoch
        self.state.history.append(entry)
        return entry

    def _end_epoch(self, entry: dict[str, Any], improved: bool) -> bool:
        """Tell the callbacks, write the epoch's checkpoint; whether training stops after this epoch."""
        epoch = entry["epoch"]
        # The epoch goes to the callbacks (MLflow waits until it is stored) before its checkpoint
        # is written: a checkpoint never gets ahead of the run's record, so a process killed in
        # between resumes from the previous checkpoint and logs this epoch again, not never.
        try:
            self.callbacks.on_epoch_end(metrics=entry, epoch=epoch, epoch_duration=entry["epoch_duration"])
        except StopTraining as stop:
            self.stop_reason = str(stop) or type(stop).__name__
        finally:  # a callback that raises (to stop) still leaves the epoch's checkpoint
            self._maybe_checkpoint(epoch, improved)
        self._signals.raise_if_received()  # it came during the evaluation or the last window
        if self.stop_reason is not None:
            return True
        self.stopped_early = self.state.out_of_patience(self.config.early_stopping_patience)
        return self.stopped_early

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
        self._optimizer.zero_grad(set_to_none=True)

        for batch_idx in range(first, len(batches)):
            indices = local_batches[batch_idx]
            self.callbacks.on_step_begin(step_idx=batch_idx, nb_batches=len(batches), phase="train")
            batch = next(loader).to_device(self.device) if indices else None
            window = window_weight(batch_weights, batch_idx, self.config.grad_accum_steps)
            loss_value = self._train_batch(batch, indices, window, totals)
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

    def _train_batch(self, batch: BatchData | None, indices: list[int], window_weight: float,
                     totals: EpochTotals) -> float | None:
        """Forward and backward on this process's part of one batch; the loss value (None: no part)."""
        if batch is None:
            return None
        with self._autocast():
            output, loss = self.component.forward(batch, return_loss=True, eval_mode=False)
        if loss is None:
            raise TypeError(f"{type(self.component).__name__}.forward(batch, return_loss=True, ...) returned no loss; "
                            "return (output, loss) with the loss as a tensor")
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
            extend_lists(totals.metric_data, self.metrics_computer.prepare_batch(output, batch))
        return loss_value

    def _maybe_log_step(self, totals: EpochTotals) -> None:
        """Every ``log_every_n_steps`` optimizer steps: the train loss since the last log, and the lr."""
        if self.state.global_step % self.config.log_every_n_steps != 0:
            return
        loss_sum, weight = self.dist.sum(totals.log_loss_sum, totals.log_weight)
        if weight:
            logs = {"train_loss": loss_sum / weight, "lr": self._optimizer.param_groups[0]["lr"]}
            self.callbacks.on_log(logs=logs, global_step=self.state.global_step)
        totals.log_loss_sum, totals.log_weight = 0.0, 0.0

    def _epoch_train_metrics(self, totals: EpochTotals, seconds: float) -> tuple[dict[str, float], float]:
        loss_sum, weight, samples = self.dist.sum(totals.loss_sum, totals.weight, totals.samples)
        metrics = {"loss": loss_sum / weight if weight else float("nan")}
        metric_data = self.dist.gather_lists(totals.metric_data)
        if metric_data and self.metrics_computer is not None:
            metrics.update(self.metrics_computer.compute(metric_data))
        return metrics, (samples / seconds if seconds > 0 else 0.0)

    def _stop_mid_epoch(self, epoch: int, batches_done: int, totals: EpochTotals) -> None:
        """Write a checkpoint of the interrupted epoch, then raise the signal's interruption."""
        self.state.batches_done, self.state.partial_epoch = batches_done, asdict(totals)
        self._save_checkpoint(ckpt.checkpoint_name(epoch, self.state.global_step), epoch, improved=False)
        self._signals.raise_if_received()

    def _optimizer_step(self) -> None:
        optimizer = self._optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.dist.sum_gradients(params)
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        optimizer.step()
        schedulers.step_per_step(self.scheduler, self.config.lr_scheduler_interval)
        optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def _handle_non_finite(self, loss_value: float, epoch: int, batch_idx: int) -> None:
        if self.config.nan_policy == "skip" and self.state.skip_non_finite(self.config.max_nan_skips):
            return
        where = f"epoch {epoch}, batch {batch_idx + 1}, after optimizer step {self.state.global_step}"
        raise NonFiniteLossError.at(loss_value, where, self.last_checkpoint)

    def evaluate(self, items: Iterable[Any]) -> dict[str, float]:
        """Loss and metrics of the component, as it is now, on raw ``items`` (e.g. a test split).

        Runs in this process alone (after a distributed training, rank 0 calls it) and tells no
        callback: the evaluation of an epoch is `evaluate_examples`.
        """
        return self.evaluate_with_data(items)[0]

    def evaluate_with_data(self, items: Iterable[Any]) -> tuple[dict[str, float], dict[str, list[Any]], list[int]]:
        """`evaluate`, and what it computed the metrics from: the metrics computer's data (the
        lists ``prepare_batch`` returned, joined in the order of the examples, as ``compute``
        took them) and, per example, the position in ``items`` of the item it came from."""
        examples, owners = protocols.preprocess_owned(self.component, list(items))
        return (*self._evaluate(examples, epoch=None, alone=True), owners) if examples else ({}, {}, [])

    def evaluate_examples(self, examples: list[Any], epoch: int | None = None, alone: bool = False) -> dict[str, float]:
        """Loss and metrics of the component on preprocessed ``examples`` (an epoch's evaluation).

        ``alone``: evaluate every example in this process without telling callbacks.
        """
        return self._evaluate(examples, epoch, alone)[0]

    def _evaluate(self, examples: list[Any], epoch: int | None, alone: bool
                  ) -> tuple[dict[str, float], dict[str, list[Any]]]:
        """`evaluate_examples`, and the metrics computer's data the metrics were computed from."""
        dist = DistributedContext() if alone else self.dist
        callbacks = CallbackList([]) if alone else self.callbacks
        batches = eval_batches(len(examples), self.config.eval_batch_size)[dist.rank :: dist.world_size]  # whole ones
        loader = self._loader(examples, batches)
        metric_data: dict[str, list[Any]] = {}
        loss_sum, weight = 0.0, 0.0
        with torch.no_grad():
            for batch_idx, (indices, batch) in enumerate(zip(batches, loader, strict=True)):
                callbacks.on_step_begin(step_idx=batch_idx, nb_batches=len(batches), phase="eval")
                batch = batch.to_device(self.device)
                with self._autocast():
                    output, loss = self.component.forward(batch, return_loss=True, eval_mode=True)
                loss_value = float(loss) if loss is not None else None
                if loss_value is not None:  # weighted like the train loss: by loss terms
                    batch_weight = sum(protocols.example_weight(self.component, examples[i]) for i in indices)
                    loss_sum += loss_value * batch_weight
                    weight += batch_weight
                if self.metrics_computer is not None:
                    extend_lists(metric_data, self.metrics_computer.prepare_batch(output, batch))
                callbacks.on_step_end(step_idx=batch_idx, nb_batches=len(batches), phase="eval",
                                      batch_size=len(indices), loss=loss_value)
        loss_sum, weight = dist.sum(loss_sum, weight)
        metric_data = dist.gather_lists(metric_data)
        metrics = {"loss": loss_sum / weight} if weight else {}
        if self.metrics_computer is not None and metric_data:
            metrics.update(self.metrics_computer.compute(metric_data))
        callbacks.on_evaluate(metrics=metrics, epoch=epoch)
        return metrics, metric_data

    # ------------------------------------------------------------------ helpers
    def _batch_indices(self, epoch: int, lengths: list[int]) -> list[list[int]]:
        size = self.config.batch_size * self.dist.world_size  # global batches, sharded in _train_epoch
        return plan_batches(lengths, size, self.config.seed, epoch, self.config.batch_order)

    def _loader(self, examples: list[Any], batches: list[list[int]]) -> Iterable[BatchData]:
        return batch_loader(examples, batches, self.component.collate, self.config.num_workers)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        return autocast(self.precision, self.device)

    def _update_best(self, entry: dict[str, Any]) -> bool:
        value = required_metric(entry, self.config.checkpoint_metric, "trainer.checkpoint_metric")
        return self.state.update_best(value, entry["epoch"], self.config.checkpoint_mode)

    def _maybe_checkpoint(self, epoch: int, improved: bool) -> None:
        if ckpt.is_due(epoch, improved, self.config):
            self._save_checkpoint(ckpt.checkpoint_name(epoch), epoch, improved)

    def _save_checkpoint(self, name: str, epoch: int, improved: bool) -> None:
        if not self.dist.is_main:  # rank 0 writes; the others wait until the checkpoint is complete
            self.dist.barrier()
            return
        path = ckpt.save_checkpoint(self.output_dir, name, self.component.save, self._optimizer, self.scheduler,
                                    self.state, self.config, epoch, improved)
        self.dist.barrier()
        self.callbacks.on_save(checkpoint_dir=path)

