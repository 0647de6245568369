"""`HFEntityMatcherTrainable`: fine-tune a HF token-classification model on `TextDocument`s.

It implements the `TrainableComponent` protocol of `medkit_exp.training`: ``preprocess``
turns a document into tagged token windows, ``collate`` pads them, ``forward`` runs the
model, ``save`` writes a folder that `HFEntityMatcher(model=folder)` runs as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medkit_exp.core.document import TextDocument
from medkit_exp.text.hf_model import (
    HFTrainableModel,
    as_device,
    attention_dropout_override,
    config_labels,
    input_token_limit,
    load_fast_tokenizer,
    pad_examples,
    quiet_transformers,
)
from medkit_exp.text.ner.codec import NerCodec
from medkit_exp.text.ner.settings import NerSettings, resolve_stride
from medkit_exp.text.ner.tagging import build_tag_set, check_scheme
from medkit_exp.text.ner.windows import IGNORE_INDEX, SpecialTokens
from medkit_exp.training.batch import BatchData

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class HFEntityMatcherTrainable(HFTrainableModel):
    """A trainable NER component over a HF token-classification model.

    Args:
        model_name_or_path: a HF model folder or hub name (a base encoder gets a new
            classification head for the tags; a NER checkpoint with the same tags keeps its head).
        labels: entity labels to learn; every entity of the training documents must use one.
        tagging_scheme: ``"iob2"`` or ``"bilou"``.
        tag_subtokens: tag every sub-token (True) or only the first sub-token of each word
            (False: the other sub-tokens are ignored by the loss, and inference reads each word
            from its first sub-token too).
        tokenizer_max_length: tokens per window, special tokens included (default: the
            model's limit, at most 512). Longer documents are split into overlapping windows.
        window_stride: tokens shared by consecutive windows (default: a quarter of the window).
        attention_dropout: dropout on attention probabilities while training (default: the
            model's own, 0.1 for BERTs). 0 lets PyTorch use its fused attention kernel, which
            never stores the attention matrices: less memory and faster steps on CPU.
        fast_dropout: draw dropout masks on CPU with `medkit_exp.training.fast_dropout` (True,
            default: the same dropout, a training step about a fifth faster) or with PyTorch's
            own ``bernoulli_`` (False). No effect on GPUs, whose dropout is already fused.
        device: torch device of the model, or its number as medkit takes it (-1: the CPU, 0: the first GPU).
        hf_auth_token: token for private hub models.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        labels: Sequence[str],
        tagging_scheme: str = "iob2",
        tag_subtokens: bool = False,
        tokenizer_max_length: int | None = None,
        window_stride: int | None = None,
        device: str | int | torch.device = "cpu",
        hf_auth_token: str | None = None,
        attention_dropout: float | None = None,
        fast_dropout: bool = True,
    ) -> None:
        from transformers import AutoConfig

        quiet_transformers()
        self.model_name_or_path = str(model_name_or_path)
        self.tagging_scheme = check_scheme(tagging_scheme)
        self.tag_subtokens = bool(tag_subtokens)
        self.labels = list(labels)
        tags = build_tag_set(self.labels, self.tagging_scheme)
        self._token = hf_auth_token

        config = AutoConfig.from_pretrained(self.model_name_or_path, token=hf_auth_token)
        existing = config_labels(config)
        if sorted(existing) == sorted(tags):
            tags = existing  # a NER checkpoint with these tags: keep its head and its tag order
        self.tokenizer = load_fast_tokenizer(self.model_name_or_path, hf_auth_token)
        max_length = input_token_limit(config, self.tokenizer, tokenizer_max_length, "tokenizer_max_length")
        stride = resolve_stride(max_length, SpecialTokens.of(self.tokenizer).count, window_stride)
        self.codec = NerCodec(self.tokenizer, tags, self.tagging_scheme, self.tag_subtokens, max_length, stride)
        self._config_overrides: dict[str, Any] = attention_dropout_override(config, attention_dropout)
        self.model = self._load_model(self.model_name_or_path)
        self._set_fast_dropout(fast_dropout)
        self.device = as_device(device)
        self.model.to(self.device)  # type: ignore[arg-type]  # PreTrainedModel.to is @wraps(Module.to): mypy takes the device for self (transformers#38052)

    # ------------------------------------------------------------------ tag set
    @property
    def tags(self) -> list[str]:
        return self.codec.tags

    @property
    def id_to_label(self) -> dict[int, str]:
        """Tag of each class id (what the metrics computer needs)."""
        return dict(self.codec.id_to_label)

    @property
    def label_to_id(self) -> dict[str, int]:
        return dict(self.codec.label_to_id)

    @property
    def max_length(self) -> int:
        return self.codec.max_length

    @property
    def window_stride(self) -> int:
        return self.codec.stride

    # ------------------------------------------------------------------ protocol
    def load(self, path: str | Path) -> None:
        """Load into this component the weights (and tokenizer) saved by `save` in ``path``.

        The parameters are updated in place, so an optimizer built before stays valid.
        """
        from transformers import AutoModelForTokenClassification

        settings = NerSettings.load(path)
        loaded = AutoModelForTokenClassification.from_pretrained(str(path))
        saved_tags = [loaded.config.id2label[i] for i in range(len(loaded.config.id2label))]
        saved_subtokens = settings.tag_subtokens if settings is not None else self.tag_subtokens
        if saved_tags != self.tags or saved_subtokens != self.tag_subtokens:
            raise ValueError(
                f"checkpoint {path} was trained with tags {saved_tags} (tag_subtokens={saved_subtokens}) "
                f"but this component uses {self.tags} (tag_subtokens={self.tag_subtokens}): "
                "create the component with the checkpoint's labels and settings"
            )
        self._adopt_weights(loaded, path)
        self.codec.tokenizer = self.tokenizer

    def preprocess(self, data_item: TextDocument) -> list[dict[str, Any]]:
        """Tagged windows of a document: one dict of python lists per window.

        Keys: ``input_ids``, ``attention_mask``, ``labels`` (tag ids; -100 on special
        tokens and, unless ``tag_subtokens``, on non-first sub-tokens) and ``length``.
        """
        if not isinstance(data_item, TextDocument):
            raise TypeError(f"preprocess expects a TextDocument, got {type(data_item).__name__}")
        return self.codec.encode_document(data_item)

    def example_weight(self, example: dict[str, Any]) -> float:
        """How many terms of the loss mean an example brings: its labelled tokens.

        The Trainer weights micro-batches by it, so that gradient accumulation and
        data-parallel processes give exactly the update of the whole batch."""
        return float(sum(1 for label in example["labels"] if label != -100))

    def collate(self, batch: list[dict[str, Any]]) -> BatchData:
        """Pad examples to the longest one: tensors ``input_ids``, ``attention_mask``, ``labels``."""
        return collate_windows(batch, self.tokenizer, with_labels=True, pad_to_multiple_of=self.pad_to_multiple_of,
                               pad_lengths=self.pad_lengths)

    def save(self, path: str | Path) -> None:
        """Write a HF model folder (tags in ``config.id2label``) plus ``medkit_exp_ner.json``."""
        path = self._save_hf_folder(path)
        NerSettings(
            tagging_scheme=self.tagging_scheme,
            tag_subtokens=self.tag_subtokens,
            labels=list(self.codec.labels),
            tags=list(self.tags),
            max_length=self.max_length,
            window_stride=self.window_stride,
        ).save(path)

    # ------------------------------------------------------------------ helpers
    def _load_model(self, path: str | Path) -> PreTrainedModel:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(
            str(path),
            num_labels=len(self.tags),
            id2label=dict(self.codec.id_to_label),
            label2id=dict(self.codec.label_to_id),
            ignore_mismatched_sizes=True,
            token=self._token,
            **self._config_overrides,
        )


def collate_windows(batch: list[dict[str, Any]], tokenizer: Any, with_labels: bool,
                    pad_to_multiple_of: int | None = None, pad_lengths: Sequence[int] | None = None) -> BatchData:
    """Pad token windows to the longest of the batch (labels with -100, ids with the pad id),
    rounded up to one of ``pad_lengths`` or a multiple of ``pad_to_multiple_of`` when given (see `pad_examples`)."""
    return pad_examples(batch, tokenizer, pad_to_multiple_of, {"labels": IGNORE_INDEX} if with_labels else None,
                        pad_lengths)
