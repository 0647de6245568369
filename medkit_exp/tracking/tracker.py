"""`RunTracker`: what the app and `MLflowCallback` ask of a run; `NullRun`: the run when tracking is off.

`medkit_exp.tracking.run.TrackedRun` logs into MLflow; `NullRun` takes the same calls and does
nothing, so code that logs never asks whether it is tracking (``tracker.enabled`` tells, for
what is only printed). A test keeps `NullRun`'s public names equal to `TrackedRun`'s. This module
imports nothing heavy: a run without tracking never loads MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from medkit_exp.tracking.checkpoints import CheckpointRecord


@runtime_checkable
class RunTracker(Protocol):
    """One experiment run as its users see it (see `TrackedRun` for what each call logs).

    Attributes: ``enabled`` (False only for `NullRun`), ``run_id`` and ``experiment_id`` (None
    until the run started, and when tracking is off), ``unsent_summary`` (how to send what a down
    server could not take, once the run ended; empty or None otherwise), ``offline`` (the server
    fails right now), ``logging`` (the run is started and not ended).
    """

    @property
    def enabled(self) -> bool: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def experiment_id(self) -> str | None: ...
    @property
    def unsent_summary(self) -> str | None: ...
    @property
    def offline(self) -> bool: ...
    @property
    def logging(self) -> bool: ...

    def start(self) -> str | None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_params(self, config: Any = None) -> None: ...
    def log_step_metrics(self, logs: Mapping[str, float], step: int) -> None: ...
    def remember_eval(self, metrics: Mapping[str, Any], epoch: int | None) -> None: ...
    def log_epoch(self, metrics: Mapping[str, Any], epoch: int, epoch_duration: float | None = None) -> None: ...
    def log_test_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...
    def log_final_metrics(self, metrics: Mapping[str, Any]) -> None: ...
    def log_dict_artifact(self, obj: Any, name: str) -> None: ...
    def log_config(self, resolved_cfg_yaml: str, name: str = "config.yaml") -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_folder(self, local_dir: str | os.PathLike[str], artifact_path: str) -> None: ...
    def log_table(self, columns: Mapping[str, list[Any]], name: str) -> None: ...
    def log_datasets(self, datasets: list[dict[str, Any]]) -> None: ...
    def log_model_inputs(self, model_ids: list[str]) -> None: ...
    def record_checkpoint(self, checkpoint_dir: Path) -> CheckpointRecord | None: ...
    def log_best_checkpoint(self, path: str | os.PathLike[str]) -> bool: ...
    def log_checkpoint(self, path: str | os.PathLike[str], artifact_path: str) -> bool: ...
    def upload_checkpoints(self, policy: str = "best") -> None: ...
    def ui_command(self) -> str: ...
    def wait_until_online(self, timeout: float = ...) -> bool: ...
    def flush(self) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...
    def fail(self, exception: BaseException, *, stop_signal: str | None = None, phase: str | None = None) -> None: ...


class NullRun:
    """The run when tracking is off: every call is accepted and does nothing."""

    enabled = False
    run_id: str | None = None
    experiment_id: str | None = None
    unsent_summary: str | None = ""
    offline = False
    logging = False

    def start(self) -> str | None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_params(self, config: Any = None) -> None:
        pass

    def log_step_metrics(self, logs: Mapping[str, float], step: int) -> None:
        pass

    def remember_eval(self, metrics: Mapping[str, Any], epoch: int | None) -> None:
        pass

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int, epoch_duration: float | None = None) -> None:
        pass

    def log_test_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_final_metrics(self, metrics: Mapping[str, Any]) -> None:
        pass

    def log_dict_artifact(self, obj: Any, name: str) -> None:
        pass

    def log_config(self, resolved_cfg_yaml: str, name: str = "config.yaml") -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_folder(self, local_dir: str | os.PathLike[str], artifact_path: str) -> None:
        pass

    def log_table(self, columns: Mapping[str, list[Any]], name: str) -> None:
        pass

    def log_datasets(self, datasets: list[dict[str, Any]]) -> None:
        pass

    def log_model_inputs(self, model_ids: list[str]) -> None:
        pass

    def record_checkpoint(self, checkpoint_dir: Path) -> CheckpointRecord | None:
        return None

    def log_best_checkpoint(self, path: str | os.PathLike[str]) -> bool:
        return False

    def log_checkpoint(self, path: str | os.PathLike[str], artifact_path: str) -> bool:
        return False

    def upload_checkpoints(self, policy: str = "best") -> None:
        pass

    def ui_command(self) -> str:
        return "tracking is off"

    def wait_until_online(self, timeout: float = 0.0) -> bool:
        return False

    def flush(self) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass

    def fail(self, exception: BaseException, *, stop_signal: str | None = None, phase: str | None = None) -> None:
        pass
