"""Run tags: git state, dataset identity, and a readable run name. No MLflow import."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# MLflow's own system tag names (mlflow.utils.mlflow_tags), so the UI shows them as source info.
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_GIT_BRANCH = "mlflow.source.git.branch"

# Config groups whose choice the run name's head shows (component, dataset) or that say little.
_GROUPS = {"component", "data", "metrics", "scheduler", "trainer", "tracking", "callbacks", "hparams_search"}

# Settings that change how a run is shown or logged, not what it computes.
_QUIET = ("callbacks.", "tracking.", "threads")

# Last path parts that say nothing about which model it is.
_GENERIC_MODEL_DIRS = {"model", "models", "checkpoint", "best_checkpoint", "last_checkpoint", "hf_model", "artifacts"}


def git_tags(path: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> dict[str, str]:
    """Git state of the repository containing ``path`` (default: the current directory).

    Returns ``{"git.commit", "git.dirty", "git.branch"}`` plus MLflow's
    ``mlflow.source.git.commit`` / ``mlflow.source.git.branch``; ``git.dirty`` is ``"true"``
    when tracked files differ from HEAD (untracked files do not count). The branch is omitted
    on a detached HEAD. Returns ``{}`` outside a repository, without commits, or without git.
    """
    cwd = str(path) if path is not None else os.getcwd()
    head = _git(["rev-parse", "HEAD", "--abbrev-ref", "HEAD"], cwd, timeout)
    if head is None:
        return {}
    lines = head.splitlines()
    if len(lines) != 2:
        return {}
    commit, branch = lines
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd, timeout)
    tags = {"git.commit": commit, MLFLOW_GIT_COMMIT: commit}
    if status is not None:
        tags["git.dirty"] = "true" if status.strip() else "false"
    if branch != "HEAD":
        tags["git.branch"] = branch
        tags[MLFLOW_GIT_BRANCH] = branch
    return tags


def _git(args: list[str], cwd: str, timeout: float) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# Where a run's model came from, when it was named by a model URI (runs:/, models:/, a run id).
BASE_MODEL_TAG = "medkit_exp.base_model"  # the URI as written
BASE_MODEL_RESOLVED_TAG = "medkit_exp.base_model.resolved"  # what it named then: models:/<name>/<version>...
BASE_RUN_TAG = "medkit_exp.base_run"  # the run that produced the model


def base_model_tags(given: str, resolved: str, run_id: str | None) -> dict[str, str]:
    """The lineage tags of a run whose model came from the URI ``given`` (``resolved`` its concrete
    form, ``run_id`` the run that produced the model, if known)."""
    tags = {BASE_MODEL_TAG: given, BASE_MODEL_RESOLVED_TAG: resolved}
    if run_id:
        tags[BASE_RUN_TAG] = run_id
    return tags


def dataset_digest(paths: Iterable[str | os.PathLike[str]], length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` chars) of the files' contents; folders are read recursively.

    File names relative to each given path are hashed too, so renaming a split changes it.
    """
    sha = hashlib.sha256()
    for path in paths:
        root = Path(path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            name = file.name if file == root else file.relative_to(root).as_posix()
            sha.update(name.encode() + b"\0")
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
            sha.update(b"\0")
    return sha.hexdigest()[:length]


def dataset_tags(
    name: str,
    digest: str | None = None,
    paths: Iterable[str | os.PathLike[str]] | None = None,
) -> dict[str, str]:
    """``{"dataset.name": name, "dataset.digest": ...}``; the digest is computed from ``paths`` if not given."""
    tags = {"dataset.name": name}
    if digest is None and paths is not None:
        digest = dataset_digest(paths)
    if digest is not None:
        tags["dataset.digest"] = digest
    return tags


def run_name(
    component: str,
    model: str | None = None,
    dataset: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    max_length: int = 80,
) -> str:
    """A short readable run name, e.g. ``hf_ner-all-MiniLM-L6-v2-demo-lr=3e-05``.

    ``model`` may be a hub id or a local path (its last meaningful folder name is used).
    ``overrides`` are Hydra-style ``["trainer.lr=3e-05"]`` strings or a ``{"trainer.lr": 3e-05}``
    mapping; only each key's last part is kept, ``hydra.*`` overrides and group choices
    (``component=...``: the head shows them) are dropped, and the ones
    that do not fit in ``max_length`` are replaced by ``+N``.
    """
    head = "-".join(part for part in (component, _short_model(model), dataset) if part)
    items = _override_items(overrides)
    name = head
    for i, item in enumerate(items):
        remaining = len(items) - i - 1
        tail = f"-+{remaining}" if remaining else ""
        if len(name) + 1 + len(item) + len(tail) > max_length:
            return f"{name}-+{len(items) - i}"
        name = f"{name}-{item}"
    return name


def _short_model(model: str | None) -> str | None:
    if not model:
        return None
    if str(model).startswith("models:/"):  # models:/name/3, models:/name@alias: the name and its version
        return str(model)[len("models:/"):].strip("/").replace("/", "-")[:40]
    if str(model).startswith("runs:/"):  # runs:/<run_id>/...: the run, shortened
        return "run-" + str(model)[len("runs:/"):].strip("/")[:8]
    parts = [p for p in str(model).replace("\\", "/").split("/") if p]
    while len(parts) > 1 and parts[-1].lower() in _GENERIC_MODEL_DIRS:
        parts.pop()
    return parts[-1][:40] if parts else None


def _override_items(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        pairs = [(str(k), str(v)) for k, v in overrides.items()]
    else:
        pairs = [(o.split("=", 1)[0], o.split("=", 1)[1]) if "=" in o else (o, "") for o in overrides]
    items = []
    for key, value in pairs:
        key = key.lstrip("+~")
        if key.startswith(("hydra.", "hydra/")):
            continue
        if ("." not in key and "/" not in key and key in _GROUPS) or key.startswith(_QUIET) or key in _QUIET:
            continue  # a group choice (the name's head says it) or a setting that changes no result
        short = key.replace("/", ".").rsplit(".", 1)[-1]
        items.append(f"{short}={value}" if value else short)
    return items
