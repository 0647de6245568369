"""A file barrier for tests whose processes must really run at the same time.

Each party touches a file named after its pid in a shared folder and waits until ``parties``
files are there. Used as a scheduler ``_target_``
(``scheduler._target_=support.barrier.linear_warmup_after_barrier``) it holds every sweep job
inside its MLflow run, after the run started and before the first training step: the jobs
overlap whatever the machine's speed, or the barrier fails in one line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def wait_at_barrier(folder: str | Path, parties: int, timeout_s: float = 240.0) -> None:
    """Register this process in ``folder`` and return once ``parties`` processes have registered."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while (arrived := len(list(folder.iterdir()))) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier {folder}: {arrived} of {parties} processes arrived in {timeout_s:.0f} s "
                               "(they did not run at the same time)")
        time.sleep(0.05)


def linear_warmup_after_barrier(folder: str, parties: int, warmup_ratio: float = 0.1) -> Any:
    """The ``linear_warmup`` scheduler, built once ``parties`` jobs are waiting (the Trainer builds it in ``train``)."""
    from medkit_exp.training.schedulers import linear_warmup

    builder = linear_warmup(warmup_ratio=warmup_ratio)

    def build(optimizer: Any, num_training_steps: int) -> Any:
        wait_at_barrier(folder, parties)
        return builder(optimizer, num_training_steps)

    return build
