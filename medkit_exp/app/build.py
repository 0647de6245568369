"""Phase `build`: the process set up, then the data, component, metrics and scheduler built from
their config nodes, all on the same path (`medkit_exp.app.nodes`), the project's and a user's alike.

What a component offers beyond the `TrainableComponent` protocol (its own test scoring, an
MLflow model, the summary's metrics; see `medkit_exp.training.protocols.ExperimentHooks`) is
looked up on the component later, never decided by its name.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from medkit_exp.app.data import ExperimentData
from medkit_exp.app.folds import apply_fold
from medkit_exp.app.model_sources import resolve_model_arguments, store_of
from medkit_exp.app.nodes import build_node, target_name
from medkit_exp.app.validate import BUILT_GROUPS
from medkit_exp.errors import UserError
from medkit_exp.tracking import NullRun, RunTracker
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.host_memory import set_malloc_mmap_threshold
from medkit_exp.training.protocols import MetricsComputer, TrainableComponent

if TYPE_CHECKING:
    from medkit_exp.model_uris import ResolvedModel


@dataclass
class Experiment:
    """What one run is made of once built; `tracker` is a `NullRun` until tracking starts."""

    cfg: DictConfig
    trainer_cfg: TrainerConfig
    choices: dict[str, str]
    data: ExperimentData
    component: TrainableComponent | None
    metrics: MetricsComputer | None
    scheduler: Callable[..., Any] | None
    main_process: bool  # under torchrun, rank 0 alone tracks and reports
    tracker: RunTracker = field(default_factory=NullRun)
    # Component arguments named by a model URI, and where each led (`medkit_exp.app.model_sources`).
    base_models: dict[str, ResolvedModel] = field(default_factory=dict)

    def release_component(self) -> None:
        """Free the model: the next job of a sequential sweep must not hold two."""
        self.component = None
        gc.collect()


def build(cfg: DictConfig, trainer_cfg: TrainerConfig, main_process: bool) -> Experiment:
    """Set the process up, then build every group node of ``cfg`` (the data first: a component
    may size itself on the train split)."""
    from medkit_exp.training.runtime import resolve_device, seed_everything

    configure_process(cfg)
    choices = {group: group_choice(cfg, group) for group in BUILT_GROUPS}
    # Models named by URI are fetched (or refused) before any data is read; the component gets folders.
    component_node, base_models = resolve_model_arguments(cfg.component, store_of(cfg))
    data = ExperimentData(build_node("data", cfg.data, choices["data"]), name=choices["data"])
    apply_fold(cfg, data)  # with cv.folds: train and dev become this job's fold, before any model loads
    if main_process:
        print(data.describe(), flush=True)
    seed_everything(trainer_cfg.seed)  # a new classification head is drawn from the seed too
    device = resolve_device(trainer_cfg.device)
    component = build_component(component_node, choices["component"], data.splits["train"], device)
    if cfg.tracking.register_as and not callable(getattr(component, "log_mlflow_model", None)):
        raise UserError(f"tracking.register_as={cfg.tracking.register_as}: component={choices['component']} "
                        "logs no MLflow model (it has no log_mlflow_model); drop register_as")
    return Experiment(cfg=cfg, trainer_cfg=trainer_cfg, choices=choices, data=data, component=component,
                      metrics=build_metrics(cfg.metrics, choices["metrics"], component),
                      scheduler=build_scheduler(cfg.scheduler, choices["scheduler"]), main_process=main_process,
                      base_models=base_models)


def configure_process(cfg: DictConfig) -> None:
    """The allocator's threshold (before anything big is allocated) and torch's thread count."""
    try:
        set_malloc_mmap_threshold(cfg.malloc_mmap_threshold_kib)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)


def group_choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for ``group`` (``hf_ner``), else the short name of its target."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    target = target_name(cfg.get(group))
    return target.rsplit(".", 1)[-1] if target else "none"


def build_component(node: Any, choice: str, train_data: list[Any], device: Any) -> TrainableComponent:
    """The trainable component of ``node``, checked against the `TrainableComponent` protocol."""
    from medkit_exp.training.protocols import missing_protocol_methods

    component = build_node("component", node, choice, device=device, train_data=train_data)
    missing = missing_protocol_methods(component)
    if missing:
        raise UserError(f"component={choice}: {target_name(node)} returned a {type(component).__name__}, which is "
                        f"not a TrainableComponent (no {', '.join(missing)}); return an object with load, "
                        "create_optimizer, preprocess, collate, forward and save")
    return component


def build_metrics(node: Any, choice: str, component: TrainableComponent) -> MetricsComputer | None:
    """The ``metrics`` node's `MetricsComputer` (None: the Trainer reports the loss alone)."""
    metrics = build_node("metrics", node, choice, component=component)
    if metrics is not None and not all(callable(getattr(metrics, m, None)) for m in ("prepare_batch", "compute")):
        raise UserError(f"metrics={choice}: {target_name(node)} returned a {type(metrics).__name__}, which is not a "
                        "MetricsComputer; return an object with prepare_batch and compute")
    return metrics


def build_scheduler(node: Any, choice: str) -> Callable[..., Any] | None:
    """The ``scheduler`` node's builder: a function of the optimizer (and the step counts)."""
    builder = build_node("scheduler", node, choice)
    if builder is not None and not callable(builder):
        raise UserError(f"scheduler={choice}: {target_name(node)} gave a {type(builder).__name__}, not a builder; "
                        "name a torch scheduler class with _partial_: true, or a function of the optimizer")
    return builder
