"""Log a NER checkpoint as an MLflow model, and optionally register it.

`log_entity_matcher_model` works on its own (any active run, or none); the app reaches it
through the NER component's ``log_mlflow_model`` (see `medkit_exp.text.ner.experiment`).

MLflow 3 keeps logged models outside the run's artifacts: under
``<experiment artifact location>/models/m-<id>/artifacts/``. The run lists the model among
its outputs (``models:/m-<id>``); the model carries the run's params and the metrics of
the checkpoint's epoch.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow

from medkit_exp.errors import MedkitExpError
from medkit_exp.text.ner import mlflow_model as pyfunc_model

log = logging.getLogger(__name__)

LOGGED_MODEL_NAME = "ner_model"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")


class ModelLoggingError(MedkitExpError, RuntimeError):
    """The best checkpoint could not be logged or registered as an MLflow model."""


@dataclass
class LoggedNerModel:
    """Where a logged model is: ``model_uri`` (``models:/m-<id>``), and its registered version if any."""

    model_uri: str
    model_id: str
    registered_name: str | None = None
    registered_version: str | None = None
    seconds: float = 0.0

    @property
    def registered_uri(self) -> str | None:
        """``models:/<name>/<version>``, or None when the model was not registered."""
        if self.registered_name is None:
            return None
        return f"models:/{self.registered_name}/{self.registered_version}"


def log_entity_matcher_model(
    model_dir: str | os.PathLike[str],
    *,
    register_as: str | None = None,
    batch_size: int = 32,
    split_sentences: bool = False,
    step: int = 0,
    name: str = LOGGED_MODEL_NAME,
    precision: str = "fp32",
) -> LoggedNerModel:
    """Log the HF model folder ``model_dir`` (a checkpoint's ``model/``) as an `EntityMatcherModel`.

    The model is linked to the active run, if any, and gets that run's metrics of step
    ``step`` (pass the checkpoint's epoch). ``precision`` is the model's default inference
    precision (``fp32``, ``bf16``, ``int8``, ``auto``), which ``model_config`` can override at
    load. ``register_as`` also registers it in the Model Registry under that name (a new version
    each time). MLflow runs the input example
    through the logged model once (one model load) and warns if it cannot serve it.
    Requirements are pinned from this environment instead of being inferred, which would
    take 10-15 s in a subprocess.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a HF model folder (no config.json)")
    started = time.perf_counter()
    with _no_progress_bars():
        info = _log(model_dir, register_as, batch_size, split_sentences, step, name, precision)
    version = info.registered_model_version
    return LoggedNerModel(
        model_uri=info.model_uri,
        model_id=info.model_id,
        registered_name=register_as,
        registered_version=str(version) if version is not None else None,
        seconds=round(time.perf_counter() - started, 2),
    )


def _log(model_dir: Path, register_as: str | None, batch_size: int, split_sentences: bool, step: int, name: str,
         precision: str):
    import pandas as pd

    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(ENTRY_POINT),
        artifacts={pyfunc_model.ARTIFACT_KEY: str(model_dir)},
        model_config={"batch_size": batch_size, "split_sentences": split_sentences, "precision": precision},
        signature=pyfunc_model.signature(),
        input_example=pd.DataFrame({pyfunc_model.TEXT_COLUMN: pyfunc_model.EXAMPLE_TEXTS}),
        pip_requirements=pyfunc_model.pinned_requirements(),
        registered_model_name=register_as,
        step=step,
    )


@contextmanager
def _no_progress_bars():
    """Hide the "Downloading artifacts" bars of the input-example check (unless the user set the variable)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)
