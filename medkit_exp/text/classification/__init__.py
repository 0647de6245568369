"""Segment classification: give segments or entities a class, and train that from examples.

`HFSegmentClassifier` (inference) and `HFSegmentClassifierTrainable` (fine-tuning) import
torch and transformers, so they are loaded lazily on first access; items, context marking
and metrics are pure Python.
"""

from __future__ import annotations

from typing import Any

from medkit_exp.text.classification.context import ContextSettings, marked_text
from medkit_exp.text.classification.items import SegmentItem, items_from_attributes, items_from_entities
from medkit_exp.text.classification.metrics import (
    ClassificationEvaluator,
    ClassificationMetricsComputer,
    classification_scores,
    majority_scores,
)

__all__ = [
    "ClassificationEvaluator",
    "ClassificationMetricsComputer",
    "ContextSettings",
    "HFSegmentClassifier",
    "HFSegmentClassifierTrainable",
    "SegmentItem",
    "SegmentPrediction",
    "classification_scores",
    "items_from_attributes",
    "items_from_entities",
    "majority_scores",
    "marked_text",
]

_LAZY = {
    "HFSegmentClassifier": "medkit_exp.text.classification.hf_segment_classifier",
    "SegmentPrediction": "medkit_exp.text.classification.hf_segment_classifier",
    "HFSegmentClassifierTrainable": "medkit_exp.text.classification.hf_segment_classifier_trainable",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
