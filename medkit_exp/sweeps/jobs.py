"""What a sweep's jobs and the sweep itself share: how a job finds its parent run, how a
failed job leaves its reason for the sweep's end, and a job's objective as its run logged it.

The callback (`medkit_exp.sweeps.callback`), the Optuna sweeper
(`medkit_exp.sweeps.optuna_search`), the resume of a sweep (`medkit_exp.sweeps.resume`) and
the CLI read these; this module imports none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

PARENT_ENV = "MEDKIT_EXP_PARENT_RUN_ID"
SWEEP_ENV = "MEDKIT_EXP_SWEEP_ID"
FAILED_MARKER = "medkit_exp_failed.txt"  # written in a failed job's folder: its one-line reason


def mark_job_failed(job_dir: str | os.PathLike[str], reason: str) -> None:
    """Leave a failed sweep job's reason in its folder, where the sweep's end finds it."""
    Path(job_dir).mkdir(parents=True, exist_ok=True)
    (Path(job_dir) / FAILED_MARKER).write_text(reason + "\n", encoding="utf-8")


def failed_jobs(sweep_dir: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(job folder, reason)`` of every job of the sweep in ``sweep_dir`` that failed."""
    return [(str(marker.parent), marker.read_text(encoding="utf-8").strip())
            for marker in sorted(Path(sweep_dir).glob(f"*/{FAILED_MARKER}"))]


def run_objective(metrics: dict[str, float], objective: str) -> float | None:
    """A job's objective as its run logged it: ``best_eval_f1`` (the best epoch's, what the job
    returned) for ``eval_f1``, whose plain metric holds the last epoch's value."""
    value = metrics.get(f"best_{objective}", metrics.get(objective))
    return None if value is None else float(value)
