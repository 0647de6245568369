"""Which MLflow store a run or a model URI refers to when none is named. No MLflow import."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path


def default_tracking_uri(root: str | os.PathLike[str] = "mlruns") -> str:
    """``sqlite:///<absolute root>/mlflow.db`` (four slashes for an absolute path)."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def tracking_uri_or_default(uri: str | None = None, root: str | os.PathLike[str] = "mlruns") -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the embedded SQLite store under ``root``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)


def sqlite_path(uri: str) -> Path | None:
    """The DB file of a ``sqlite:///`` URI (relative to the cwd unless absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def shown_uri(uri: str) -> str:
    """``uri`` with the password of an ``http://user:password@host`` URI left out."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit((parts.scheme, f"{parts.username}:***@{netloc}", parts.path, parts.query,
                                    parts.fragment))
