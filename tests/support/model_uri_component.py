"""A user's own component started from a model URI: it checks that the app handed it a local
HF model folder (not the URI), then builds the project's NER component on that folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ner_from_local_folder(model: str, **settings: Any) -> Any:
    """``hf_ner`` over ``model``, which must be an existing local folder with a ``config.json``."""
    from medkit_exp.text.ner.experiment import hf_ner

    if model.startswith(("runs:/", "models:/")) or not (Path(model) / "config.json").is_file():
        raise AssertionError(f"the component received {model!r}, not a local HF model folder")
    print(f"user component got the local folder {model}", flush=True)
    return hf_ner(model=model, **settings)
