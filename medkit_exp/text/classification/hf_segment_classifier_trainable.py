"""`HFSegmentClassifierTrainable`: fine-tune a HF sequence-classification model on segments.

It implements the `TrainableComponent` protocol of `medkit_exp.training`: ``preprocess``
turns a `SegmentItem` (a segment in its document, with a gold class) into the token ids of
its marked context and a class id, ``collate`` pads them, ``forward`` runs the model,
``save`` writes a folder that `HFSegmentClassifier(model=folder)` runs as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medkit_exp.text.classification.context import ContextSettings
from medkit_exp.text.classification.encoding import SegmentEncoder
from medkit_exp.text.classification.items import as_item
from medkit_exp.text.classification.settings import ClassifierSettings
from medkit_exp.text.hf_model import (
    HFTrainableModel,
    as_device,
    config_labels,
    input_token_limit,
    load_fast_tokenizer,
    quiet_transformers,
)
from medkit_exp.training.batch import BatchData

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class HFSegmentClassifierTrainable(HFTrainableModel):
    """A trainable segment classifier over a HF sequence-classification model.

    Args:
        model_name_or_path: a HF model folder or hub name. A base encoder gets a new
            classification head for ``labels``; a classifier checkpoint with the same
            classes keeps its head (and its class order).
        labels: the classes to learn; every training item's gold class must be one of them.
        attr_label: label of the attribute holding the class: the gold is read from it
            (unless the item carries its own ``label``) and predictions are written to it.
        context: ``"sentence"``, ``"window"`` or ``"none"`` (see `ContextSettings`).
        context_chars: characters of context on each side for ``context="window"``.
        start_marker, end_marker: text around the mention.
        max_length: tokens per input, special tokens included (default: the model's limit,
            at most 512); longer contexts are cut around the mention.
        device: torch device of the model.
        hf_auth_token: token for private hub models.
        fast_dropout: draw dropout masks on CPU with `medkit_exp.training.fast_dropout` (True,
            default) or with PyTorch's own ``bernoulli_`` (False); see `HFEntityMatcherTrainable`.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        labels: Sequence[str],
        attr_label: str = "type",
        context: str = "sentence",
        context_chars: int = 200,
        start_marker: str = "[E]",
        end_marker: str = "[/E]",
        max_length: int | None = None,
        device: str | int | torch.device = "cpu",
        hf_auth_token: str | None = None,
        fast_dropout: bool = True,
    ) -> None:
        from transformers import AutoConfig

        quiet_transformers()
        labels = [str(label) for label in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must hold at least 2 distinct classes, got {labels}: give every class once")
        self.model_name_or_path = str(model_name_or_path)
        self.attr_label = attr_label
        self._token = hf_auth_token
        context_settings = ContextSettings(context, context_chars, start_marker, end_marker)

        config = AutoConfig.from_pretrained(self.model_name_or_path, token=hf_auth_token)
        existing = config_labels(config)
        self.labels = existing if sorted(existing) == sorted(labels) else labels  # keep a trained head's order
        self.tokenizer = load_fast_tokenizer(self.model_name_or_path, hf_auth_token)
        max_length = input_token_limit(config, self.tokenizer, max_length, "max_length", minimum=8)
        self.encoder = SegmentEncoder(self.tokenizer, context_settings, max_length)
        self.model = self._load_model(self.model_name_or_path)
        self._set_fast_dropout(fast_dropout)
        self.device = as_device(device)
        self.model.to(self.device)  # type: ignore[arg-type]  # PreTrainedModel.to is @wraps(Module.to): mypy takes the device for self (transformers#38052)

    # ------------------------------------------------------------------ classes and settings
    @property
    def id_to_label(self) -> dict[int, str]:
        """Class of each class id (what the metrics computer needs)."""
        return dict(enumerate(self.labels))

    @property
    def label_to_id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def settings(self) -> ClassifierSettings:
        """What `save` writes next to the model."""
        context = self.encoder.settings
        return ClassifierSettings(
            attr_label=self.attr_label,
            labels=list(self.labels),
            context=context.context,
            context_chars=context.context_chars,
            start_marker=context.start_marker,
            end_marker=context.end_marker,
            max_length=self.max_length,
        )

    # ------------------------------------------------------------------ protocol
    def load(self, path: str | Path) -> None:
        """Load into this component the weights (and tokenizer) saved by `save` in ``path``.

        The parameters are updated in place, so an optimizer built before stays valid.
        """
        from transformers import AutoModelForSequenceClassification

        loaded = AutoModelForSequenceClassification.from_pretrained(str(path))
        saved = [loaded.config.id2label[i] for i in range(len(loaded.config.id2label))]
        settings = ClassifierSettings.load(path)
        saved_context = settings.context_settings if settings is not None else self.encoder.settings
        if saved != self.labels or saved_context != self.encoder.settings:
            raise ValueError(
                f"checkpoint {path} was trained with classes {saved} and {saved_context} but this component uses "
                f"{self.labels} and {self.encoder.settings}: create the component with the checkpoint's settings"
            )
        self._adopt_weights(loaded, path)
        self.encoder.tokenizer = self.tokenizer

    def preprocess(self, data_item: Any) -> dict[str, Any]:
        """One example: ``input_ids``, ``attention_mask``, ``length`` and the gold class id ``label``.

        ``data_item`` is a `SegmentItem` or a ``(document, segment)`` pair; its gold class is
        the item's ``label``, else the segment's attribute ``attr_label``.
        """
        item = as_item(data_item)
        gold = item.gold(self.attr_label)
        if gold is None:
            raise ValueError(
                f"{item.segment.label} {item.segment.text!r}{item.where} has no gold class: give it an attribute "
                f"{self.attr_label!r} or build items with items_from_entities / items_from_attributes"
            )
        if gold not in self.label_to_id:
            raise ValueError(
                f"{item.segment.label} {item.segment.text!r}{item.where} has class {gold!r}, not among the labels "
                f"{self.labels}: add it to labels or leave such items out"
            )
        example = self.encoder.encode([item])[0]
        example["label"] = self.label_to_id[gold]
        return example

    def collate(self, batch: list[dict[str, Any]]) -> BatchData:
        """Pad examples to the longest one: tensors ``input_ids``, ``attention_mask``, ``labels``
        (one class id per row)."""
        return self.encoder.collate(batch, with_labels=True, pad_to_multiple_of=self.pad_to_multiple_of,
                                    pad_lengths=self.pad_lengths)

    def save(self, path: str | Path) -> None:
        """Write a HF model folder (classes in ``config.id2label``) plus ``medkit_exp_classifier.json``."""
        self.settings.save(self._save_hf_folder(path))

    # ------------------------------------------------------------------ helpers
    def _load_model(self, path: str | Path) -> PreTrainedModel:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=len(self.labels),
            id2label=self.id_to_label,
            label2id=self.label_to_id,
            problem_type="single_label_classification",
            ignore_mismatched_sizes=True,
            token=self._token,
        )
