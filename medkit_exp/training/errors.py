"""The errors the Trainer reports to its user: each message names the problem and the fix."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingSetupError(ValueError):
    """The trainer's inputs cannot work together (reported before training starts)."""
