"""Experiment tracking with MLflow: store setup, params, tags, the run, the Trainer callback.

``RunTracker`` (what a run offers), ``NullRun`` (the run when tracking is off), ``flatten_params``
and the tag helpers are light; ``setup_tracking`` and ``MLflowCallback``
import MLflow (2-3 s) only when first accessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medkit_exp.tracking.params import flatten_params
from medkit_exp.tracking.tags import dataset_digest, dataset_tags, git_tags, run_name
from medkit_exp.tracking.tracker import NullRun, RunTracker

if TYPE_CHECKING:
    from medkit_exp.tracking.mlflow_callback import MLflowCallback
    from medkit_exp.tracking.run import TrackedRun
    from medkit_exp.tracking.store import TrackingUnavailableError, default_tracking_uri, setup_tracking

_LAZY = {
    "setup_tracking": "medkit_exp.tracking.store",
    "default_tracking_uri": "medkit_exp.tracking.store",
    "TrackingUnavailableError": "medkit_exp.tracking.store",
    "MLflowCallback": "medkit_exp.tracking.mlflow_callback",
    "TrackedRun": "medkit_exp.tracking.run",
}

__all__ = [
    "MLflowCallback",
    "NullRun",
    "RunTracker",
    "TrackedRun",
    "TrackingUnavailableError",
    "dataset_digest",
    "dataset_tags",
    "default_tracking_uri",
    "flatten_params",
    "git_tags",
    "run_name",
    "setup_tracking",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
