"""The errors the Trainer reports to its user: each message names the problem and the fix."""

from __future__ import annotations

from medkit_exp.errors import MedkitExpError


class NonFiniteLossError(MedkitExpError, RuntimeError):
    """The loss became NaN or infinite."""


class TrainingSetupError(MedkitExpError, ValueError):
    """The trainer's inputs cannot work together (reported before training starts)."""
