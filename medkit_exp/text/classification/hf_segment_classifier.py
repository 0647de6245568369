"""`HFSegmentClassifier`: give segments (or entities) a class with a HF sequence-classification model.

Each segment is shown to the model in its document context with the mention marked (see
`context`); the predicted class is written as an attribute
``Attribute(label=attr_label, value=<class>, metadata={"score": p, "model": ...})``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medkit_exp.core.document import Attribute, Segment, TextDocument
from medkit_exp.text.classification.context import ContextSettings
from medkit_exp.text.classification.encoding import SegmentEncoder
from medkit_exp.text.classification.hf_segment_classifier_trainable import HFSegmentClassifierTrainable
from medkit_exp.text.classification.items import SegmentItem, as_item
from medkit_exp.text.classification.settings import SETTINGS_FILE, ClassifierSettings
from medkit_exp.text.hf_model import as_device, config_labels, input_token_limit, load_for_inference, model_folder


@dataclass(frozen=True)
class SegmentPrediction:
    """The predicted class of one segment and its probability."""

    label: str
    score: float


class HFSegmentClassifier:
    """Segment classifier over a HF sequence-classification model.

    Args:
        model: a folder saved by `HFSegmentClassifierTrainable.save` (attribute label,
            context and markers read from its ``medkit_exp_classifier.json``), or any HF
            sequence-classification folder or hub name (classes from its ``id2label``; then
            ``attr_label`` is required and the context settings default as below).
        device: torch device to run on.
        batch_size: segments per forward pass.
        attr_label: label of the attribute written on segments (default: the saved one).
        context, context_chars, start_marker, end_marker, max_length: override the saved
            settings (rarely useful: the model was trained with those).
        hf_auth_token: token for private hub models.
    """

    def __init__(
        self,
        model: str | Path,
        device: str | int | torch.device = "cpu",
        batch_size: int = 32,
        attr_label: str | None = None,
        context: str | None = None,
        context_chars: int | None = None,
        start_marker: str | None = None,
        end_marker: str | None = None,
        max_length: int | None = None,
        hf_auth_token: str | None = None,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name_or_path = model_folder(model)  # a checkpoint folder works too
        self.batch_size = batch_size
        self.device = as_device(device)
        self.model, self.tokenizer = load_for_inference(
            AutoModelForSequenceClassification, self.model_name_or_path, self.device, hf_auth_token
        )
        self.labels = config_labels(self.model.config)

        saved = ClassifierSettings.load(self.model_name_or_path) if Path(self.model_name_or_path).is_dir() else None
        if saved is None:
            if attr_label is None:
                raise ValueError(
                    f"{model} has no {SETTINGS_FILE} (it was not saved by HFSegmentClassifierTrainable): "
                    "pass attr_label=... to name the attribute to write"
                )
            saved = ClassifierSettings(attr_label=attr_label, labels=list(self.labels))
        elif saved.labels != self.labels:
            raise ValueError(
                f"{SETTINGS_FILE} of {model} lists classes {saved.labels} but the model config has {self.labels}: "
                "re-save the checkpoint with HFSegmentClassifierTrainable.save"
            )
        self.attr_label = attr_label or saved.attr_label
        context_settings = ContextSettings(
            context or saved.context,
            saved.context_chars if context_chars is None else context_chars,
            start_marker or saved.start_marker,
            end_marker or saved.end_marker,
        )
        length = input_token_limit(self.model.config, self.tokenizer, max_length or saved.max_length, "max_length", 8)
        self.encoder = SegmentEncoder(self.tokenizer, context_settings, length)

    @staticmethod
    def make_trainable(
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
    ) -> HFSegmentClassifierTrainable:
        """A trainable component to fine-tune ``model_name_or_path`` on ``labels`` (see its docstring)."""
        return HFSegmentClassifierTrainable(
            model_name_or_path,
            labels,
            attr_label=attr_label,
            context=context,
            context_chars=context_chars,
            start_marker=start_marker,
            end_marker=end_marker,
            max_length=max_length,
            device=device,
            hf_auth_token=hf_auth_token,
        )

    @property
    def context(self) -> ContextSettings:
        return self.encoder.settings

    # ------------------------------------------------------------------ inference
    def predict(self, items: Iterable[Any]) -> list[SegmentPrediction]:
        """The class of each item, in order; nothing is written on the segments.

        Items are `SegmentItem`s, ``(document, segment)`` pairs, or bare segments (only
        with ``context="none"``: without their document there is no context to show).
        """
        items = [as_item(item) for item in items]
        examples = self.encoder.encode(items)
        order = sorted(range(len(examples)), key=lambda i: examples[i]["length"], reverse=True)
        results: dict[int, SegmentPrediction] = {}  # by item index
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self.encoder.collate([examples[i] for i in chunk], with_labels=False)
                logits = self.model(**batch.to_device(self.device)).logits
                probs, ids = torch.softmax(logits.float(), dim=-1).max(dim=-1)
                for row, i in enumerate(chunk):
                    results[i] = SegmentPrediction(self.labels[int(ids[row])], float(probs[row]))
        return [results[i] for i in range(len(examples))]

    def run(self, items: Iterable[Any], replace: bool = False) -> list[Segment]:
        """Write the predicted class on each item's segment; return the segments.

        The attribute is ``Attribute(attr_label, <class>, {"score": p, "model": ...})``;
        with ``replace``, attributes of that label already on the segment are removed first.
        """
        items = [as_item(item) for item in items]
        for item, prediction in zip(items, self.predict(items), strict=True):
            segment = item.segment
            if replace:
                segment.attrs[:] = [a for a in segment.attrs if a.label != self.attr_label]
            metadata = {"score": prediction.score, "model": self.model_name_or_path}
            segment.attrs.append(Attribute(label=self.attr_label, value=prediction.label, metadata=metadata))
        return [item.segment for item in items]

    def annotate(
        self, docs: Iterable[TextDocument], segment_label: str | None = None, replace: bool = False
    ) -> list[Segment]:
        """`run` on the entities of ``docs`` (or, with ``segment_label``, on their annotations of that label)."""
        items: list[SegmentItem] = []
        for doc in docs:
            anns = doc.anns.entities if segment_label is None else doc.anns.get(segment_label)
            items.extend(SegmentItem(doc, ann) for ann in anns)
        return self.run(items, replace=replace)
