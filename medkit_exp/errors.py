"""User-facing errors: one line that names the problem and the fix, no traceback."""

from __future__ import annotations

import re
from collections.abc import Callable


class MedkitExpError(Exception):
    """An error of this project whose message is meant for its user: it names the problem and
    the fix in one line. The command line reports it as that line, exit code 2, no traceback.
    Every such exception of the package subclasses it (`CorpusError`, `CheckpointError`...)."""


class UserError(MedkitExpError):
    """Bad input from the user (config, data, paths) that no more specific error names."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc``'s message is already a one-line explanation for the user: the project's
    own errors (`MedkitExpError`), and Hydra's and OmegaConf's configuration errors."""
    return isinstance(exc, (MedkitExpError, *_config_error_types()))


def _config_error_types() -> tuple[type[Exception], ...]:
    """Hydra's and OmegaConf's errors about a configuration or an override, imported here (not at
    module level) so that this module stays free to import anywhere."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import (
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
        ValidationError,
    )

    return (ConfigCompositionException, OverrideParseException, MissingConfigException, ConfigKeyError,
            ValidationError, MissingMandatoryValue, InterpolationResolutionError)


_NOISE = ("full_key:", "reference_type", "object_type", "Set the environment variable HYDRA_FULL_ERROR")


_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'.*Key '([^']+)' is not in struct")


def _clearer(message: str) -> str:
    """Hydra advises ``+key=value`` for a key the config lacks; here such a key does nothing, so say that."""
    found = _NOT_IN_STRUCT.search(message)
    if not found:
        return message
    key = found.group(1)
    group = key.split(".", 1)[0]
    return (f"{key} is not a setting of this configuration: the chosen {group} option has no {found.group(2)!r} "
            f"(python -m medkit_exp --cfg job shows the settings there are); check the spelling or the {group} option")


def one_line(exc: BaseException) -> str:
    """Collapse an exception message (and its causes, for Hydra's wrapped errors) to one line."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        for line in str(current).splitlines():
            line = line.strip()
            if line.startswith("Config search path"):
                break  # Hydra's list of config sources: noise for a user who mistyped an option
            if line and not line.startswith(_NOISE) and not any(line.rstrip(".") in part for part in parts):
                parts.append(line.rstrip("."))  # a cause that the message already quotes is not repeated
        current = current.__cause__
    return _clearer("; ".join(parts)) or type(exc).__name__


def run_command(prog: str, body: Callable[[], int], also_user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's ``body()`` and return its exit code: a user error (or one of
    ``also_user_errors``) is one line ``<prog>: error: ...`` on stderr and exit 2; Ctrl-C exits 130;
    anything else propagates with its traceback (a bug, not bad input)."""
    import sys

    try:
        return body()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the top-level reporter: a bug goes on with its traceback
        if is_user_error(exc) or isinstance(exc, also_user_errors):
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        raise
