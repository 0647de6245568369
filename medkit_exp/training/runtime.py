"""Where and how reproducibly a run computes: its torch device and its random seeds.

The app calls both before it builds the component (a new classification head is drawn from
the seed, on the device), and the Trainer calls them again before training.
"""

from __future__ import annotations

import random

import torch


def resolve_device(name: str, component: object | None = None) -> torch.device:
    """The torch device of ``trainer.device``; ``auto`` keeps a component where it already is
    (when that device is usable), else picks CUDA when present, else the CPU.

    ``component`` is anything with a ``device`` attribute, or None (before one is built).
    """
    if name != "auto":
        return torch.device(name)
    current = getattr(component, "device", None)
    if current is not None:
        current = torch.device(current)
        if current.type == "cpu" or (current.type == "cuda" and torch.cuda.is_available()):
            return current
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's and (when installed) numpy's global random generators."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
