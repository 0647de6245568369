"""`TrainerConfig`: every knob of the training loop, and the Hydra schema of `trainer.*`.

This module imports nothing heavy (no torch), so that Hydra can compose and validate a
config before any model is loaded.

medkit's names for the same settings (``learning_rate``, ``nb_training_epochs``...) are
accepted by the constructor and readable (and writable) as attributes, so that medkit code
and callbacks work unchanged; they are not fields, so Hydra, MLflow params and ``asdict``
see each setting once, under the project's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


class _MedkitName:
    """medkit's attribute name for a `TrainerConfig` field: reads and writes that field."""

    def __init__(self, field: str, to_field: Callable[[Any], Any] = lambda v: v,
                 from_field: Callable[[Any], Any] = lambda v: v) -> None:
        self.field, self.to_field, self.from_field = field, to_field, from_field

    def __get__(self, config: Any, owner: type | None = None) -> Any:
        return self if config is None else self.from_field(getattr(config, self.field))

    def __set__(self, config: Any, value: Any) -> None:
        setattr(config, self.field, self.to_field(value))


def _checkpoint_mode(minimize: Any) -> str:
    if not isinstance(minimize, bool):
        raise ValueError(f"minimize_checkpoint_metric must be True or False, got {minimize!r}")
    return "min" if minimize else "max"


def _accepts_medkit_names(cls: type) -> type:
    """Let the dataclass's constructor take medkit's names too (see `_own_names`)."""
    init = vars(cls)["__init__"]  # the one @dataclass wrote

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **_own_names(cls, kwargs))

    type.__setattr__(cls, "__init__", __init__)
    return cls


