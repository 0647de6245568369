"""The batches of an epoch: which examples go together, in which order.

A pure function of (lengths, batch size, seed, epoch, policy), so that a resumed run, every
process of a data-parallel run and a benchmark's hand-written loop all see the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

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


def eval_batches(count: int, batch_size: int) -> list[list[int]]:
    """Indices of ``count`` examples cut into batches of ``batch_size``, in order (evaluation)."""
    return [list(range(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]


def window_weight(batch_weights: Sequence[float], batch_idx: int, grad_accum_steps: int) -> float:
    """Loss terms (rows, or labelled tokens) of the accumulation window of batch ``batch_idx``, all processes."""
    start = batch_idx - batch_idx % grad_accum_steps
    return sum(batch_weights[start : start + grad_accum_steps])


def batch_loader(examples: list[Any], batches: list[list[int]], collate: Callable[[list[Any]], Any],
                 num_workers: int) -> DataLoader:
    """A loader of ``batches`` (lists of indices into ``examples``), collated by ``collate``."""
    return DataLoader(
        cast(Dataset, examples),  # a list is a map-style dataset (len and indexing); torch's hint asks for the class
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        # Its own generator: creating a loader iterator must not draw from the global RNG,
        # or a run resumed mid-epoch would see different dropout masks.
        generator=torch.Generator().manual_seed(0),
    )


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
    batches = dict.fromkeys(values, 0)
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
        row = list(best[k - 1])
        row_split: list[int | None] = [None] * n
        for j in range(n):
            for i in range(j):
                candidate = best[k - 1][i] + cost(i + 1, j)
                if candidate < row[j]:
                    row[j], row_split[j] = candidate, i
        best.append(row)
        split.append(row_split)
    chosen, k, j = [], count - 1, n - 1
    while True:
        shorter = split[k][j]
        if shorter is None and k > 0:
            k -= 1
            continue
        chosen.append(values[j])
        if shorter is None:  # k == 0: the shortest chosen length
            break
        j, k = shorter, k - 1
    return tuple(sorted(chosen))


@runtime_checkable
class PadsToMultiple(Protocol):
    """A component whose ``collate`` rounds batch lengths up to a multiple of ``pad_to_multiple_of``."""

    pad_to_multiple_of: int | None


@runtime_checkable
class PadsToLengths(Protocol):
    """A component whose ``collate`` pads a batch to the smallest of ``pad_lengths`` that holds it."""

    pad_lengths: tuple[int, ...] | None


def set_batch_padding(component: object, pad_to_multiple_of: int | None, cpu_bf16: bool, lengths: Sequence[int],
                      first_epoch_batches: Callable[[], list[list[int]]]) -> None:
    """Tell a component with ``pad_to_multiple_of`` (and ``pad_lengths``) how to pad its batches.

    ``pad_to_multiple_of`` (``trainer.pad_to_multiple_of``) set: multiples of it (0: the
    longest example). Unset, in bf16 on CPU (``cpu_bf16``), where oneDNN compiles and caches a
    kernel per batch shape: the lengths that pad epoch 1's training batches (of examples of
    ``lengths``) least with no more distinct shapes than multiples of 16 would give
    (`choose_padded_lengths`), and multiples of 16 beyond the longest of them.
    """
    if not isinstance(component, PadsToMultiple):
        return
    multiple, chosen = pad_to_multiple_of, None
    if multiple is None:
        multiple = CPU_BF16_PAD_MULTIPLE if cpu_bf16 else 0
        if cpu_bf16 and isinstance(component, PadsToLengths) and lengths:
            longest = [max(lengths[i] for i in batch) for batch in first_epoch_batches()]
            chosen = choose_padded_lengths(longest, len({-(-n // multiple) for n in longest}))
    component.pad_to_multiple_of = multiple or None
    if isinstance(component, PadsToLengths):
        component.pad_lengths = chosen
