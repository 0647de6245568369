"""Constrained decoding: the most probable tag sequence that is a valid IOB2/BILOU sequence.

Reading each unit's most probable tag (greedy) can give sequences no annotation produces,
such as ``O I-Disease`` or ``B-Disease I-Chemical``; a decoder then has to guess where such
an entity starts. The Viterbi search below instead picks, among the valid sequences, the
one with the highest product of the model's tag probabilities, so that a weak ``B-`` next to
a confident ``I-`` becomes an entity start rather than a broken entity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medkit_exp.text.ner.tagging import OUTSIDE, split_tag

DECODINGS = ("greedy", "viterbi")


def _follows(previous: str, current: str, scheme: str) -> bool:
    """Whether ``current`` may come right after ``previous`` in a valid sequence."""
    prev_prefix, prev_label = split_tag(previous)
    prefix, label = split_tag(current)
    inside = prev_prefix in ("B", "I")  # an entity is open after previous
    if scheme == "iob2":
        return prefix != "I" or (inside and prev_label == label)
    # BILOU: an open entity must go on (I) or end (L) with its own label; others start fresh.
    if inside:
        return prefix in ("I", "L") and label == prev_label
    return prefix in (OUTSIDE, "B", "U")


def transition_mask(tags: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed[previous, current], allowed_first[tag], allowed_last[tag]) for ``tags``."""
    allowed = np.array([[_follows(p, c, scheme) for c in tags] for p in tags], dtype=bool)
    prefixes = [split_tag(t)[0] for t in tags]
    # A sequence starts outside any entity, and in BILOU it must close its last entity.
    first = np.array([p not in ("I", "L") for p in prefixes], dtype=bool)
    last = np.array([scheme == "iob2" or p not in ("B", "I") for p in prefixes], dtype=bool)
    return allowed, first, last


def viterbi_decode(probs: np.ndarray, tags: Sequence[str], scheme: str) -> list[int]:
    """Tag ids of the most probable valid sequence for ``probs`` (``[units, tags]`` probabilities)."""
    allowed, first, last = transition_mask(tags, scheme)
    log_probs = np.log(np.clip(probs, 1e-12, None))
    forbidden = np.where(allowed, 0.0, -np.inf)
    score = log_probs[0] + np.where(first, 0.0, -np.inf)
    backpointers = np.zeros((len(probs), len(tags)), dtype=np.int64)
    for i in range(1, len(probs)):
        candidates = score[:, None] + forbidden  # [previous, current]
        backpointers[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[i]
    score = score + np.where(last, 0.0, -np.inf)
    path = [int(score.argmax())]
    for i in range(len(probs) - 1, 0, -1):
        path.append(int(backpointers[i, path[-1]]))
    return path[::-1]
