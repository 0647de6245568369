"""Build what a config group names: every ``component``, ``data``, ``metrics`` and ``scheduler``
node is ``_target_`` (a class or factory) plus its keyword arguments.

`check_node` imports the target and binds the node's keys to its signature, so a typo
(``component.no_such_arg=1``), a wrong type, a missing argument or a target that cannot be
imported fails in one line that names the key, before any data is read. `build_node` then
calls it through Hydra's ``instantiate`` (nested ``_target_`` nodes and ``_partial_`` work as in
any Hydra app), adding the *run context* arguments that the target's signature asks for and
the node leaves unset (see `CONTEXT`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.errors import UserError

# Keys of a node that Hydra reads itself, and keys the app reads (never passed to the target).
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
APP_KEYS = {"scheduler": ("interval",)}

# What the app can hand a target on top of its node, by parameter name.
CONTEXT = {
    "component": ("device", "train_data"),  # the resolved torch device; the train split's items
    "metrics": ("component",),  # the built trainable component (its labels, its tagging scheme...)
    "data": (),
    "scheduler": (),
}


def target_name(node: Any) -> str | None:
    """The node's ``_target_`` as written, or None for an empty node (e.g. ``metrics=none``)."""
    if node is None:
        return None
    target = node.get("_target_") if isinstance(node, (DictConfig, Mapping)) else None
    return str(target) if target else None


def _locate(key: str, name: str) -> Callable[..., Any]:
    from hydra._internal.utils import _locate as locate  # get_object would also log the failure

    try:
        target = locate(name)
    except (ImportError, ValueError) as exc:  # Hydra wraps any failure of the module's import in ImportError
        cause = exc.__cause__ or exc
        reason = f"{type(cause).__name__}: {cause}".splitlines()[0]
        raise UserError(
            f"{key}._target_={name} cannot be imported ({reason}); check the module path, and that its "
            "package is importable from the launch folder or PYTHONPATH"
        ) from None
    if not callable(target):
        raise UserError(f"{key}._target_={name} is not a class or a function; name one that builds the {key}")
    return target


def _signature(target: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have none: accept whatever the node says
        return None


def _hints(target: Any) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError, AttributeError):  # annotations naming what cannot be resolved: no type check
        return {}


def _arguments(key: str, node: Any) -> dict[str, Any]:
    skip = set(HYDRA_KEYS) | set(APP_KEYS.get(key.split(".")[0], ()))
    return {str(k): node[k] for k in node if str(k) not in skip}


def check_node(key: str, node: Any) -> Callable[..., Any] | None:
    """Import ``node._target_`` and check the node's keys against its signature.

    Returns the target, or None for a node without one (the group's "none" option). Raises
    `UserError` with one line naming ``<key>.<argument>`` and the fix.
    """
    name = target_name(node)
    if name is None:
        extra = list(_arguments(key, node)) if isinstance(node, (DictConfig, Mapping)) else []
        if extra:
            raise UserError(f"{key} has settings ({', '.join(extra)}) but no _target_; "
                            f"add {key}._target_=<module.Class>")
        return None
    target = _locate(key, name)
    signature = _signature(target)
    arguments = _arguments(key, node)
    if signature is not None:
        _check_signature(key, name, target, signature, arguments, partial=bool(node.get("_partial_", False)))
    for arg, value in arguments.items():  # nested nodes (a reader, a scheduler's parts) are checked too
        if isinstance(value, DictConfig) and target_name(value):
            check_node(f"{key}.{arg}", value)
    return target


def _check_signature(key: str, name: str, target: Any, signature: inspect.Signature,
                     arguments: dict[str, Any], partial: bool) -> None:
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not takes_any:
        for arg in arguments:
            if arg not in named:
                known = ", ".join(n for n in named if n not in CONTEXT.get(key, ())) or "none"
                raise UserError(f"{key}.{arg}: {name} has no argument {arg!r}; remove it "
                                f"(its arguments: {known})")
    context = CONTEXT.get(key, ())  # a nested node (data.reader) gets no run context
    if not partial:
        for arg, param in named.items():
            if param.default is param.empty and arg not in arguments and arg not in context:
                raise UserError(f"{key}.{arg} is required by {name}; set it in the {key} config or add {key}.{arg}=...")
    hints = _hints(target)
    for arg, value in arguments.items():
        expected = hints.get(arg)
        if expected is not None and not _matches(value, expected):
            raise UserError(f"{key}.{arg}={_show(value)} is not of type {_type_text(expected)}, "
                            f"which {name} expects; give a value of that type")


_SIMPLE = (bool, int, float, str)


def _matches(value: Any, expected: Any) -> bool:
    """True unless ``value`` clearly is not of the annotated type (only plain types are checked)."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    origin = typing.get_origin(expected)
    if origin is typing.Union or type(expected).__name__ == "UnionType":
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected in _SIMPLE:
        if expected is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, expected)
    if origin in (list, tuple, typing.Sequence) or expected in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin in (dict, Mapping) or expected is dict:
        return isinstance(value, dict)
    return True  # anything richer (a path type, a protocol, Any): left to the target itself


def _type_text(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def _show(value: Any) -> str:
    return repr(OmegaConf.to_container(value, resolve=True)) if OmegaConf.is_config(value) else repr(value)


def build_node(key: str, node: Any, label: str | None = None, **context: Any) -> Any:
    """Instantiate ``node`` (checked with `check_node` first), passing the ``context`` values
    that its target takes and the node does not set. None for a node without ``_target_``.

    A ``ValueError`` raised by the target (a setting out of range, a model that does not fit)
    becomes a `UserError` naming ``<key>=<label>`` (the group option, else the target); other
    errors keep their traceback.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = check_node(key, node)
    if target is None:
        return None
    signature = _signature(target)
    params = signature.parameters if signature is not None else {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in context.items() if (k in params or takes_any) and k not in node}
    # Resolved first: interpolations may point anywhere in the whole config.
    plain = OmegaConf.to_container(node, resolve=True)
    assert isinstance(plain, dict)  # check_node accepted the node: a mapping
    keep = set(_arguments(key, node)) | {k for k in HYDRA_KEYS if k in node}
    config = OmegaConf.create({k: v for k, v in plain.items() if k in keep})
    try:
        return instantiate(config, _convert_="all", **extra)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, UserError):  # already names the setting and the fix
            raise cause from None
        if isinstance(cause, ValueError):
            raise UserError(f"{key}={label or target_name(node)}: {cause}") from cause
        if cause is not None:
            raise cause from None
        raise
