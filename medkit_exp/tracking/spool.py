"""What a run could not send to MLflow, kept on disk beside its checkpoints, and sent later.

The spool file (``mlflow_unsent.json``) is JSON::

    {"run_id", "experiment", "tracking_uri" (credentials redacted),
     "status": null or the status the run ended with but could not record,
     "metrics": [[key, value, timestamp_ms, step], ...],
     "calls": [{"tags": {...}} | {"text": name, "content": str} | {"dict": name, "content": obj}, ...],
     "uploads": [{"local": folder, "artifact_path": name, "tags": {...}}, ...]}

It is rewritten atomically each time the run flushes while the server is down, so a process
killed during an outage loses nothing either. `send_spool` replays it: metric points the run
already holds (same key and step) are skipped, so sending twice, or after a partial send,
logs each point once.

`Spool` is one run's side of it: it writes the file while the server is down, removes it once
everything went out, sends an earlier process's file when the run is resumed, and sets aside a
file of another run rather than overwrite it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.tracking.failures import warn_on_failure
from medkit_exp.tracking.secrets import redact_text

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from medkit_exp.tracking.sender import BackgroundSender

log = logging.getLogger(__name__)

SPOOL_FILE = "mlflow_unsent.json"
SENT_SUFFIX = ".sent"


def write_spool(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a kill leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def read_spool(path: Path) -> dict[str, Any]:
    """The spool file at ``path`` (a file, or the folder holding ``mlflow_unsent.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPOOL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (nothing was left unsent there, or it was sent already)")
    payload = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or "run_id" not in payload:
        raise ValueError(f"{path}: not a medkit_exp spool file (no run_id)")
    return payload


def send_spool(payload: dict[str, Any], client: Any) -> dict[str, int]:
    """Send what ``payload`` kept to its run with ``client``; return counts of what was sent."""
    from mlflow.entities import Metric, RunStatus, RunTag

    run_id = payload["run_id"]
    client.get_run(run_id)  # fails early, and clearly, for a run this server does not hold
    points = [Metric(key, float(value), int(timestamp), int(step))
              for key, value, timestamp, step in payload["metrics"]]
    held: dict[str, set[int]] = defaultdict(set)
    for key in {m.key for m in points}:
        held[key] = {m.step for m in client.get_metric_history(run_id, key)}
    new, seen = [], set()
    for metric in points:
        if metric.step in held[metric.key] or (metric.key, metric.step) in seen:
            continue
        seen.add((metric.key, metric.step))
        new.append(metric)
    for start in range(0, len(new), 1000):
        client.log_batch(run_id, metrics=new[start:start + 1000], synchronous=True)

    tags: dict[str, str] = {}
    artifacts: dict[str, dict[str, Any]] = {}  # history.json was rewritten each epoch: its last version
    for call in payload["calls"]:
        if "tags" in call:
            tags.update({k: str(v) for k, v in call["tags"].items()})
        elif "text" in call or "dict" in call:
            artifacts[call.get("text") or call["dict"]] = call
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    for name, call in artifacts.items():
        if "text" in call:
            client.log_text(run_id, call["content"], name)
        else:
            client.log_dict(run_id, call["content"], name)
    uploads = 0
    for upload in payload.get("uploads", []):
        if not Path(upload["local"]).is_dir():
            raise FileNotFoundError(f"{upload['local']}: the folder to upload as {upload['artifact_path']} is gone")
        client.log_artifacts(run_id, upload["local"], upload["artifact_path"])
        if upload.get("tags"):
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in upload["tags"].items()])
        uploads += 1
    status = payload.get("status")
    if status:
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))
    return {"metrics": len(new), "metrics_already_there": len(points) - len(new), "tags": len(tags),
            "artifacts": len(artifacts), "uploads": uploads, "ended": int(bool(status))}


