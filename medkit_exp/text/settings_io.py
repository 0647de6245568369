"""The JSON settings file saved beside a model folder (tags, windows, context...), written and read back."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def save_settings(settings: Any, path: Path) -> None:
    """Write a settings dataclass as the JSON file ``path``."""
    path.write_text(json.dumps(asdict(settings), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_settings(cls: type, path: Path) -> Any:
    """The ``cls`` settings read from ``path`` (keys it does not know are ignored), or None if absent."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
