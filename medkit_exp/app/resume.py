"""Find what `trainer.resume_from` points at: a checkpoint folder and the MLflow run to continue.

``trainer.resume_from`` accepts:

- ``last`` or ``best``: under ``trainer.output_dir`` when it holds checkpoints, else from the
  most recent run of ``tracking.experiment`` that recorded a checkpoint folder, else from
  the newest run folder under ``outputs/`` and ``multirun/`` of the launch folder;
- a checkpoint folder (``.../checkpoint_002``);
- an MLflow run id: that run's last checkpoint.

The checkpoint folder's parent becomes the run's ``trainer.output_dir`` again, and the MLflow
run recorded beside it (``tracking.json``) is continued, so metric histories stay in one run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkit_exp.errors import UserError

TRACKING_FILE = "tracking.json"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ResumePoint:
    checkpoint_dir: Path
    output_dir: Path
    run_id: str | None


def write_tracking_file(output_dir: Path, run_id: str, tracking_uri: str, experiment: str) -> None:
    """Record beside the checkpoints which MLflow run they belong to."""
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"run_id": run_id, "tracking_uri": tracking_uri, "experiment": experiment}
    (output_dir / TRACKING_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")


def _recorded_run_id(output_dir: Path) -> str | None:
    path = output_dir / TRACKING_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")).get("run_id")
    return None


def _has_index(folder: Path) -> bool:
    from medkit_exp.training.checkpoint import INDEX_FILE

    return (folder / INDEX_FILE).is_file()


def _from_tracking(tracking: Any) -> Path | None:
    """The checkpoint folder of the most recent run in the experiment that recorded one."""
    if not tracking.enabled:
        return None
    from mlflow.tracking import MlflowClient

    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(tracking.uri, tracking.experiment, tracking.root)
    runs = MlflowClient().search_runs([experiment_id], filter_string="tags.`checkpoint.dir` != ''",
                                      order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        folder = Path(run.data.tags["checkpoint.dir"])
        if _has_index(folder):
            return folder
    return None


def _from_launch_folder() -> Path | None:
    from medkit_exp.training.checkpoint import INDEX_FILE

    candidates = [p.parent for root in (Path("outputs"), Path("multirun")) if root.is_dir()
                  for p in root.rglob(INDEX_FILE)]
    return max(candidates, key=lambda p: (p / INDEX_FILE).stat().st_mtime, default=None)


def resume_point(tracking: Any, trainer_cfg: Any) -> str | None:
    """Point ``trainer_cfg`` at what ``trainer.resume_from`` names (its checkpoint folder and that
    folder's run folder) and return the MLflow run to continue; None and nothing changed when the
    run starts afresh."""
    if not trainer_cfg.resume_from:
        return None
    point = resolve_resume(tracking, trainer_cfg.resume_from, Path(trainer_cfg.output_dir))
    trainer_cfg.output_dir, trainer_cfg.resume_from = str(point.output_dir), str(point.checkpoint_dir)
    print(f"Resuming from {point.checkpoint_dir}"
          + (f" in MLflow run {point.run_id}" if point.run_id and tracking.enabled else ""), flush=True)
    return point.run_id


def resolve_resume(tracking: Any, resume_from: str, output_dir: Path) -> ResumePoint:
    """Turn ``trainer.resume_from`` into a checkpoint folder, its output folder and MLflow run.

    ``tracking`` is the ``tracking`` config node (where to look for earlier runs)."""
    from medkit_exp.training.checkpoint import CheckpointError, resolve_checkpoint

    if _RUN_ID.match(resume_from):
        return _from_run_id(tracking, resume_from)
    if resume_from in ("last", "best"):
        folder = output_dir if _has_index(output_dir) else (_from_tracking(tracking) or _from_launch_folder())
        if folder is None:
            raise UserError(
                f"trainer.resume_from={resume_from}: no earlier run with checkpoints was found (not in "
                f"trainer.output_dir={output_dir}, not in tracking experiment {tracking.experiment!r}, not "
                "under outputs/ or multirun/); give a checkpoint folder or an MLflow run id"
            )
        checkpoint = resolve_checkpoint(resume_from, folder)
    else:
        try:
            checkpoint = resolve_checkpoint(resume_from, output_dir)
        except CheckpointError as exc:
            raise UserError(str(exc)) from exc
    folder = checkpoint.parent
    return ResumePoint(checkpoint, folder, _recorded_run_id(folder))


def _from_run_id(tracking: Any, run_id: str) -> ResumePoint:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from medkit_exp.tracking.store import setup_tracking
    from medkit_exp.training.checkpoint import resolve_checkpoint

    setup_tracking(tracking.uri, tracking.experiment, tracking.root)
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as exc:
        raise UserError(f"trainer.resume_from={run_id}: no such MLflow run in this tracking store") from exc
    folder = run.data.tags.get("checkpoint.dir")
    if not folder or not _has_index(Path(folder)):
        raise UserError(
            f"trainer.resume_from={run_id}: that run recorded no checkpoint folder on this machine "
            f"({folder or 'no checkpoint.dir tag'}); give the checkpoint folder instead"
        )
    checkpoint = resolve_checkpoint("last", Path(folder))
    return ResumePoint(checkpoint, Path(folder), run_id)
