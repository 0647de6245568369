"""User-facing errors: one line that names the problem and the fix, no traceback."""

from __future__ import annotations

import re


class UserError(Exception):
    """Bad input from the user (config, data, paths). Reported as one line, exit code 2."""


# Exceptions whose message is already a one-line explanation for the user. Kept as names so
# that this module imports nothing heavy.
USER_ERROR_TYPES = (
    "UserError",
    "CorpusError",
    "OverlapError",
    "AnnotationError",
    "CheckpointError",
    "TrainingSetupError",
    "NonFiniteLossError",
    "TrackingError",
    "ModelLoggingError",
    "TrackingUnavailableError",
    "ConfigCompositionException",
    "OverrideParseException",
    "MissingConfigException",
    "ConfigKeyError",
    "ValidationError",
    "MissingMandatoryValue",
    "InterpolationResolutionError",
)


def is_user_error(exc: BaseException) -> bool:
    return any(cls.__name__ in USER_ERROR_TYPES for cls in type(exc).__mro__) or isinstance(exc, UserError)


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


def run_command(prog: str, body, also_user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's ``body()`` and return its exit code: a user error (or one of
    ``also_user_errors``) is one line ``<prog>: error: ...`` on stderr and exit 2; Ctrl-C exits 130;
    anything else propagates with its traceback (a bug, not bad input)."""
    import sys

    try:
        return body()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - top-level reporter
        if is_user_error(exc) or isinstance(exc, also_user_errors):
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        raise
