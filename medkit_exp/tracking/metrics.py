"""Metric names and values sent to MLflow, and the JSON written for history artifacts.

Per-step metrics (``on_log``) are named ``step/<name>`` so that a metric history never mixes
optimizer-step numbers with epoch numbers; per-epoch metrics keep plain names
(``train_loss``, ``eval_f1``...), which is what ``search_runs("metrics.eval_f1 > 0.8")`` sees.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from medkit_exp.tracking.params import mlflow_key

STEP_PREFIX = "step/"
_STEP_NAMES = {"loss": "train_loss", "learning_rate": "lr"}


def step_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """``{"train_loss": .5, "lr": 1e-5}`` -> ``{"step/train_loss": .5, "step/lr": 1e-5}`` (numbers only)."""
    return {STEP_PREFIX + mlflow_key(_STEP_NAMES.get(k, k)): v for k, v in numbers(logs).items()}


def epoch_metrics(entry: Mapping[str, Any], epoch_duration: float | None = None) -> dict[str, float]:
    """Metrics of one history entry: ``<phase>_<k>`` for each number of a phase dict
    (``train``, ``eval``; nested dicts joined with ``_``), top-level numbers under their own
    name, ``epoch_duration`` as ``epoch_duration_s``. ``epoch`` itself is the step, not a metric.
    """
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key == "epoch":
            continue
        if isinstance(value, Mapping):
            out.update(prefixed_metrics(key, value))
        elif (number := as_float(value)) is not None:
            out[mlflow_key("epoch_duration_s" if key == "epoch_duration" else key)] = number
    if epoch_duration is not None:
        out["epoch_duration_s"] = float(epoch_duration)
    return out


def prefixed_metrics(prefix: str, values: Mapping[str, Any]) -> dict[str, float]:
    """``("test", {"f1": .7, "Disease": {"f1": .6}})`` -> ``{"test_f1": .7, "test_Disease_f1": .6}``."""
    return {mlflow_key(f"{prefix}_{k}"): v for k, v in numbers(values, nested=True).items()}


def numbers(values: Mapping[str, Any], nested: bool = False) -> dict[str, float]:
    """The numeric entries of ``values`` as floats (nested dicts flattened with ``_`` if ``nested``)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if nested and isinstance(value, Mapping):
            for sub, inner in numbers(value, nested=True).items():
                out[f"{key}_{sub}"] = inner
        elif (number := as_float(value)) is not None:
            out[str(key)] = number
    return out


def as_float(value: Any) -> float | None:
    """A float for real numbers, numpy scalars and 0-d tensors; None for anything else (bools too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        item = value.item()
        return as_float(item) if isinstance(item, (int, float)) else None
    return None


def to_json(obj: Any) -> str:
    """Indented JSON; NaN/inf become null (strict JSON readers reject them), other objects str()."""
    return json.dumps(_json_safe(obj), indent=2, ensure_ascii=False)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    number = as_float(obj)
    return _json_safe(number) if number is not None else str(obj)
