"""Turn a nested run configuration into MLflow params (``{"trainer.lr": "3e-05", ...}``).

No MLflow import here: the limits below mirror MLflow 3's validation rules
(``mlflow/utils/validation.py``) so flattening stays cheap and testable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

MAX_PARAM_VALUE_LENGTH = 6000  # MLflow >= 2.x; older servers accepted 500
MAX_KEY_LENGTH = 250
TRUNCATION_MARKER = "...[truncated]"

_VALID_KEY = re.compile(r"^[/\w.\- :]*$")
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- :]")


def flatten_params(
    cfg: Mapping[str, Any] | Any,
    prefix: str = "",
    max_value_length: int = MAX_PARAM_VALUE_LENGTH,
) -> dict[str, str]:
    """Flatten a nested config into ``{dotted.key: value-as-text}`` ready for ``mlflow.log_params``.

    ``cfg`` is a mapping (dict, OmegaConf ``DictConfig``, resolved) or a dataclass instance.
    Every leaf becomes one entry: scalars as ``str(value)`` (``3e-05``, ``True``, ``None``),
    lists/tuples/sets as JSON, an empty mapping as ``{}``. Values longer than
    ``max_value_length`` are cut and end with ``TRUNCATION_MARKER``; callers that need the full
    text should log the config as an artifact too. Keys are left as written unless MLflow
    would reject them (bad characters, path-like ``a//b``, more than 250 characters); then they
    are rewritten minimally and kept unique.
    """
    out: dict[str, str] = {}
    for key, value in _walk(_as_mapping(cfg), prefix):
        key = _unique(_safe_key(key), out)
        out[key] = truncate_value(_format_leaf(value), max_value_length)
    return out


def to_plain(obj: Any) -> Any:
    """Recursively convert dataclasses, OmegaConf containers and tuples to dicts and lists."""
    obj = _resolve_omegaconf(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def truncate_value(text: str, max_length: int = MAX_PARAM_VALUE_LENGTH) -> str:
    """Cut ``text`` to ``max_length`` characters, ending with ``TRUNCATION_MARKER`` when cut."""
    if len(text) <= max_length:
        return text
    return text[: max_length - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def mlflow_key(name: str) -> str:
    """``name`` unchanged when MLflow accepts it as a param/metric key, else a close valid key."""
    return _safe_key(name)


def _as_mapping(cfg: Any) -> Mapping[str, Any]:
    plain = to_plain(cfg)
    if not isinstance(plain, Mapping):
        raise TypeError(f"flatten_params expects a mapping or a dataclass, got {type(cfg).__name__}")
    return plain


def _resolve_omegaconf(obj: Any) -> Any:
    # Checked by module name so that omegaconf is never imported just to flatten a dict.
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)
    return obj


def _walk(mapping: Mapping[str, Any], prefix: str):
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from _walk(value, dotted)
        else:
            yield dotted, value


def _format_leaf(value: Any) -> str:
    if isinstance(value, Mapping):  # only empty mappings reach here
        return "{}"
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        return json.dumps(to_plain(value), default=str, ensure_ascii=False)
    return str(value)


def _is_valid_key(key: str) -> bool:
    if not key or len(key) > MAX_KEY_LENGTH or not _VALID_KEY.match(key):
        return False
    # MLflow refuses keys that would name another file once used as a path.
    norm = posixpath.normpath(key)
    return norm == key and norm != "." and not norm.startswith("..") and not norm.startswith("/")


def _safe_key(key: str) -> str:
    if _is_valid_key(key):
        return key
    fixed = _INVALID_KEY_CHARS.sub("_", key)
    if not _is_valid_key(fixed):
        fixed = fixed.replace("/", "_").strip(".") or "_"
    if len(fixed) > MAX_KEY_LENGTH:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        fixed = fixed[: MAX_KEY_LENGTH - 9] + "_" + digest
    return fixed


def _unique(key: str, taken: Mapping[str, Any]) -> str:
    candidate, n = key, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate = key[: MAX_KEY_LENGTH - len(suffix)] + suffix
        n += 1
    return candidate
