"""Log an ``hf_mlm`` checkpoint as an MLflow model (a fill-mask pyfunc), and optionally register it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow

from medkit_exp.text.mlm import fill_mask_model
from medkit_exp.text.ner.mlflow_model import pinned_requirements
from medkit_exp.text.ner.model_logging import LoggedNerModel

LOGGED_MODEL_NAME = "masked_lm"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")


def log_masked_lm_model(model_dir: str | os.PathLike[str], *, register_as: str | None = None, step: int = 0,
                        name: str = LOGGED_MODEL_NAME) -> LoggedNerModel:
    """Log the HF folder ``model_dir`` as a `FillMaskModel` of the active run (registered as
    ``register_as`` when given), with the run's metrics of step ``step``."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a HF model folder (no config.json)")
    started = time.perf_counter()
    info = mlflow.pyfunc.log_model(
        name=name, python_model=str(ENTRY_POINT), artifacts={fill_mask_model.ARTIFACT_KEY: str(model_dir)},
        model_config={"top_k": 5}, pip_requirements=pinned_requirements(), registered_model_name=register_as,
        step=step)
    version = info.registered_model_version
    return LoggedNerModel(model_uri=info.model_uri, model_id=info.model_id, registered_name=register_as,
                          registered_version=str(version) if version is not None else None,
                          seconds=round(time.perf_counter() - started, 2))
