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
# In bf16 on CPU, oneDNN compiles and caches a kernel per batch shape: batch lengths are padded to
# few values, no more than multiples of this would give (training: `choose_padded_lengths`).
CPU_BF16_PAD_MULTIPLE = 16


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


def choose_padded_lengths(batch_lengths: Sequence[int], count: int) -> tuple[int, ...]:
    """At most ``count`` lengths to pad batches to, chosen to add the fewest padding tokens.

    ``batch_lengths``: the longest example of each batch. Each batch is padded to the
    smallest chosen length that holds it, so the longest of them is always chosen. With
    fewer distinct batch shapes, oneDNN compiles and caches fewer kernels (memory), and a
    choice fitted to the data pads less than rounding up to a multiple does with as many
    shapes (NCBI-disease sentences, batch 16: 219k tokens with 7 lengths vs 233k for multiples of 16).
    Exact (dynamic programming over the distinct lengths).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not batch_lengths:
        return ()
    values = sorted(set(batch_lengths))
    batches = {value: 0 for value in values}
    for length in batch_lengths:
        batches[length] += 1
    # cost(i, j): padding tokens when the batches of values[i..j] are all padded to values[j]
    below_count, below_sum = [0], [0]
    for value in values:
        below_count.append(below_count[-1] + batches[value])
        below_sum.append(below_sum[-1] + batches[value] * value)

    def cost(i: int, j: int) -> int:
        return (below_count[j + 1] - below_count[i]) * values[j] - (below_sum[j + 1] - below_sum[i])

    n, count = len(values), min(count, len(values))
    # best[k][j]: least padding of the batches up to values[j] with at most k + 1 lengths, values[j]
    # the longest of them; split[k][j]: the index of the next shorter length (None: k lengths do as well)
    best = [[cost(0, j) for j in range(n)]]
    split: list[list[int | None]] = [[None] * n]
    for k in range(1, count):
        row, row_split = list(best[k - 1]), [None] * n
        for j in range(n):
            for i in range(j):
                candidate = best[k - 1][i] + cost(i + 1, j)
                if candidate < row[j]:
                    row[j], row_split[j] = candidate, i
        best.append(row)
        split.append(row_split)
    chosen, k, j = [], count - 1, n - 1
    while True:
        if split[k][j] is None and k > 0:
            k -= 1
            continue
        chosen.append(values[j])
        if k == 0:
            break
        j, k = split[k][j], k - 1
    return tuple(sorted(chosen))
