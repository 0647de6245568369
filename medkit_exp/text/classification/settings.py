"""What a segment-classifier checkpoint needs besides the HF weights.

A folder written by `HFSegmentClassifierTrainable.save` is a plain HF sequence-classification
model folder (``config.json`` with the classes as ``id2label``, weights, tokenizer) plus
``medkit_exp_classifier.json`` (`ClassifierSettings`): the attribute label, the classes,
how the context is cut and the mention marked, and the token limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medkit_exp.text.classification.context import ContextSettings
from medkit_exp.text.settings_io import load_settings, save_settings

SETTINGS_FILE = "medkit_exp_classifier.json"


@dataclass
class ClassifierSettings:
    """Settings saved next to the model (``medkit_exp_classifier.json``)."""

    attr_label: str
    labels: list[str]
    context: str = "sentence"
    context_chars: int = 200
    start_marker: str = "[E]"
    end_marker: str = "[/E]"
    max_length: int | None = None
    format_version: int = 1

    @property
    def context_settings(self) -> ContextSettings:
        return ContextSettings(self.context, self.context_chars, self.start_marker, self.end_marker)

    def save(self, directory: str | Path) -> None:
        save_settings(self, Path(directory) / SETTINGS_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> ClassifierSettings | None:
        """The settings saved in ``directory``, or None when it has none (a plain HF model)."""
        return load_settings(cls, Path(directory) / SETTINGS_FILE)
