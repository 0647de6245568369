"""An Optuna search space written in Hydra's sweep syntax.

``hydra.sweeper.params`` (and sweep values on the command line) say what to search:

- ``choice(8, 16, 32)`` or ``8,16,32``: a categorical parameter;
- ``interval(1e-5, 3e-4)``: a float, ``tag(log, interval(...))`` on a log scale,
  ``tag(int, interval(1, 6))`` an integer;
- ``range(1, 6)`` (``range(start, stop, step)``, stop excluded): an integer.

Every other override is fixed: it goes to each job unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep


class SearchSpaceError(ValueError):
    """A parameter of the search cannot become an Optuna distribution."""


@dataclass(frozen=True)
class Parameter:
    """One searched key and how Optuna draws it."""

    key: str  # as written in the override, ``+`` included
    kind: str  # categorical, float or int
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: int | None = None
    log: bool = False

    @property
    def name(self) -> str:
        """The config key, as Optuna records it (without Hydra's ``+``/``++``)."""
        return self.key.lstrip("+~")

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"choice({', '.join(map(str, self.choices))})"
        scale = "log " if self.log else ""
        return f"{scale}{self.kind} in [{self.low}, {self.high}]" + (f" step {self.step}" if self.step else "")


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters and the overrides every job gets as they are."""

    parameters: tuple[Parameter, ...]
    fixed: tuple[str, ...]

    @classmethod
    def parse(cls, params: dict[str, str] | None, arguments: Iterable[str]) -> SearchSpace:
        """Build from ``hydra.sweeper.params`` and the command line; the command line wins for a key
        in both."""
        parser = OverridesParser.create()
        searched: dict[str, Parameter] = {}
        for key, value in (params or {}).items():
            override = parser.parse_override(f"{key}={value}")
            searched[override.key_or_group] = _parameter(override)
        fixed: list[str] = []
        for argument in arguments:
            override = parser.parse_override(argument)
            if override.is_sweep_override():
                searched[override.key_or_group] = _parameter(override)
            else:
                searched.pop(override.key_or_group, None)
                fixed.append(argument)
        if not searched:
            raise SearchSpaceError("the Optuna search has no parameter to search; give hydra.sweeper.params or a "
                                   "sweep on the command line (trainer.lr='interval(1e-5,1e-4)')")
        return cls(tuple(searched.values()), tuple(fixed))

    def suggest(self, trial: Any) -> list[str]:
        """Draw the trial's values; return its overrides (fixed ones first)."""
        return [*self.fixed, *(f"{p.key}={_override_value(p.suggest(trial))}" for p in self.parameters)]

    def digest(self, *extra: Any) -> str:
        """A short fingerprint of the search (and of ``extra`` settings), stable across runs."""
        space = sorted(f"{p.key} {p.describe()}" for p in self.parameters)
        text = json.dumps({"fixed": sorted(self.fixed), "space": space, "extra": [str(e) for e in extra]},
                          sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


def _parameter(override: Override) -> Parameter:
    key = override.get_key_element()
    value = override.value()
    tags: set[str] = getattr(value, "tags", set()) or set()
    if isinstance(value, ChoiceSweep):
        choices = tuple(value.list)
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise SearchSpaceError(f"{key}: choices must be numbers, strings, booleans or null, got {choices}")
        return Parameter(key, "categorical", choices=choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not (isinstance(start, int) and isinstance(stop, int) and isinstance(step, int)):
            raise SearchSpaceError(f"{key}: range() takes integers; use interval() for floats")
        return Parameter(key, "int", low=start, high=stop - step, step=step)
    if isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        if start is None or end is None or start >= end:
            raise SearchSpaceError(f"{key}: interval({start}, {end}) is empty; give interval(low, high) "
                                   "with low < high")
        if "int" in tags:
            return Parameter(key, "int", low=int(start), high=int(end), log="log" in tags)
        return Parameter(key, "float", low=float(start), high=float(end), log="log" in tags)
    raise SearchSpaceError(f"{key}: {override.input_line!r} is not a search; use choice(), range() or interval()")


def _override_value(value: Any) -> str:
    """A value written so that Hydra's override parser reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    plain = value.replace("_", "").replace("-", "").replace(".", "").replace("/", "") if isinstance(value, str) else ""
    if isinstance(value, str) and not plain.isalnum():
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
