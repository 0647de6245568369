"""Texts to fixed-length blocks for masked-language-model training.

Each text is cut into word pieces with the number of the word each piece belongs to (what
whole-word masking needs); the pieces of consecutive texts are then packed into blocks of
``max_length`` tokens (the model's special tokens included), texts separated by the separator
token, so that no position is spent on padding. A block ends at a word boundary: a word's
pieces stay in one block (a word longer than a whole block is the exception, cut).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

NO_WORD = -1  # word index of special tokens and padding: never masked


def text_pieces(tokenizer: Any, text: str) -> dict[str, list[int]]:
    """The text's token ids (no special token) and, per token, the index of its word in the text."""
    encoding = tokenizer(text, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                         verbose=False)  # a long text is cut into blocks later: no "longer than the maximum" warning
    words = encoding.word_ids()
    return {"input_ids": list(encoding["input_ids"]), "word_ids": [NO_WORD if w is None else int(w) for w in words]}


def words_of(pieces: dict[str, list[int]]) -> Iterator[list[int]]:
    """The token ids of each word of a text, in order."""
    word: list[int] = []
    current = None
    for token, word_id in zip(pieces["input_ids"], pieces["word_ids"], strict=True):
        if word and (word_id != current or word_id == NO_WORD):
            yield word
            word = []
        word.append(token)
        current = word_id
    if word:
        yield word


class BlockPacker:
    """Packs texts' words into blocks ``[CLS] tokens... [SEP]`` of at most ``max_length`` tokens."""

    def __init__(self, max_length: int, cls_id: int, sep_id: int) -> None:
        if max_length < 3:
            raise ValueError(f"max_length={max_length} leaves no room for text between the special tokens; use >= 8")
        self.content = max_length - 2
        self.cls_id, self.sep_id = cls_id, sep_id
        self.blocks: list[dict[str, Any]] = []
        self.first_source: list[int] = []
        self._ids: list[int] = []
        self._words: list[int] = []
        self._source = 0
        self._next_word = 0

    def add(self, pieces: dict[str, list[int]], source: int) -> None:
        """Append one text (``source``: its position in the list of texts)."""
        if self._ids and len(self._ids) < self.content:
            self._ids.append(self.sep_id)  # texts are separated as BERT's sentence pairs are
            self._words.append(NO_WORD)
        for word in words_of(pieces):
            for start in range(0, len(word), self.content):
                part = word[start:start + self.content]
                if len(self._ids) + len(part) > self.content:
                    self.flush()
                if not self._ids:
                    self._source = source
                self._ids.extend(part)
                self._words.extend([self._next_word] * len(part))
                self._next_word += 1

    def flush(self) -> None:
        """Close the block being filled (if it holds any text)."""
        while self._words and self._words[-1] == NO_WORD:  # no trailing separator
            self._ids.pop()
            self._words.pop()
        if self._ids:
            self.blocks.append({"input_ids": [self.cls_id, *self._ids, self.sep_id],
                                "attention_mask": [1] * (len(self._ids) + 2),
                                "word_index": [NO_WORD, *self._words, NO_WORD],
                                "length": len(self._ids) + 2, "mask_seed": len(self.blocks)})
            self.first_source.append(self._source)
        self._ids, self._words, self._next_word = [], [], 0


def pack_texts(texts: Sequence[dict[str, list[int]]], max_length: int, cls_id: int, sep_id: int,
               across_texts: bool = True) -> tuple[list[dict[str, Any]], list[int]]:
    """Blocks of the texts' pieces (`text_pieces`) and, per block, the position of the text it starts
    in. ``across_texts``: a block may hold the end of one text and the start of the next (no
    padding); False: every text starts a new block."""
    packer = BlockPacker(max_length, cls_id, sep_id)
    for source, pieces in enumerate(texts):
        if not across_texts:
            packer.flush()
        packer.add(pieces, source)
    packer.flush()
    return packer.blocks, packer.first_source
