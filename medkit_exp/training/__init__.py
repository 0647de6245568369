"""The training module: protocols, batches, the Trainer, its config and callbacks."""

from medkit_exp.training.batch import BatchData
from medkit_exp.training.callbacks import DefaultPrinterCallback, TrainerCallback
from medkit_exp.training.checkpoint import CheckpointError
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.protocols import MetricsComputer, TrainableComponent
from medkit_exp.training.trainer import NonFiniteLossError, Trainer, TrainingSetupError

__all__ = [
    "BatchData",
    "CheckpointError",
    "DefaultPrinterCallback",
    "MetricsComputer",
    "NonFiniteLossError",
    "TrainableComponent",
    "Trainer",
    "TrainerCallback",
    "TrainerConfig",
    "TrainingSetupError",
]
