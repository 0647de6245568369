"""Models named by MLflow URIs in the component node, resolved to local folders before the
component is built (see docs/model-uris.md).

Which arguments are resolved: every top-level argument of the ``component`` node whose value
starts with ``runs:/`` or ``models:/`` (unambiguous prefixes), and the argument named ``model``
when it is a bare run id (32 hex characters) that is no local folder. A component, the
project's or a user's, so opts in by taking such an argument as a string: it receives the path
of a local HF model folder. The store is the run's own (``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else ``<tracking.root>/mlflow.db``), so a run and the run it starts
from in the same store just work. The config and the logged params keep the URI as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.app.nodes import HYDRA_KEYS
from medkit_exp.model_uris import is_model_uri, names_a_model_uri, tracking_uri_or_default

if TYPE_CHECKING:
    from medkit_exp.model_uris import ResolvedModel

MODEL_ARGUMENT = "model"  # the one argument where a bare run id is read as a model


def store_of(cfg: DictConfig) -> str:
    """The tracking URI of the run ``cfg`` describes (tracking on or off)."""
    tracking = cfg.get("tracking")
    uri = tracking.get("uri") if isinstance(tracking, DictConfig) else None
    root = tracking.get("root") if isinstance(tracking, DictConfig) else None
    return tracking_uri_or_default(uri or None, root or "mlruns")


def model_uri_arguments(node: Any) -> dict[str, str]:
    """``{argument: URI}`` of the node's arguments that name a model by URI (see the module docstring)."""
    if not isinstance(node, (DictConfig, Mapping)):
        return {}
    found = {}
    for key in node:
        name = str(key)
        if name in HYDRA_KEYS:
            continue
        value = node[key]
        if is_model_uri(value) or (name == MODEL_ARGUMENT and names_a_model_uri(value)):
            found[name] = str(value)
    return found


def resolve_model_arguments(node: Any, tracking_uri: str) -> tuple[Any, dict[str, ResolvedModel]]:
    """``(the node to build, {argument: ResolvedModel})``: a copy of ``node`` (its interpolations
    resolved) whose URI arguments are local folders, or ``node`` itself when it names none."""
    arguments = model_uri_arguments(node)
    if not arguments:
        return node, {}
    from medkit_exp.model_uris import resolve_model_uri

    resolved = {name: resolve_model_uri(value, tracking_uri, option=f"component.{name}")
                for name, value in arguments.items()}
    plain = OmegaConf.to_container(node, resolve=True)
    assert isinstance(plain, dict)
    plain.update({name: str(model.local_path) for name, model in resolved.items()})
    return OmegaConf.create(plain), resolved


def base_model(resolved: Mapping[str, ResolvedModel]) -> ResolvedModel | None:
    """The model a run starts from: that of ``model``, else the first resolved argument's."""
    return resolved.get(MODEL_ARGUMENT) or next(iter(resolved.values()), None)
