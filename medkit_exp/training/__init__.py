"""The training module: protocols, batches, the Trainer, its config and callbacks.

Names are imported lazily so that `medkit_exp.training.config` (the Hydra schema) can be
read without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchData": "medkit_exp.training.batch",
    "CheckpointError": "medkit_exp.training.checkpoint",
    "DefaultPrinterCallback": "medkit_exp.training.callbacks",
    "FastDropout": "medkit_exp.training.fast_dropout",
    "MetricsComputer": "medkit_exp.training.protocols",
    "NonFiniteLossError": "medkit_exp.training.errors",
    "StopTraining": "medkit_exp.training.callbacks",
    "TrainableComponent": "medkit_exp.training.protocols",
    "Trainer": "medkit_exp.training.trainer",
    "TrainerCallback": "medkit_exp.training.callbacks",
    "TrainerConfig": "medkit_exp.training.config",
    "TrainingSetupError": "medkit_exp.training.errors",
    "plan_batches": "medkit_exp.training.batching",
    "use_fast_dropout": "medkit_exp.training.fast_dropout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medkit_exp.training' has no attribute {name!r}")
