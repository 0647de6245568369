"""`HFEntityMatcher`: find entities in documents or segments with a HF token-classification model.

Texts of any length are handled: they are cut into overlapping token windows and each
token is read from the window where it is the most central; nothing is truncated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkit_exp.core.document import Attribute, Entity, Segment, Span, TextDocument
from medkit_exp.text.hf_model import (
    as_device,
    cast_linear_layers_bf16,
    config_labels,
    inference_precision,
    input_token_limit,
    load_for_inference,
    model_folder,
    quantize_int8,
)
from medkit_exp.text.ner.codec import CharMention, NerCodec
from medkit_exp.text.ner.hf_entity_matcher_trainable import HFEntityMatcherTrainable, collate_windows
from medkit_exp.text.ner.settings import SETTINGS_FILE, NerSettings, resolve_stride
from medkit_exp.text.ner.windows import SpecialTokens, window_inputs
from medkit_exp.text.predictions import OUTSIDE, TokenProbabilities
from medkit_exp.training.batching import CPU_BF16_PAD_MULTIPLE
from medkit_exp.training.precision import autocast, compile_model

Item = TextDocument | Segment


class HFEntityMatcher:
    """Entity matcher over a HF token-classification model.

    Args:
        model: a folder saved by `HFEntityMatcherTrainable.save` (tagging settings read from
            its ``medkit_exp_ner.json``), or any HF token-classification model folder or hub
            name whose ``id2label`` holds IOB2/BILOU tags (words read from first sub-tokens).
        device: torch device to run on, or its number as medkit takes it (-1: the CPU, 0: the first GPU).
        batch_size: windows per forward pass.
        tokenizer_max_length: tokens per window (default: the saved one, else the model's
            limit capped at 512).
        window_stride: tokens shared by consecutive windows (default: the saved one, else a
            quarter of the window).
        labels_map: optional renaming of the model's entity labels in the output.
        decoding: ``"viterbi"`` (default) reads the most probable *valid* tag sequence (no
            ``I-`` without its ``B-``); ``"greedy"`` each word's most probable tag, as
            transformers' token-classification pipeline does.
        attrs_to_copy: labels of the input segment's attributes copied onto its entities.
        hf_auth_token: token for private hub models.
        precision: ``"fp32"`` (default); ``"bf16"`` runs the model under bf16 autocast, its linear
            layers cast to bf16 once at load (several times faster on CPUs with AMX/AVX512-BF16
            and on GPUs); ``"int8"`` quantizes its
            linear layers to int8 (dynamic quantization, CPU only); ``"auto"``: bf16 where the
            device computes it natively, else fp32.
        compile: compile the model with torch.compile (Inductor, dynamic shapes); the first
            batches pay the compile time.
    """

    def __init__(
        self,
        model: str | Path,
        device: str | int | torch.device = "cpu",
        batch_size: int = 32,
        tokenizer_max_length: int | None = None,
        window_stride: int | None = None,
        labels_map: dict[str, str] | None = None,
        attrs_to_copy: Sequence[str] | None = None,
        hf_auth_token: str | None = None,
        decoding: str = "viterbi",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        from transformers import AutoModelForTokenClassification

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name_or_path = model_folder(model)  # a checkpoint folder works too
        self.batch_size = batch_size
        self.labels_map = dict(labels_map or {})
        self.attrs_to_copy = list(attrs_to_copy or [])
        self.device = as_device(device)
        self.model, self.tokenizer = load_for_inference(
            AutoModelForTokenClassification, self.model_name_or_path, self.device, hf_auth_token
        )
        self.precision = inference_precision(precision, self.device)
        if self.precision == "int8":
            self.model = quantize_int8(self.model)
        elif self.precision == "bf16":
            self.model = cast_linear_layers_bf16(self.model)
        if compile:
            compile_model(self, "the matcher")
        settings = NerSettings.load(self.model_name_or_path) if Path(self.model_name_or_path).is_dir() else None
        if settings is None:
            settings = NerSettings.from_model_config(self.model.config)
        config_tags = config_labels(self.model.config)
        if config_tags != settings.tags:
            raise ValueError(
                f"{SETTINGS_FILE} of {model} lists tags {settings.tags} but the model config has {config_tags}: "
                "re-save the checkpoint with HFEntityMatcherTrainable.save"
            )
        self.settings = settings
        max_length = input_token_limit(
            self.model.config, self.tokenizer, tokenizer_max_length or settings.max_length, "tokenizer_max_length"
        )
        nb_special = SpecialTokens.of(self.tokenizer).count
        if (window_stride is None and settings.window_stride is not None
                and settings.window_stride < max_length - nb_special):
            window_stride = settings.window_stride
        stride = resolve_stride(max_length, nb_special, window_stride)
        self.codec = NerCodec(
            self.tokenizer, settings.tags, settings.tagging_scheme, settings.tag_subtokens, max_length, stride, decoding
        )

    @property
    def labels(self) -> list[str]:
        """Entity labels the model predicts (before ``labels_map``)."""
        return list(self.codec.labels)

    @property
    def tagging_scheme(self) -> str:
        return self.codec.tagging_scheme

    @staticmethod
    def make_trainable(
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
    ) -> HFEntityMatcherTrainable:
        """A trainable component to fine-tune ``model_name_or_path`` on ``labels`` (see
        `HFEntityMatcherTrainable` for the arguments)."""
        return HFEntityMatcherTrainable(
            model_name_or_path,
            labels,
            tagging_scheme=tagging_scheme,
            tag_subtokens=tag_subtokens,
            tokenizer_max_length=tokenizer_max_length,
            window_stride=window_stride,
            device=device,
            hf_auth_token=hf_auth_token,
            attention_dropout=attention_dropout,
            fast_dropout=fast_dropout,
        )

    # ------------------------------------------------------------------ inference
    def run(self, items: Iterable[Item]) -> list[Entity]:
        """Entities found in ``items`` (documents or segments), as one flat list."""
        return [entity for entities in self.predict(items) for entity in entities]

    def predict(self, items: Iterable[Item]) -> list[list[Entity]]:
        """Entities of each item, in item order; spans are in document coordinates."""
        items = list(items)
        views, tokens, windows, probs = self._forward(items)
        results = []
        for item, view, item_tokens, item_windows, item_probs in zip(items, views, tokens, windows, probs, strict=True):
            mentions = self.codec.decode(item_tokens, item_windows, item_probs) if item_windows else []
            results.append([self._entity(item, view, mention) for mention in mentions])
        return results

    @property
    def token_labels(self) -> tuple[str, ...]:
        """The columns of `predict_with_probabilities`' word probabilities: ``O``, then the entity
        labels (after ``labels_map``)."""
        return tuple(dict.fromkeys([OUTSIDE, *(self.labels_map.get(label, label) for label in self.labels)]))

    def predict_with_probabilities(self, items: Iterable[Item]) -> list[tuple[list[Entity], TokenProbabilities]]:
        """`predict`'s entities of each item, with the label probabilities of each word the model
        tags (`TokenProbabilities`: words in document coordinates, columns `token_labels`, each
        label's B-/I-/L-/U- tags summed). Same forward pass and decoding as `predict`."""
        items = list(items)
        views, tokens, windows, probs = self._forward(items)
        labels = self.token_labels
        merge = np.zeros((1 + len(self.labels), len(labels)))  # labels_map may give two labels one name
        for k, label in enumerate([OUTSIDE, *self.labels]):
            merge[k, labels.index(self.labels_map.get(label, label))] = 1.0
        results: list[tuple[list[Entity], TokenProbabilities]] = []
        for item, view, item_tokens, item_windows, item_probs in zip(items, views, tokens, windows, probs, strict=True):
            if not item_windows:
                results.append(([], TokenProbabilities(labels, (), np.zeros((0, len(labels))))))
                continue
            mentions, words, label_probs = self.codec.decode_with_probabilities(item_tokens, item_windows, item_probs)
            located = [view.to_document(start, end) for start, end in words]
            kept = [k for k, pieces in enumerate(located) if pieces]
            bounds = tuple((located[k][0][0].start, located[k][-1][0].end) for k in kept)
            results.append(([self._entity(item, view, mention) for mention in mentions],
                            TokenProbabilities(labels, bounds, label_probs[kept] @ merge)))
        return results

    def _forward(self, items: Sequence[Item]) -> tuple[list[_TextView], list[Any], list[list[tuple[int, int]]],
                                                       list[list[np.ndarray]]]:
        """Each item's text view, tokens, windows and the tag probabilities of its windows."""
        views = [_TextView.of(item) for item in items]
        tokens = self.codec.tokenize([view.text for view in views])
        windows = [self.codec.windows(t) for t in tokens]
        return views, tokens, windows, self._window_probs(tokens, windows)

    def _window_probs(self, tokens: Sequence[Any],
                      windows: Sequence[Sequence[tuple[int, int]]]) -> list[list[np.ndarray]]:
        """Tag probabilities of every window, batched longest first to cut padding."""
        jobs = []
        for i, (item_tokens, item_windows) in enumerate(zip(tokens, windows, strict=True)):
            for j, window in enumerate(item_windows):
                jobs.append((i, j, window_inputs(item_tokens, window, self.codec.special)))
        jobs.sort(key=lambda job: len(job[2]["input_ids"]), reverse=True)
        probs: list[list[Any]] = [[None] * len(w) for w in windows]
        with torch.inference_mode():
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                # In bf16 on CPU, lengths rounded to 16 tokens: oneDNN builds (and caches) a kernel per shape.
                multiple = CPU_BF16_PAD_MULTIPLE if self.precision == "bf16" and self.device.type == "cpu" else None
                batch = collate_windows([job[2] for job in chunk], self.tokenizer, with_labels=False,
                                        pad_to_multiple_of=multiple)
                with autocast(self.precision, self.device):
                    logits = self.model(**batch.to_device(self.device)).logits
                batch_probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
                for row, (i, j, inputs) in enumerate(chunk):
                    probs[i][j] = batch_probs[row, : len(inputs["input_ids"])]
        return probs

    def _entity(self, item: Item, view: _TextView, mention: CharMention) -> Entity:
        pieces = view.to_document(mention.start, mention.end)
        entity = Entity(
            label=self.labels_map.get(mention.label, mention.label),
            spans=[span for span, _ in pieces],
            text=" ".join(text for _, text in pieces),
            score=mention.score,
            metadata={"model": self.model_name_or_path},
        )
        if isinstance(item, Segment):
            for label in self.attrs_to_copy:
                for attr in item.get_attrs(label):
                    entity.attrs.append(Attribute(attr.label, attr.value, dict(attr.metadata)))
        return entity


@dataclass
class _TextView:
    """The text a model reads for an item, and where its characters lie in the document.

    ``pieces`` are ``(text_start, text_end, doc_start)``: a document is one piece; a segment
    has one piece per span, its text being the spans' texts joined by single spaces.
    """

    text: str
    pieces: list[tuple[int, int, int]]

    @classmethod
    def of(cls, item: Item) -> _TextView:
        if isinstance(item, TextDocument):
            return cls(item.text, [(0, len(item.text), 0)])
        if isinstance(item, Segment):
            pieces, pos = [], 0
            for span in item.spans:
                pieces.append((pos, pos + span.length, span.start))
                pos += span.length + 1
            if pos - 1 != len(item.text):
                raise ValueError(
                    f"segment {item.label!r} has text of length {len(item.text)} but spans covering {pos - 1} "
                    "characters (pieces joined by one space): fix the segment's text or spans"
                )
            return cls(item.text, pieces)
        raise TypeError(f"HFEntityMatcher runs on TextDocument or Segment items, got {type(item).__name__}")

    def to_document(self, start: int, end: int) -> list[tuple[Span, str]]:
        """Document spans (and their texts) of characters ``[start, end)`` of the view's text."""
        result = []
        for text_start, text_end, doc_start in self.pieces:
            a, b = max(start, text_start), min(end, text_end)
            while a < b and self.text[a].isspace():
                a += 1
            while b > a and self.text[b - 1].isspace():
                b -= 1
            if a < b:
                result.append((Span(doc_start + a - text_start, doc_start + b - text_start), self.text[a:b]))
        return result
