"""What went into a run: its params (the config, flattened, and ``params.json``), its datasets
(MLflow dataset inputs: the UI's Dataset column and run page) and the models it started from
(MLflow LoggedModel inputs: the lineage of a fine-tuned model)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Param

from medkit_exp.tracking.failures import warn_on_failure
from medkit_exp.tracking.metrics import to_json
from medkit_exp.tracking.params import flatten_params, to_plain
from medkit_exp.tracking.secrets import redact, redact_text
from medkit_exp.tracking.sender import BackgroundSender

log = logging.getLogger(__name__)


def log_params(sender: BackgroundSender, params: Mapping[str, Any] | None, config: Any = None) -> None:
    """Log ``params`` (and the `TrainerConfig` ``config`` under ``trainer.`` when params lack it) as
    flat params and as ``params.json``. A resumed run keeps the values it holds (params are
    immutable in MLflow): changed ones are named in a warning. Failures raise."""
    nested = to_plain(params) if params is not None else {}
    if dataclasses.is_dataclass(config) and "trainer" not in nested:
        nested["trainer"] = to_plain(config)
    if not nested:
        return
    nested = redact(nested)
    flat = flatten_params(nested)
    client, run_id = sender.client, sender.run_id
    existing = client.get_run(run_id).data.params
    changed = sorted(k for k, v in flat.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("Resumed run %s keeps its earlier values of params %s", run_id, ", ".join(changed))
    new = [Param(k, v) for k, v in flat.items() if k not in existing]
    if new:
        client.log_batch(run_id, params=new)
    text = to_json(nested)
    sender.call(client.log_text, run_id, text, "params.json", record={"text": "params.json", "content": text})


def log_datasets(sender: BackgroundSender, datasets: list[dict[str, Any]]) -> None:
    """Record each split as a dataset input of the run; a failure only warns.

    Each entry: ``name``, ``digest``, ``context`` (training, validation, test) and ``source``, a
    dict of what identifies it (folder, counts), stored (redacted) as the dataset's source.
    """
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for entry in datasets:
        source = CodeDatasetSource({k: redact_text(str(v)) for k, v in entry["source"].items()})
        dataset = Dataset(name=entry["name"], digest=entry["digest"], source_type="code", source=source.to_json())
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", entry["context"])]))
    with warn_on_failure("Could not record the datasets of MLflow run %s", sender.run_id):
        sender.client.log_inputs(sender.run_id, datasets=inputs)


def log_model_inputs(sender: BackgroundSender, model_ids: list[str]) -> None:
    """Record each LoggedModel of ``model_ids`` (``m-<id>``) as an input of the run: MLflow 3's model
    lineage, shown on the run's page and the model's. A failure only warns."""
    from mlflow.entities import LoggedModelInput

    with warn_on_failure("Could not record the base model of MLflow run %s", sender.run_id):
        sender.client.log_inputs(sender.run_id, models=[LoggedModelInput(model_id) for model_id in model_ids])
