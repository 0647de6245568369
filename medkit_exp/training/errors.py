"""The errors the Trainer reports to its user: each message names the problem and the fix."""

from __future__ import annotations

from pathlib import Path

from medkit_exp.errors import MedkitExpError


class NonFiniteLossError(MedkitExpError, RuntimeError):
    """The loss became NaN or infinite."""

    @classmethod
    def at(cls, loss_value: float, where: str, last_checkpoint: Path | None) -> NonFiniteLossError:
        """The error for ``loss_value`` seen ``where``, naming the last good checkpoint."""
        kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
        return cls(f"loss is {loss_value} at {where} ({kept}); lower trainer.lr, check the data, "
                   "or set trainer.nan_policy=skip")


class TrainingSetupError(MedkitExpError, ValueError):
    """The trainer's inputs cannot work together (reported before training starts)."""
