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
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

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
    points = [Metric(key, float(value), int(timestamp), int(step)) for key, value, timestamp, step in payload["metrics"]]
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
