"""The batches of an epoch: which examples go together, in which order.

A pure function of (lengths, batch size, seed, epoch, policy), so that a resumed run, every
process of a data-parallel run and a benchmark's hand-written loop all see the same batches.
"""

from __future__ import annotations

from typing import Sequence

import torch

BATCH_ORDERS = ("random", "length_grouped")
# length_grouped sorts examples by length inside random chunks of this many batches: large
# enough to cut padding (most of the CPU time of short sentences), small enough to keep the
# epoch's order random.
GROUP_CHUNK_BATCHES = 50


def plan_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, order: str) -> list[list[int]]:
    """Example indices of each batch of ``epoch``.

    ``random``: a fresh permutation cut into batches. ``length_grouped``: the permutation is
    cut into chunks of `GROUP_CHUNK_BATCHES` batches, each chunk sorted by length and cut
    into batches, and the batches are shuffled, so that a batch holds examples of similar
    length (little padding) while the epoch stays randomly ordered.
    """
    if order not in BATCH_ORDERS:
        raise ValueError(f"unknown batch order {order!r}; use one of {', '.join(BATCH_ORDERS)}")
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    permutation = torch.randperm(len(lengths), generator=generator).tolist()
    if order == "random":
        return [permutation[i : i + batch_size] for i in range(0, len(permutation), batch_size)]
    chunk = batch_size * GROUP_CHUNK_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(permutation), chunk):
        part = sorted(permutation[start : start + chunk], key=lambda i: lengths[i], reverse=True)
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]