def _own_names(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with medkit's names replaced by the fields they stand for; a setting given
    under both names with different values is a ``ValueError``."""
    result = {k: v for k, v in kwargs.items() if k not in MEDKIT_NAMES}
    for name, value in kwargs.items():
        if name not in MEDKIT_NAMES:
            continue
        alias = MEDKIT_NAMES[name]
        converted = alias.to_field(value)
        if alias.field in result and result[alias.field] != converted:
            raise ValueError(f"TrainerConfig got {alias.field}={result[alias.field]!r} and {name}={value!r}, "
                             f"two names of one setting with different values: give only one of them")
        result[alias.field] = converted
    return result


@_accepts_medkit_names
@dataclass
class TrainerConfig:
    """Settings of a `Trainer` run.

    Checkpoint metrics are named as in the eval phase of the history (``loss``, ``f1``...).
    ``resume_from`` is a checkpoint folder, or ``"last"`` for the last checkpoint under
    ``output_dir``. medkit's names are accepted beside the fields (see `MEDKIT_NAMES`):
    ``TrainerConfig(output_dir="ckpt", learning_rate=1e-4, nb_training_epochs=3)``.
    """

    output_dir: str = "checkpoints"
    lr: float = 5e-5
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 32
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present, else "cpu"; or "cpu", "cuda", "cuda:1"
    # "fp32", "bf16" (autocast) or "auto": bf16 where the CPU/GPU computes it natively
    precision: str = "fp32"
    # Compile the component's `model` with torch.compile (Inductor), shapes marked dynamic so that
    # batches of new lengths do not recompile; the first steps pay the compile time.
    compile: bool = False
    # Batch lengths rounded up to a multiple of this, for components with a `pad_to_multiple_of`
    # attribute. None: in bf16 on CPU (oneDNN caches a kernel per batch shape: 500 MB less on
    # NCBI), the lengths that pad the training batches least with as few distinct shapes as
    # multiples of 16 (for components with `pad_lengths`; else multiples of 16); elsewhere the
    # longest example. 0: always the longest example.
    pad_to_multiple_of: int | None = None
    num_workers: int = 0
    # Batch order: "random" shuffles examples; "length_grouped" shuffles batches of
    # examples of similar length, which cuts padding (and time) with little effect on quality.
    batch_order: str = "random"
    do_metrics_in_training: bool = False
    # Scheduler: stepped after every optimizer step ("step") or once per epoch ("epoch");
    # ReduceLROnPlateau is always stepped per epoch with the eval metric below.
    lr_scheduler_interval: str = "step"
    metric_to_track_lr: str = "loss"
    log_every_n_steps: int = 10
    checkpoint_period: int = 1  # epochs between checkpoints; 0 saves only at the end
    checkpoint_metric: str = "loss"
    checkpoint_mode: str = "min"  # "min" or "max"
    keep_checkpoints: int = 1  # checkpoints kept besides the best and the last
    early_stopping_patience: int | None = None  # epochs without improvement; None: never stop
    eval_before_training: bool = False  # also score the dev split with the model as given (Trainer.initial_eval)
    nan_policy: str = "stop"  # "stop" or "skip" (skip the step, up to max_nan_skips times)
    max_nan_skips: int = 10
    resume_from: str | None = None

    # medkit's names (not fields: each setting is stored, logged and overridden once)
    learning_rate = _MedkitName("lr")
    nb_training_epochs = _MedkitName("epochs")
    gradient_accumulation_steps = _MedkitName("grad_accum_steps")
    dataloader_nb_workers = _MedkitName("num_workers")
    minimize_checkpoint_metric = _MedkitName("checkpoint_mode", _checkpoint_mode, lambda mode: mode == "min")

    def validate(self) -> None:
        """Raise ``ValueError`` with one line naming the bad setting and what to use instead."""
        checks = [
            (self.lr > 0, f"trainer.lr must be > 0, got {self.lr}"),
            (self.epochs >= 1, f"trainer.epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"trainer.batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.grad_accum_steps >= 1, f"trainer.grad_accum_steps must be >= 1, got {self.grad_accum_steps}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"trainer.max_grad_norm must be > 0 or null, got {self.max_grad_norm}"),
            (self.precision in ("fp32", "bf16", "auto"),
             f"trainer.precision must be fp32, bf16 or auto, got {self.precision!r}"),
            (self.batch_order in ("random", "length_grouped"),
             f"trainer.batch_order must be random or length_grouped, got {self.batch_order!r}"),
            (self.lr_scheduler_interval in ("step", "epoch"),
             f"trainer.lr_scheduler_interval must be step or epoch, got {self.lr_scheduler_interval!r}"),
            (self.checkpoint_mode in ("min", "max"),
             f"trainer.checkpoint_mode must be min or max, got {self.checkpoint_mode!r}"),
            (self.checkpoint_period >= 0, f"trainer.checkpoint_period must be >= 0, got {self.checkpoint_period}"),
            (self.keep_checkpoints >= 0, f"trainer.keep_checkpoints must be >= 0, got {self.keep_checkpoints}"),
            (self.log_every_n_steps >= 1, f"trainer.log_every_n_steps must be >= 1, got {self.log_every_n_steps}"),
            (self.pad_to_multiple_of is None or self.pad_to_multiple_of >= 0,
             f"trainer.pad_to_multiple_of must be >= 0 or null, got {self.pad_to_multiple_of}"),
            (self.num_workers >= 0, f"trainer.num_workers must be >= 0, got {self.num_workers}"),
            (self.nan_policy in ("stop", "skip"), f"trainer.nan_policy must be stop or skip, got {self.nan_policy!r}"),
            (self.early_stopping_patience is None or self.early_stopping_patience >= 1,
             f"trainer.early_stopping_patience must be >= 1 or null, got {self.early_stopping_patience}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# medkit's name of each setting that medkit names differently -> how it maps to the field.
MEDKIT_NAMES: dict[str, _MedkitName] = {
    name: value for name, value in vars(TrainerConfig).items() if isinstance(value, _MedkitName)
}


def as_trainer_config(config: Any) -> TrainerConfig:
    """``config`` as a `TrainerConfig`: itself, or one read from the attributes of another
    config object with medkit's (or the project's) names, e.g. a ``medkit.training.TrainerConfig``.

    Settings the object lacks keep the project's defaults; medkit's ``seed=None`` (no seeding)
    keeps the default seed, since the batch order is planned from it.
    """
    if isinstance(config, TrainerConfig):
        return config
    names = [f.name for f in fields(TrainerConfig)] + list(MEDKIT_NAMES)
    found = {name: getattr(config, name) for name in names if hasattr(config, name)}
    if found.get("seed", 0) is None:
        del found["seed"]
    if not found:
        raise TypeError(f"config must be a TrainerConfig (medkit_exp's or medkit's), got {type(config).__name__}")
    return TrainerConfig(**found)
