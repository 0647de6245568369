"""What a model URI names, read from its text alone (no store is asked)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from medkit_exp.errors import UserError

RUNS_PREFIX = "runs:/"
MODELS_PREFIX = "models:/"
BEST_CHECKPOINT = "best_checkpoint"  # the artifact folder of a medkit_exp run's best checkpoint's model
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_VERSION = re.compile(r"[1-9][0-9]*")
_LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")


@dataclass(frozen=True)
class ModelUri:
    """A parsed model URI. ``kind`` is ``run`` (``runs:/`` or a bare run id: ``run_id`` and
    ``path``), ``registered`` (``name`` and ``version`` or ``alias``) or ``logged`` (``model_id``)."""

    given: str
    kind: str
    run_id: str | None = None
    path: str = ""
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None


def is_model_uri(value: Any) -> bool:
    """Whether ``value`` is a ``runs:/`` or ``models:/`` URI (unambiguous prefixes)."""
    return isinstance(value, str) and value.startswith((RUNS_PREFIX, MODELS_PREFIX))


def is_run_id(value: Any) -> bool:
    """Whether ``value`` looks like an MLflow run id (32 lowercase hex characters)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


def names_a_model_uri(value: Any, bare_run_id: bool = True) -> bool:
    """Whether ``value`` is a model URI, or (``bare_run_id``) a run id that is no local folder."""
    if is_model_uri(value):
        return True
    if bare_run_id and is_run_id(value):
        from pathlib import Path

        return not Path(value).exists()
    return False


def parse_model_uri(value: str, option: str = "component.model") -> ModelUri:
    """Read ``runs:/<run_id>[/<path>]``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
    ``models:/m-<id>`` or a bare run id (its ``best_checkpoint``). Anything else that starts with
    ``runs:/`` or ``models:/`` raises `UserError` naming ``option`` and the accepted forms."""
    if is_run_id(value):
        return ModelUri(value, "run", run_id=value, path=BEST_CHECKPOINT)
    if value.startswith(RUNS_PREFIX):
        run_id, _, path = value[len(RUNS_PREFIX):].lstrip("/").partition("/")
        if is_run_id(run_id):
            return ModelUri(value, "run", run_id=run_id, path=path.strip("/"))
    elif value.startswith(MODELS_PREFIX):
        rest = value[len(MODELS_PREFIX):].strip("/")
        if "@" in rest:
            name, _, alias = rest.partition("@")
            if name and alias and "/" not in name and "/" not in alias:
                return ModelUri(value, "registered", name=name, alias=alias)
        elif "/" in rest:
            name, _, version = rest.partition("/")
            if name and _VERSION.fullmatch(version):
                return ModelUri(value, "registered", name=name, version=version)
        elif _LOGGED_MODEL_ID.fullmatch(rest):
            return ModelUri(value, "logged", model_id=rest)
    raise UserError(f"{option}={value} is not a model URI this project reads; write runs:/<run_id>/<path>, "
                    "models:/<name>/<version>, models:/<name>@<alias>, models:/m-<id> or a run id")
