"""The checkpoints a run saw, and their upload as artifact folders (``best_checkpoint/``...).

What a checkpoint is (its epoch, step, metric, whether it is the best) comes from the Trainer's
summary, read with `medkit_exp.training.checkpoint.read_checkpoint_summary`. Uploads happen at
the end of training, since the Trainer deletes old checkpoints; while the server is down they
wait in the run's `Spool`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.tracking.metrics import as_float
from medkit_exp.tracking.secrets import redact_text
from medkit_exp.training.checkpoint import MODEL_DIR, CheckpointError, read_checkpoint_summary

if TYPE_CHECKING:
    from medkit_exp.tracking.sender import BackgroundSender
    from medkit_exp.tracking.spool import Spool

log = logging.getLogger(__name__)

CHECKPOINT_POLICIES = ("best", "best_and_last", "none")


@dataclass
class CheckpointRecord:
    """A checkpoint folder, with what its ``trainer_state.json`` says.

    The Trainer writes ``{"epoch", "global_step", "metric", "value", "is_best", "best_epoch", ...}``.
    """

    path: Path
    epoch: int | None = None
    global_step: int | None = None
    metric: str | None = None  # name of the tracked metric
    value: float | None = None  # its value at this checkpoint
    is_best: bool = False


class CheckpointUploads:
    """The best and last checkpoints recorded so far, and which were uploaded under which name."""

    def __init__(self) -> None:
        self.best: CheckpointRecord | None = None
        self.last: CheckpointRecord | None = None
        self._eval_by_epoch: dict[int, Mapping[str, Any]] = {}
        self._uploaded: dict[str, Path] = {}

    def remember_eval(self, metrics: Mapping[str, Any], epoch: int | None) -> None:
        """Keep an epoch's eval metrics: they give a checkpoint's value when its summary lacks it."""
        if epoch is not None:
            self._eval_by_epoch[epoch] = dict(metrics)

    def record(self, checkpoint_dir: Path) -> CheckpointRecord:
        """Note a checkpoint just written: it is the last one, and the best one if it says so."""
        record = self.read(Path(checkpoint_dir))
        self.last = record
        if record.is_best:
            self.best = record
        return record

    def read(self, path: Path) -> CheckpointRecord:
        """The record of checkpoint folder ``path`` (an unreadable summary is warned about)."""
        try:
            state = read_checkpoint_summary(path)
        except CheckpointError as exc:
            log.warning("%s", exc)
            state = {}
        epoch = state.get("epoch")
        metric = state.get("metric")
        value = as_float(state.get("value"))
        if value is None and metric is not None and epoch is not None:
            value = as_float(self._eval_by_epoch.get(epoch, {}).get(metric))
        is_best = state.get("is_best")
        if is_best is None:
            is_best = _looks_best(state, value)
        return CheckpointRecord(path, epoch, state.get("global_step"), metric, value, bool(is_best))

    def upload(self, sender: BackgroundSender, spool: Spool, path: Path, artifact_path: str) -> bool:
        """Upload checkpoint ``path`` (its ``model/`` folder if present) under ``artifact_path``, with
        tags ``<artifact_path>.epoch/global_step/metric/value/source``.

        Returns True once uploaded (a second call for the same folder and name does nothing).
        A tracking failure returns False with a warning; a missing folder raises FileNotFoundError.
        """
        record = self.read(path)
        if self._uploaded.get(artifact_path) == record.path.resolve():
            return True
        model_dir = record.path / MODEL_DIR
        source = model_dir if model_dir.is_dir() else record.path
        if not source.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {source}")
        tags = {f"{artifact_path}.source": redact_text(str(record.path.resolve()))}
        for key in ("epoch", "global_step", "metric", "value"):
            value = getattr(record, key)
            if value is not None:
                tags[f"{artifact_path}.{key}"] = str(value)
        if not spool.upload(sender, source, artifact_path, tags):
            return False
        self._uploaded[artifact_path] = record.path.resolve()
        return True

    def upload_recorded(self, sender: BackgroundSender, spool: Spool, policy: str) -> None:
        """Upload the best checkpoint (``best``), and the last one too (``best_and_last``)."""
        best, last = self.best, self.last
        if best is None and last is not None:
            log.warning("No checkpoint was marked as best (trainer_state.json); best_checkpoint not logged")
        if best is not None:
            self._upload_if_present(sender, spool, best, "best_checkpoint")
        if policy == "best_and_last" and last is not None:
            if best is not None and last.path.resolve() == best.path.resolve():
                sender.client.set_tag(sender.run_id, "last_checkpoint", "best_checkpoint")
            else:
                self._upload_if_present(sender, spool, last, "last_checkpoint")

    def _upload_if_present(self, sender: BackgroundSender, spool: Spool, record: CheckpointRecord,
                           artifact_path: str) -> None:
        if not record.path.is_dir():
            log.warning("Checkpoint %s no longer exists; %s not logged", record.path, artifact_path)
            return
        self.upload(sender, spool, record.path, artifact_path)


def check_policy(policy: str) -> None:
    """Refuse a ``log_checkpoints`` value other than ``best``, ``best_and_last`` or ``none``."""
    if policy not in CHECKPOINT_POLICIES:
        raise ValueError(f"log_checkpoints must be one of {CHECKPOINT_POLICIES}, got {policy!r}")


def _looks_best(state: Mapping[str, Any], value: float | None) -> bool:
    """For a ``trainer_state.json`` without ``is_best``: use ``best_epoch`` or ``best_metric``."""
    if state.get("best_epoch") is not None and state.get("epoch") is not None:
        return bool(state["best_epoch"] == state["epoch"])
    best = as_float(state.get("best_metric"))
    return best is not None and value is not None and math.isclose(value, best, rel_tol=1e-9, abs_tol=1e-12)
