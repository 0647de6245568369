"""The JSON settings file saved beside a model folder (tags, windows, context...), written and read back."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SettingsT = TypeVar("SettingsT", bound="DataclassInstance")


def save_settings(settings: Any, path: Path) -> None:
    """Write a settings dataclass as the JSON file ``path``."""
    path.write_text(json.dumps(asdict(settings), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_settings(cls: type[SettingsT], path: Path) -> SettingsT | None:
    """The ``cls`` settings read from ``path`` (keys it does not know are ignored), or None if absent."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
