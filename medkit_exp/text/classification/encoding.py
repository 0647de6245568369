"""Turn segment items into model inputs, the same way for training and inference.

The marked text (`context.marked_text`) is tokenized once without special tokens; when it
has more tokens than fit, a window of tokens is kept around the marked mention (centred on
it, filled up from the other side at a text edge), so the mention is never cut away by the
context. Only a mention longer than the whole window is cut (at its end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medkit_exp.text.classification.context import ContextSettings, MarkedText, marked_text
from medkit_exp.text.classification.items import SegmentItem
from medkit_exp.text.hf_model import pad_examples
from medkit_exp.text.ner.windows import SpecialTokens
from medkit_exp.training.batch import BatchData


class SegmentEncoder:
    """Encodes items as ``{"input_ids", "attention_mask", "length"}`` dicts and pads them into batches.

    Args:
        tokenizer: a fast HF tokenizer (character offsets locate the mention's tokens).
        settings: context and markers.
        max_length: tokens per input, special tokens included.
    """

    def __init__(self, tokenizer: Any, settings: ContextSettings, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.max_length = max_length
        self.special = SpecialTokens.of(tokenizer)
        self.capacity = max_length - self.special.count
        if self.capacity < 4:
            raise ValueError(
                f"max_length={max_length} leaves {self.capacity} tokens after {self.special.count} special ones: "
                "raise it"
            )

    def encode(self, items: Sequence[SegmentItem]) -> list[dict[str, Any]]:
        """Inputs of each item, in order (one tokenizer call for all)."""
        marked = [marked_text(item, self.settings) for item in items]
        if not marked:
            return []
        encoding = self.tokenizer(
            [m.text for m in marked],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
        )
        examples = []
        for i, m in enumerate(marked):
            ids = list(encoding["input_ids"][i])
            start, end = self._window([tuple(o) for o in encoding["offset_mapping"][i]], m)
            input_ids = list(self.special.prefix) + ids[start:end] + list(self.special.suffix)
            examples.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "length": len(input_ids)})
        return examples

    def _window(self, offsets: list[tuple[int, int]], marked: MarkedText) -> tuple[int, int]:
        """Tokens ``[start, end)`` to keep: all when they fit, else a window around the mention."""
        n, capacity = len(offsets), self.capacity
        if n <= capacity:
            return 0, n
        first = next((i for i, (s, e) in enumerate(offsets) if e > marked.mention_start), n)
        last = next((i for i in range(n - 1, -1, -1) if offsets[i][0] < marked.mention_end), first) + 1
        if last - first >= capacity:
            return first, first + capacity
        spare = capacity - (last - first)
        start = max(0, first - spare // 2)
        end = min(n, last + spare - (first - start))  # what the left side did not use goes right
        start = max(0, end - capacity)
        return start, end

    def collate(self, examples: Sequence[dict[str, Any]], with_labels: bool,
                pad_to_multiple_of: int | None = None, pad_lengths: Sequence[int] | None = None) -> BatchData:
        """Pad to the longest example (rounded as `pad_examples` says): ``input_ids``,
        ``attention_mask`` (+ ``token_type_ids``, ``labels``)."""
        batch = pad_examples(examples, self.tokenizer, pad_to_multiple_of, pad_lengths=pad_lengths)
        if with_labels:
            if any("label" not in e for e in examples):
                raise ValueError(
                    "collate(with_labels=True) needs examples with a 'label': preprocess items with a gold class"
                )
            batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        return batch
