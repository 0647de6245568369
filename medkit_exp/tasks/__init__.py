"""Tasks: what the app needs to know about a kind of component, behind one small interface.

The app trains every component the same way (the `Trainer` only sees the
`TrainableComponent` protocol); a task says how to build the trainable component and its
metrics from the config, which items to train on, and how to score a saved checkpoint on
test documents. `component.name` in the config selects the task.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from medkit_exp.errors import UserError


class Task(Protocol):
    def build(self, cfg: Any, labels: list[str], device: Any) -> tuple[Any, Any]:
        """The trainable component and its `MetricsComputer`."""

    def training_items(self, cfg: Any, docs: list[Any]) -> list[Any]:
        """What the component's ``preprocess`` receives, made from a split's documents."""

    def labels(self, cfg: Any, dataset: Any) -> list[str]:
        """The output labels of the component."""

    def test(self, cfg: Any, model_dir: Any, docs: list[Any], device: Any) -> dict[str, float]:
        """Scores of the saved model in ``model_dir`` on test documents."""


_TASKS = {
    "hf_ner": "medkit_exp.tasks.ner:NerTask",
    "hf_segment_classifier": "medkit_exp.tasks.segment_classification:SegmentClassificationTask",
}


def register_task(name: str, target: str) -> None:
    """Make ``component.name=<name>`` use the task class at ``"module:Class"``."""
    _TASKS[name] = target


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise UserError(f"component.name={name!r} has no task; known: {', '.join(sorted(_TASKS))}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
