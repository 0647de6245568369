"""Models named by MLflow URIs: ``runs:/<run_id>/<path>``, ``models:/<name>/<version>``,
``models:/<name>@<alias>``, ``models:/m-<id>`` and a medkit_exp run's bare id (its best checkpoint),
resolved to a local HF model folder, downloaded once into a cache folder.

`parse_model_uri` and `is_model_uri` are pure; `resolve_model_uri` asks the tracking store and
downloads (MLflow is imported only then). The store's address when none is given is
`tracking_uri_or_default` (``$MLFLOW_TRACKING_URI``, else SQLite under ``./mlruns``), the same
rule as the tracking package's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medkit_exp.model_uris.store_uri import default_tracking_uri, tracking_uri_or_default
from medkit_exp.model_uris.uris import ModelUri, is_model_uri, is_run_id, names_a_model_uri, parse_model_uri

if TYPE_CHECKING:
    from medkit_exp.model_uris.resolve import ResolvedModel, resolve_model_uri

_LAZY = {"ResolvedModel": "medkit_exp.model_uris.resolve", "resolve_model_uri": "medkit_exp.model_uris.resolve"}

__all__ = ["ModelUri", "ResolvedModel", "default_tracking_uri", "is_model_uri", "is_run_id", "names_a_model_uri",
           "parse_model_uri", "resolve_model_uri", "tracking_uri_or_default"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
