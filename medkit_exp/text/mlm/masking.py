"""Whole-word masking as BERT's recipe does it: 15% of the tokens of a block chosen for prediction,
whole words at a time; of the chosen tokens 80% replaced by the mask token, 10% by a random token
and 10% left as they are.

The rates are held by construction rather than drawn token by token: each block gets a budget of
``round(rate * tokens)`` tokens, filled with whole words in a random order (a word that would
overflow the budget is skipped), and the chosen tokens are then cut 80/10/10 along that order
(a word is chosen whole; its tokens may fall on both sides of a cut, as in BERT's whole-word
masking). Over 10,000 tokens, independent draws would miss 80% by more than a point about a third
of the time; this stays within a token of the target in every block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # what torch's cross-entropy and HF's MLM heads skip


@dataclass(frozen=True)
class MaskingSettings:
    """What masking does: ``rate`` of the tokens predicted; of those, ``mask_share`` shown as the
    mask token and ``random_share`` as a random token (the rest unchanged); ``whole_words``: a word's
    pieces are chosen together (False: each token is its own word)."""

    rate: float = 0.15
    mask_share: float = 0.8
    random_share: float = 0.1
    whole_words: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.rate}; BERT uses 0.15")
        if self.mask_share < 0 or self.random_share < 0 or self.mask_share + self.random_share > 1.0:
            raise ValueError(f"mask_share ({self.mask_share}) and random_share ({self.random_share}) must be >= 0 "
                             "and sum to at most 1; BERT uses 0.8 and 0.1")

    def budget(self, tokens: int) -> int:
        """Tokens chosen for prediction in a block of ``tokens`` maskable tokens (at least one)."""
        return max(1, round(self.rate * tokens)) if tokens else 0


def word_spans(word_index: Sequence[int]) -> list[list[int]]:
    """Positions of each word's tokens, in word order; tokens whose index is negative (special
    tokens, padding) belong to no word."""
    spans: dict[int, list[int]] = {}
    for position, word in enumerate(word_index):
        if word >= 0:
            spans.setdefault(int(word), []).append(position)
    return [spans[word] for word in sorted(spans)]


def choose_words(spans: list[list[int]], budget: int, generator: torch.Generator | None) -> list[list[int]]:
    """Whole words, in a random order, whose tokens add up to ``budget`` (or just under it)."""
    chosen, filled = [], 0
    for index in torch.randperm(len(spans), generator=generator).tolist():
        size = len(spans[index])
        if filled + size <= budget:
            chosen.append(spans[index])
            filled += size
            if filled == budget:
                break
    return chosen


def mask_block(input_ids: torch.Tensor, word_index: Sequence[int], settings: MaskingSettings, mask_token_id: int,
               replacement_ids: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked input ids, labels)`` of one block: labels hold the original id of each chosen token
    and `IGNORE_INDEX` elsewhere. ``replacement_ids``: the ids a random replacement is drawn from."""
    spans = word_spans(word_index) if settings.whole_words else [[p] for p, w in enumerate(word_index) if w >= 0]
    chosen = choose_words(spans, settings.budget(sum(len(s) for s in spans)), generator)
    masked, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
    positions = torch.tensor([p for span in chosen for p in span], dtype=torch.long)
    if not len(positions):
        return masked, labels
    labels[positions] = input_ids[positions]
    # Cut the chosen tokens (in the words' random order) 80/10/10, the cut points rounded at random
    # so that their expected share is exact whatever the block's size.
    shift = float(torch.rand((), generator=generator))
    as_mask = int(settings.mask_share * len(positions) + shift)
    as_random = int((settings.mask_share + settings.random_share) * len(positions) + shift) - as_mask
    masked[positions[:as_mask]] = mask_token_id
    draws = torch.randint(len(replacement_ids), (as_random,), generator=generator)
    masked[positions[as_mask:as_mask + as_random]] = replacement_ids[draws]
    return masked, labels


def mask_batch(input_ids: torch.Tensor, word_index: torch.Tensor, settings: MaskingSettings, mask_token_id: int,
               replacement_ids: torch.Tensor, seeds: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`mask_block` on each row of a padded batch. Without ``seeds`` the draws come from torch's
    global generator (training: new masks every epoch, restored with the RNG state on resume);
    with them, row ``i`` is masked from its own generator seeded with ``seeds[i]``, the same masks
    at every evaluation (a dev perplexity that compares across epochs and models)."""
    device, input_ids, word_index = input_ids.device, input_ids.cpu(), word_index.cpu()
    rows = []
    for row in range(input_ids.shape[0]):
        generator = None
        if seeds is not None:
            generator = torch.Generator().manual_seed(int(seeds[row]))
        rows.append(mask_block(input_ids[row], word_index[row].tolist(), settings, mask_token_id,
                               replacement_ids, generator))
    return torch.stack([r[0] for r in rows]).to(device), torch.stack([r[1] for r in rows]).to(device)
