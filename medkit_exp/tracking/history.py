"""What a run has logged so far: its epoch entries (``history.json``) and, for a run continued
after a crash, the last step and epoch already in the store, which are not logged again.

A resumed training replays the steps after its checkpoint; points the run already holds up to
those steps are skipped so that each metric history keeps one point per step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from medkit_exp.tracking.metrics import STEP_PREFIX

HISTORY_ARTIFACT = "history.json"


class RunHistory:
    """The run's history entries (one per epoch) and the de-duplication of a resumed run's metrics."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.logged_until_step: int | None = None  # optimizer step of the last ``step/train_loss`` point held
        self.logged_until_epoch: int | None = None  # epoch of the last ``train_loss`` point held

    def load(self, client: MlflowClient, run_id: str) -> None:
        """Read what run ``run_id`` already holds: its ``history.json`` (none yet: a fresh start of
        that run) and the last step and epoch of its metric histories."""
        try:
            path = client.download_artifacts(run_id, HISTORY_ARTIFACT)
            self.entries = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            self.entries = []
        self.logged_until_step = _last_step(client, run_id, STEP_PREFIX + "train_loss")
        self.logged_until_epoch = _last_step(client, run_id, "train_loss")

    def step_is_new(self, step: int) -> bool:
        """False for an optimizer step logged before the crash this run resumes from."""
        return self.logged_until_step is None or step > self.logged_until_step

    def epoch_is_new(self, epoch: int) -> bool:
        """False for an epoch whose metrics the run already holds."""
        return self.logged_until_epoch is None or epoch > self.logged_until_epoch

    def add(self, metrics: Mapping[str, Any], epoch: int) -> list[dict[str, Any]]:
        """Add the entry of ``epoch`` (replacing one of the same epoch) and return all entries."""
        entry = {**dict(metrics), "epoch": epoch}
        self.entries = [e for e in self.entries if e.get("epoch") != epoch] + [entry]
        return self.entries

    @property
    def last_epoch(self) -> int:
        """The step of run-level numbers (test scores...): the last entry's epoch, 0 before any."""
        return int(self.entries[-1]["epoch"]) if self.entries else 0


def _last_step(client: MlflowClient, run_id: str, metric: str) -> int | None:
    return max((m.step for m in client.get_metric_history(run_id, metric)), default=None)
