"""Keep credentials out of what a run logs: params, tags, artifacts, files written beside it, lines printed.

Three kinds of secret become ``***``:

* a password in a URI (``postgresql://user:<password>@db/mlflow``, ``http://alice:<password>@host``);
* the value of a setting whose name says it holds a credential (``password``, ``token``,
  ``secret``, ``api_key``...: see `is_secret_name`);
* the value of an environment variable whose name says so (``HF_TOKEN``,
  ``MLFLOW_TRACKING_PASSWORD``, ``MY_API_KEY``...), wherever it shows up in a text: a config
  value interpolated with ``${oc.env:HF_TOKEN}``, an override the shell expanded, an error message.

The real values are still used to connect; only what is written or shown is masked.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
# Words of a name that mark a credential; "api" + "key" and "private" + "key" as a pair. Not "pwd":
# $PWD is the working directory. A name ending in one of _LOCATION_WORDS names where a secret
# is kept (HF_TOKEN_PATH), not the secret.
_SECRET_WORDS = {"password", "passwd", "pass", "passphrase", "token", "secret", "credential",
                 "credentials", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("private", "key")}
_LOCATION_WORDS = {"path", "file", "dir", "directory", "location"}
# Environment values too short or too common to be a credential (HF_HUB_DISABLE_IMPLICIT_TOKEN=1):
# masking them would mask every "1" or "true" of a run.
_MIN_SECRET_CHARS = 4
_NOT_A_SECRET = re.compile(r"[-+.\d]*|true|false|yes|no|on|off|none|null", re.I)
# scheme://user:password@host: the password is what lies between the first ":" after the scheme
# and the "@" that ends the user part.
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^/\s@]+)(?P<at>@)")


def _words(name: str) -> list[str]:
    """``hfAuthToken`` and ``HF_AUTH_TOKEN`` -> ``["hf", "auth", "token"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


@functools.lru_cache(maxsize=4096)  # asked for every environment variable at each line printed
def is_secret_name(name: str) -> bool:
    """Whether a setting (its last dotted part) or an environment variable named ``name`` holds a
    credential: ``db_password``, ``hf_auth_token``, ``api_key``, ``apiKey``, ``MLFLOW_TRACKING_TOKEN``
    do; ``max_tokens``, ``tag_subtokens``, ``TOKENIZERS_PARALLELISM``, ``HF_TOKEN_PATH`` do not."""
    words = _words(name.rsplit(".", 1)[-1])
    if not words or words[-1] in _LOCATION_WORDS:
        return False
    pairs = zip(words, words[1:], strict=False)  # each word with the next one
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in _SECRET_PAIRS for pair in pairs)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret-named environment variables (`is_secret_name`), longest first, with
    their URL-encoded forms (as they appear inside a URI)."""
    environ = os.environ if environ is None else environ
    values: set[str] = set()
    for name, value in environ.items():
        value = value.strip()
        if len(value) >= _MIN_SECRET_CHARS and not _NOT_A_SECRET.fullmatch(value) and is_secret_name(name):
            values.update({value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)})
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every password inside a URI and every value of `secret_values` replaced by ``***``."""
    for secret in secret_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URI_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)


def redact(value: Any, name: str = "", secrets: Iterable[str] | None = None) -> Any:
    """A copy of ``value`` (nested dicts and lists too) with credentials masked: values under a
    secret-sounding key become ``***``, secrets inside strings too (see `redact_text`)."""
    secrets = secret_values() if secrets is None else list(secrets)
    if name and is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact(v, str(k), secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, "", secrets) for v in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def redact_override(override: str) -> str:
    """A Hydra override (``key=value``) with its value masked when the key or the value holds a secret."""
    key, sep, value = override.partition("=")
    if sep and is_secret_name(key.lstrip("+~")):
        return f"{key}={MASK}"
    return redact_text(override)
