"""Phase `validate`: every check of the composed config that needs no torch.

A run with a mistyped key, a component that cannot be imported or contradictory tracking
settings fails here, in one line, before any data is read or any model is loaded.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.app.evaluation import check_evaluation_settings, evaluation_settings
from medkit_exp.app.folds import check_cv_settings
from medkit_exp.app.nodes import check_node
from medkit_exp.errors import UserError
from medkit_exp.training.config import TrainerConfig

# The config groups whose node names what builds them (``_target_``).
BUILT_GROUPS = ("data", "component", "metrics", "scheduler")


def validate(cfg: DictConfig) -> TrainerConfig:
    """The run's `TrainerConfig`, once every group node and setting of ``cfg`` checks out."""
    trainer_cfg = trainer_config(cfg.trainer)
    for group in BUILT_GROUPS:
        check_node(group, cfg.get(group))
    check_tracking_settings(cfg.tracking)
    check_evaluation_settings(evaluation_settings(cfg))
    check_cv_settings(cfg)
    if cfg.get("objective_mode") not in (None, "max", "min"):
        raise UserError(f"objective_mode={cfg.objective_mode} must be max, min or null (the sweeper's direction, "
                        "else trainer.checkpoint_mode)")
    return trainer_cfg


def trainer_config(trainer_node: Any) -> TrainerConfig:
    """The `TrainerConfig` of the ``trainer`` node, validated."""
    trainer_cfg = OmegaConf.to_object(trainer_node)
    assert isinstance(trainer_cfg, TrainerConfig)
    try:
        trainer_cfg.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return trainer_cfg


def check_tracking_settings(tracking: Any) -> None:
    """``tracking.register_as`` needs a tracked run that logs its model."""
    name = tracking.register_as
    if not name:
        return
    if not tracking.enabled:
        raise UserError(f"tracking.register_as={name} needs tracking; drop tracking=none or register_as")
    if not tracking.log_model:
        raise UserError(f"tracking.register_as={name} registers the logged model; set tracking.log_model=true")
