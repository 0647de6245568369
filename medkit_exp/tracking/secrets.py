"""Keep credentials out of what a run logs: params, tags, artifacts, files written beside it.

A password in a URI (``postgresql://user:<password>@db/mlflow``, ``http://alice:<password>@host``)
becomes ``***``, and so does the value of any setting whose name says it holds a credential
(``password``, ``token``, ``secret``, ``api_key``...). The real values are still used to connect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_NAMES = re.compile(r"(pass(word|wd)?|token|secret|api[_-]?key|credential|private[_-]?key)", re.I)
# scheme://user:password@host: the password is what lies between the first ":" after the scheme
# and the "@" that ends the user part.
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^/\s@]+)(?P<at>@)")


def redact_text(text: str) -> str:
    """``text`` with every password inside a URI replaced by ``***``."""
    return _URI_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAMES.search(name.rsplit(".", 1)[-1]))


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` (nested dicts and lists too) with credentials masked: values under a
    secret-sounding key become ``***``, passwords in URIs inside strings too."""
    if name and is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_override(override: str) -> str:
    """A Hydra override (``key=value``) with its value masked when the key or the value holds a secret."""
    key, sep, value = override.partition("=")
    if sep and is_secret_name(key.lstrip("+~")):
        return f"{key}={MASK}"
    return redact_text(override)
