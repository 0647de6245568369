"""`NerCodec`: documents -> tagged token windows (training), tag scores -> entity spans (inference).

Both directions go through the same tokenization, units and windows (see `windows`), so
what the model is trained on is exactly what it is read from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkit_exp.core.document import TextDocument
from medkit_exp.text.ner.tagging import (
    UnitLocator,
    check_scheme,
    decode_tags,
    encode_tags,
    entity_extent,
    labels_of_tags,
    resolve_overlaps,
    split_tag,
)
from medkit_exp.text.ner.viterbi import DECODINGS, viterbi_decode
from medkit_exp.text.ner.windows import (
    IGNORE_INDEX,
    SpecialTokens,
    TokenizedText,
    Unit,
    central_window_per_token,
    plan_windows,
    tokenize_texts,
    window_inputs,
    window_tags,
    window_units,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CharMention:
    """A predicted mention in a text: characters ``[start, end)``, label and mean tag probability."""

    start: int
    end: int
    label: str
    score: float


class NerCodec:
    """Encode documents for a token-classification model and decode its outputs.

    ``tags`` is the model's tag set in id order; ``max_length`` the tokens per window
    (special tokens included) and ``stride`` the overlap between windows.
    """

    def __init__(
        self,
        tokenizer: Any,
        tags: Sequence[str],
        tagging_scheme: str,
        tag_subtokens: bool,
        max_length: int,
        stride: int,
        decoding: str = "greedy",
    ) -> None:
        if decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
        self.decoding = decoding
        self.tokenizer = tokenizer
        self.tags = list(tags)
        self.tagging_scheme = check_scheme(tagging_scheme)
        self.tag_subtokens = bool(tag_subtokens)
        self.labels = labels_of_tags(self.tags)
        # Column j of a tag row times this: the probability of label j ("O" first), its tags summed.
        self.tag_to_label = np.zeros((len(self.tags), 1 + len(self.labels)))
        for i, tag in enumerate(self.tags):
            label = split_tag(tag)[1]
            self.tag_to_label[i, 0 if label is None else 1 + self.labels.index(label)] = 1.0
        self.label_to_id = {tag: i for i, tag in enumerate(self.tags)}
        self.id_to_label = dict(enumerate(self.tags))
        self.special = SpecialTokens.of(tokenizer)
        self.max_length = max_length
        self.capacity = max_length - self.special.count
        self.stride = stride
        plan_windows([True], self.capacity, stride)  # validates capacity and stride

    # ------------------------------------------------------------------ shared
    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        return tokenize_texts(self.tokenizer, texts)

    def windows(self, tokens: TokenizedText) -> list[tuple[int, int]]:
        """Token windows of a text (none for a text without tokens)."""
        if len(tokens) == 0:
            return []
        return plan_windows(tokens.word_starts(), self.capacity, self.stride)

    # ------------------------------------------------------------------ training
    def encode_document(self, doc: TextDocument) -> list[dict[str, Any]]:
        """One training example per window: ``input_ids``, ``attention_mask``, ``labels``, ``length``."""
        tokens = self.tokenize([doc.text])[0]
        units = tokens.units(self.tag_subtokens)
        ranges = self._entity_ranges(doc, units)
        windows = self.windows(tokens)
        bounds = window_units(units, windows)
        examples = []
        for window, (lo, hi), local in zip(windows, bounds, window_tags(ranges, bounds), strict=True):
            if hi <= lo:
                continue  # only the tail of a cut word: nothing to learn here
            tagged = [(first, end, label) for first, end, label in local if label is not None]
            tags = encode_tags(hi - lo, tagged, self.tagging_scheme)
            unit_labels = [self.label_to_id[tag] for tag in tags]
            for first, end, label in local:
                if label is None:
                    unit_labels[first:end] = [IGNORE_INDEX] * (end - first)
            inputs = window_inputs(tokens, window, self.special)
            labels = [IGNORE_INDEX] * len(inputs["input_ids"])
            shift = len(self.special.prefix) - window[0]
            for unit, label_id in zip(units[lo:hi], unit_labels, strict=True):
                labels[unit.first_token + shift] = label_id
            examples.append({**inputs, "labels": labels, "length": len(inputs["input_ids"])})
        return examples

    def _entity_ranges(self, doc: TextDocument, units: Sequence[Any]) -> list[tuple[int, int, str]]:
        locate = UnitLocator([(u.start, u.end) for u in units])
        ranges = []
        for entity in doc.anns.entities:
            if entity.label not in self.labels:
                raise ValueError(
                    f"entity label {entity.label!r} (document {doc.id!r}) is not among the labels {self.labels}: "
                    "add it to labels or drop those entities"
                )
            start, end = entity_extent(entity, doc.text, doc.id)
            cover = locate.covering(start, end)
            if cover is None:
                logger.warning("entity %r (%s) of document %r covers no token; skipped",
                               entity.text, entity.label, doc.id)
                continue
            ranges.append((cover[0], cover[1], entity.label))
        kept, dropped = resolve_overlaps(ranges)
        if dropped:
            logger.warning(
                "document %r: %d overlapping/nested entities dropped (flat tagging keeps the longest)",
                doc.id,
                len(dropped),
            )
        return kept

    # ------------------------------------------------------------------ inference
    def decode(
        self,
        tokens: TokenizedText,
        windows: Sequence[tuple[int, int]],
        window_probs: Sequence[np.ndarray],
    ) -> list[CharMention]:
        """Mentions of a text from per-window tag probabilities (``[window length, nb tags]``).

        Each unit is read from the window where its tagged token is the most central; the
        tags are each unit's most probable one (``greedy``) or the most probable valid
        sequence (``viterbi``). The score of a mention is the mean probability of its tags.
        """
        units, probs = self._unit_probs(tokens, windows, window_probs)
        return self._mentions(tokens.text, units, probs) if units else []

    def decode_with_probabilities(
        self,
        tokens: TokenizedText,
        windows: Sequence[tuple[int, int]],
        window_probs: Sequence[np.ndarray],
    ) -> tuple[list[CharMention], list[tuple[int, int]], np.ndarray]:
        """`decode`'s mentions, plus each unit's characters ``(start, end)`` (surrounding spaces
        stripped) and its label probabilities ``[units, 1 + labels]`` (``O`` first, then `labels`;
        each label's tags summed). Units of spaces alone are left out."""
        units, probs = self._unit_probs(tokens, windows, window_probs)
        if not units:
            return [], [], np.zeros((0, 1 + len(self.labels)))
        text, bounds, kept = tokens.text, [], []
        for k, unit in enumerate(units):
            start, stop = _stripped(text, unit.start, unit.end)
            if stop > start:
                bounds.append((start, stop))
                kept.append(k)
        return self._mentions(text, units, probs), bounds, probs[kept] @ self.tag_to_label

    def _unit_probs(self, tokens: TokenizedText, windows: Sequence[tuple[int, int]],
                    window_probs: Sequence[np.ndarray]) -> tuple[list[Unit], np.ndarray]:
        """The units of a text and their tag probabilities, each read from the window where its
        tagged token is the most central."""
        units = tokens.units(self.tag_subtokens)
        if not units:
            return [], np.zeros((0, len(self.tags)))
        owner = central_window_per_token(windows, len(tokens))
        prefix = len(self.special.prefix)
        rows = []
        for unit in units:
            w = owner[unit.first_token]
            rows.append(window_probs[w][unit.first_token - windows[w][0] + prefix])
        return units, np.stack(rows)

    def _mentions(self, text: str, units: Sequence[Unit], probs: np.ndarray) -> list[CharMention]:
        """The mentions read from the units' tag probabilities (greedy or Viterbi)."""
        if self.decoding == "viterbi":
            tag_ids = np.array(viterbi_decode(probs, self.tags, self.tagging_scheme))
        else:
            tag_ids = probs.argmax(axis=-1)
        tag_scores = probs[np.arange(len(tag_ids)), tag_ids]
        tags = [self.id_to_label[int(i)] for i in tag_ids]
        mentions = []
        for first, end, label in decode_tags(tags, self.tagging_scheme):
            start, stop = _stripped(text, units[first].start, units[end - 1].end)
            if stop > start:
                mentions.append(CharMention(start, stop, label, float(tag_scores[first:end].mean())))
        return mentions


def _stripped(text: str, start: int, stop: int) -> tuple[int, int]:
    """``[start, stop)`` without the spaces at its ends."""
    while start < stop and text[start].isspace():
        start += 1
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    return start, stop
