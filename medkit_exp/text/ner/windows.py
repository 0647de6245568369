"""Token alignment and overlapping windows, shared by training and inference.

A text is tokenized once, without special tokens (`TokenizedText`). Its tokens are grouped
into *units*, the things that get a tag: every token when ``tag_subtokens=True``, every
word (its first sub-token carries the tag) when ``tag_subtokens=False``. Training and
inference use the very same units, so they agree on how words map to tokens.

A text longer than the model's window is cut into overlapping token windows
(`plan_windows`): consecutive windows share ``stride`` tokens and, when possible, start and
end on word boundaries. At inference each token is read from the window where it is the
most central (`central_window_per_token`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medkit_exp.text.ner.tagging import UnitRange

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Unit:
    """A tagged item: characters ``[start, end)`` made of tokens ``[first_token, end_token)``."""

    start: int
    end: int
    first_token: int
    end_token: int


@dataclass
class TokenizedText:
    """Tokens of a whole text (no special tokens), with character offsets and word ids."""

    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]

    def __len__(self) -> int:
        return len(self.input_ids)

    def word_starts(self) -> list[bool]:
        """True for each token that begins a word (a good place to cut a window)."""
        starts = []
        for i, word in enumerate(self.word_ids):
            starts.append(i == 0 or word is None or word != self.word_ids[i - 1])
        return starts

    def units(self, tag_subtokens: bool) -> list[Unit]:
        """The tagged units: tokens (``tag_subtokens``) or words; zero-width tokens are skipped."""
        units: list[Unit] = []
        if tag_subtokens:
            for i, (start, end) in enumerate(self.offsets):
                if end > start:
                    units.append(Unit(start, end, i, i + 1))
            return units
        starts = self.word_starts()
        i = 0
        while i < len(self):
            j = i + 1
            while j < len(self) and not starts[j]:
                j += 1
            spans = [self.offsets[k] for k in range(i, j) if self.offsets[k][1] > self.offsets[k][0]]
            if spans:
                units.append(Unit(min(s for s, _ in spans), max(e for _, e in spans), i, j))
            i = j
        return units


def tokenize_texts(tokenizer: Any, texts: Sequence[str]) -> list[TokenizedText]:
    """Tokenize ``texts`` in one call of a fast tokenizer (offsets and word ids needed)."""
    if not texts:
        return []
    encoding = tokenizer(
        list(texts),
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        truncation=False,
    )
    result = []
    for i, text in enumerate(texts):
        result.append(
            TokenizedText(
                text=text,
                input_ids=list(encoding["input_ids"][i]),
                offsets=[tuple(o) for o in encoding["offset_mapping"][i]],
                word_ids=list(encoding.word_ids(i)),
            )
        )
    return result


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens a tokenizer puts around one sequence (e.g. ``[CLS] ... [SEP]``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any) -> SpecialTokens:
        """Read them off the encoding of a probe text with and without special tokens."""
        probe = "a"
        plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        for k in range(len(full) - len(plain) + 1):
            if full[k : k + len(plain)] == plain:
                return cls(tuple(full[:k]), tuple(full[k + len(plain) :]))
        raise ValueError(
            f"cannot locate the text among the special tokens of {type(tokenizer).__name__}; "
            "use a tokenizer whose single-sequence template is prefix + text + suffix"
        )

    @property
    def count(self) -> int:
        return len(self.prefix) + len(self.suffix)


def plan_windows(word_starts: Sequence[bool], capacity: int, stride: int) -> list[tuple[int, int]]:
    """Token windows ``[start, end)`` covering ``len(word_starts)`` tokens.

    Each window holds at most ``capacity`` tokens and overlaps the previous one by at least
    ``stride`` tokens. Ends and starts are moved back to word starts when that still lets
    the windows advance, so that words are not cut. An entity of at most ``stride`` tokens
    is thus always whole in some window.
    """
    n = len(word_starts)
    if capacity < 1:
        raise ValueError(f"window capacity must be >= 1 token, got {capacity}")
    if not 0 <= stride < capacity:
        raise ValueError(f"window stride (overlap) must be in [0, {capacity - 1}], got {stride}")
    if n <= capacity:
        return [(0, n)]
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + capacity, n)
        if end < n:
            cut = end
            while cut > start + stride + 1 and not word_starts[cut]:
                cut -= 1
            if word_starts[cut] and cut > start + stride:
                end = cut
        windows.append((start, end))
        if end >= n:
            return windows
        next_start = max(end - stride, start + 1)
        snapped = next_start
        while snapped > start + 1 and not word_starts[snapped]:
            snapped -= 1
        start = snapped if word_starts[snapped] else next_start


def central_window_per_token(windows: Sequence[tuple[int, int]], nb_tokens: int) -> list[int]:
    """For each token, the index of the window where it lies farthest from a cut edge.

    The text's own start and end are not cuts, so a token near them keeps full context.
    """
    owner = [-1] * nb_tokens
    best = [-1.0] * nb_tokens
    for index, (start, end) in enumerate(windows):
        for token in range(start, end):
            left = token - start if start > 0 else float("inf")
            right = end - 1 - token if end < nb_tokens else float("inf")
            margin = min(left, right)
            if margin > best[token]:
                best[token], owner[token] = margin, index
    return owner


def window_units(units: Sequence[Unit], windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each window, the half-open range of the units whose tagged (first) token lies in it."""
    firsts = [unit.first_token for unit in units]
    return [(bisect.bisect_left(firsts, start), bisect.bisect_left(firsts, end)) for start, end in windows]


def window_tags(ranges: Sequence[UnitRange],
                bounds: Sequence[tuple[int, int]]) -> list[list[tuple[int, int, str | None]]]:
    """For each window, the entity ranges to tag in it, in window-local unit positions.

    ``ranges`` are sorted and do not overlap (as `resolve_overlaps` keeps them); ``bounds`` are
    the unit ranges of the windows, in text order (`window_units`). An entity whole in a window
    is tagged as is. An entity cut by a window's edge is masked there (label ``None``: ignored
    by the loss) when it is whole in another window, and otherwise tagged as far as it goes
    (clipped to the window), so that no entity is ever dropped.

    Each window finds its entities, and each cut entity the window that could hold it whole, by
    bisection: the cost grows with the entities and windows, not with their product.
    """
    firsts = [first for first, _, _ in ranges]
    ends = [end for _, end, _ in ranges]
    window_starts = [lo for lo, _ in bounds]
    per_window = []
    for lo, hi in bounds:
        local: list[tuple[int, int, str | None]] = []
        for first, end, label in ranges[bisect.bisect_right(ends, lo) : bisect.bisect_left(firsts, hi)]:
            if lo <= first and end <= hi:
                local.append((first - lo, end - lo, label))
                continue
            # Windows start and end in order, so of those starting at or before the entity the
            # last one reaches farthest: the entity is whole elsewhere if it is whole there.
            last_before = bisect.bisect_right(window_starts, first) - 1
            whole_elsewhere = last_before >= 0 and end <= bounds[last_before][1]
            local.append((max(first, lo) - lo, min(end, hi) - lo, None if whole_elsewhere else label))
        per_window.append(local)
    return per_window


def window_inputs(tokens: TokenizedText, window: tuple[int, int], special: SpecialTokens) -> dict[str, list[int]]:
    """``input_ids`` and ``attention_mask`` of a window, special tokens added."""
    start, end = window
    input_ids = list(special.prefix) + tokens.input_ids[start:end] + list(special.suffix)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids)}
