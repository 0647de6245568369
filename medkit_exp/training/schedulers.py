"""Learning-rate scheduler builders.

The Trainer accepts any callable ``builder(optimizer)`` returning a torch scheduler, or
``builder(optimizer, num_training_steps)`` when the schedule needs the run's length (it
is told the number of optimizer steps, or of epochs when the scheduler is stepped per
epoch). `linear_warmup` and `cosine` are the ``_target_`` of the scheduler options of the
same names; ``step`` and ``plateau`` name torch's classes directly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Literal

import torch

from medkit_exp.training.config import TrainerConfig

SchedulerBuilder = Callable[..., Any]


def build_scheduler(builder: SchedulerBuilder, optimizer: torch.optim.Optimizer, num_training_steps: int) -> Any:
    """Call ``builder`` with the optimizer, and with ``num_training_steps`` if it takes it."""
    parameters = inspect.signature(builder).parameters
    takes_steps = "num_training_steps" in parameters or len(
        [p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    ) >= 2
    if takes_steps:
        return builder(optimizer, num_training_steps=num_training_steps)
    return builder(optimizer)


def is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def scheduler_horizon(train_examples: int, world_size: int, config: TrainerConfig) -> int:
    """How many times training steps its scheduler (per optimizer step or per epoch, as
    ``config.lr_scheduler_interval`` says), with ``world_size`` processes."""
    batches_per_epoch = math.ceil(train_examples / (config.batch_size * world_size))
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum_steps)
    return steps_per_epoch * config.epochs if config.lr_scheduler_interval == "step" else config.epochs


def step_per_step(scheduler: Any, interval: str) -> None:
    """After an optimizer step: step a scheduler stepped per step (``interval``; never a plateau one)."""
    if scheduler is not None and interval == "step" and not is_plateau(scheduler):
        scheduler.step()


def step_per_epoch(scheduler: Any, interval: str, tracked: Callable[[], float]) -> None:
    """After an epoch: step a plateau scheduler with the ``tracked`` metric's value, or a scheduler
    stepped per epoch (``interval``)."""
    if scheduler is None:
        return
    if is_plateau(scheduler):
        scheduler.step(tracked())
    elif interval == "epoch":
        scheduler.step()


def _warmup_steps(num_training_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    if warmup_steps is not None:
        return warmup_steps
    return math.ceil(num_training_steps * warmup_ratio)


def _transformers_schedule(name: str, warmup_ratio: float, warmup_steps: int | None) -> SchedulerBuilder:
    def builder(optimizer: torch.optim.Optimizer, num_training_steps: int) -> Any:
        from transformers import get_scheduler

        return get_scheduler(
            name,
            optimizer=optimizer,
            num_warmup_steps=_warmup_steps(num_training_steps, warmup_ratio, warmup_steps),
            num_training_steps=num_training_steps,
        )

    return builder


def linear_warmup(warmup_ratio: float = 0.1, warmup_steps: int | None = None) -> SchedulerBuilder:
    """Linear warmup to the base LR, then linear decay to 0 at the end of training."""
    return _transformers_schedule("linear", warmup_ratio, warmup_steps)


def cosine(warmup_ratio: float = 0.0, warmup_steps: int | None = None) -> SchedulerBuilder:
    """Optional linear warmup, then cosine decay to 0."""
    return _transformers_schedule("cosine", warmup_ratio, warmup_steps)


def step(step_size: int = 1, gamma: float = 0.5) -> SchedulerBuilder:
    """Multiply the LR by ``gamma`` every ``step_size`` scheduler steps (use with interval=epoch)."""

    def builder(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)

    return builder


def plateau(mode: Literal["min", "max"] = "min", factor: float = 0.5, patience: int = 0) -> SchedulerBuilder:
    """Reduce the LR when ``trainer.metric_to_track_lr`` stops improving (stepped per epoch)."""

    def builder(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)

    return builder