class Spool:
    """What one run could not send, kept at ``path`` (``<spool_dir>/mlflow_unsent.json``; None: in
    memory only): the sender's backlog and the folders that could not be uploaded.

    Every method takes the run's `BackgroundSender` (its ``client`` and ``run_id`` are the run's).
    """

    def __init__(self, path: Path | None, experiment: str, flush_timeout_s: float) -> None:
        self.path = path
        self.experiment = experiment
        self.flush_timeout_s = flush_timeout_s
        self.uploads: list[dict[str, Any]] = []  # artifact folders to upload when the server is back
        self.summary: str | None = None  # set when the run ended with data kept in the spool file

    def send_earlier(self, client: MlflowClient, run_id: str) -> None:
        """Resuming run ``run_id`` whose earlier process kept data while its server was down: send it now."""
        if self.path is None or not self.path.is_file():
            return
        with warn_on_failure("Could not send %s", self.path, brief=True):  # kept on disk: set_aside_foreign names it
            payload = read_spool(self.path)
            if payload["run_id"] != run_id:
                return  # another run's: set aside by set_aside_foreign
            payload["status"] = None  # the run goes on
            sent = send_spool(payload, client)
            self.path.rename(self.path.with_name(self.path.name + SENT_SUFFIX))
            log.warning("Sent what an earlier process of run %s kept while MLflow was unreachable (%d metric "
                        "point(s))", run_id, sent["metrics"])

    def set_aside_foreign(self) -> None:
        """A spool file this run would overwrite (another run's, or one that could not be sent)
        is renamed, never lost, and the way to send it is logged."""
        if self.path is None or not self.path.is_file():
            return
        try:
            owner = read_spool(self.path)["run_id"]
        except (OSError, ValueError, KeyError):
            owner = "unknown"
        kept = self.path.with_name(f"mlflow_unsent.{owner}.json")
        self.path.rename(kept)
        log.warning("Unsent MLflow data of run %s kept in %s; send it with: python -m medkit_exp.send_unsent %s",
                    owner, kept, kept)

    def flush(self, sender: BackgroundSender) -> None:
        """Flush ``sender`` (up to ``flush_timeout_s``); keep on disk whatever the backend has not
        taken (a kill then loses nothing), or remove the file once everything went out."""
        if sender.flush(self.flush_timeout_s) and not self.uploads:
            self._remove()
            return
        self.write(sender, status=None)

    def write(self, sender: BackgroundSender, status: str | None) -> Path | None:
        """Write the backlog of ``sender`` and the waiting uploads (``status``: the run's end, not
        recorded); the file's path, or None when there is no file or it could not be written."""
        if self.path is None:
            return None
        try:
            write_spool(self.path, {
                "run_id": sender.run_id, "experiment": self.experiment, "status": status,
                "tracking_uri": redact_text(sender.client.tracking_uri),
                **sender.backlog(), "uploads": self.uploads,
            })
            return self.path
        except OSError as exc:
            log.warning("Could not keep the unsent MLflow data in %s: %s", self.path, exc)
            return None

    def upload(self, sender: BackgroundSender, source: Path, artifact_path: str, tags: Mapping[str, str]) -> bool:
        """Upload folder ``source`` as ``artifact_path`` and set ``tags``; while the server is down
        (or if the upload fails) keep it in the spool file instead. True once uploaded."""
        self.flush(sender)  # keep the worker out of the client meanwhile
        if not sender.offline:
            with warn_on_failure("Could not upload %s to MLflow as %s", source, artifact_path, brief=True):
                _upload_now(sender, str(source), artifact_path, tags)
                return True
        self.uploads.append({"local": str(source.resolve()), "artifact_path": artifact_path, "tags": dict(tags)})
        self.write(sender, status=None)
        return False

    def retry_uploads(self, sender: BackgroundSender) -> None:
        """Upload the folders kept while the server was down (those that fail again stay kept)."""
        waiting, self.uploads = self.uploads, []
        for upload in waiting:
            with warn_on_failure("Could not upload %s to MLflow as %s", upload["local"], upload["artifact_path"],
                                 brief=True):
                _upload_now(sender, upload["local"], upload["artifact_path"], upload["tags"])
                continue
            self.uploads.append(upload)  # kept for send_unsent

    def settle(self, sender: BackgroundSender, status: str, ended: bool) -> None:
        """After the run's end (``ended``: recorded with ``status``) and its sender closed: remove the
        file if everything went out, else write it and set `summary` (how to send it later)."""
        if sender.all_sent and ended and not self.uploads:
            self._remove()
            return
        backlog = sender.backlog()
        path = self.write(sender, status=None if ended else status)
        if path is None:
            log.warning("%d metric point(s) could not be sent to MLflow run %s", len(backlog["metrics"]),
                        sender.run_id)
            return
        self.summary = (f"MLflow unreachable: {len(backlog['metrics'])} metric point(s), "
                        f"{len(backlog['calls'])} tag/artifact write(s), {len(self.uploads)} "
                        f"upload(s) and the run's end kept in {path}; when the server is back, send them "
                        f"with: python -m medkit_exp.send_unsent {path.parent}")
        log.warning("%s", self.summary)

    def _remove(self) -> None:
        if self.path is not None and self.path.is_file():
            self.path.unlink()


def _upload_now(sender: BackgroundSender, local: str, artifact_path: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    sender.client.log_artifacts(sender.run_id, local, artifact_path)
    if tags:
        sender.client.log_batch(sender.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
