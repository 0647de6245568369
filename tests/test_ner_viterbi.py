"""Constrained (Viterbi) decoding of tag probabilities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medkit_exp.text.ner.tagging import build_tag_set, decode_tags, encode_tags
from medkit_exp.text.ner.viterbi import transition_mask, viterbi_decode

IOB2 = ["O", "B-D", "I-D", "B-C", "I-C"]


def probs_for(rows: list[dict[str, float]], tags: list[str]) -> np.ndarray:
    """Probability rows from {tag: p} (the rest shared equally)."""
    out = []
    for row in rows:
        rest = (1.0 - sum(row.values())) / (len(tags) - len(row))
        out.append([row.get(tag, rest) for tag in tags])
    return np.array(out)


def is_valid(tags: list[str], scheme: str) -> bool:
    allowed, first, last = transition_mask(build_tag_set(["C", "D"], scheme), scheme)
    index = {t: i for i, t in enumerate(build_tag_set(["C", "D"], scheme))}
    ids = [index[t] for t in tags]
    return first[ids[0]] and last[ids[-1]] and all(allowed[a, b] for a, b in zip(ids, ids[1:]))


def test_a_weak_begin_before_a_confident_inside_becomes_an_entity_start():
    tags = IOB2
    probs = probs_for([{"O": 0.9}, {"O": 0.5, "B-D": 0.4}, {"I-D": 0.9}, {"O": 0.9}], tags)
    assert [tags[i] for i in probs.argmax(-1)] == ["O", "O", "I-D", "O"]  # greedy: a broken entity
    assert [tags[i] for i in viterbi_decode(probs, tags, "iob2")] == ["O", "B-D", "I-D", "O"]


def test_an_inside_tag_never_continues_another_label():
    tags = IOB2
    probs = probs_for([{"B-D": 0.9}, {"I-C": 0.6, "I-D": 0.3}], tags)
    decoded = [tags[i] for i in viterbi_decode(probs, tags, "iob2")]
    assert decoded in (["B-D", "I-D"], ["O", "B-C"], ["B-D", "B-C"])
    assert is_valid(decoded, "iob2")


def test_valid_confident_sequences_are_left_as_they_are():
    tags = build_tag_set(["C", "D"], "bilou")
    sequence = encode_tags(7, [(0, 1, "D"), (2, 5, "C"), (5, 7, "D")], "bilou")
    probs = probs_for([{tag: 0.8} for tag in sequence], tags)
    assert [tags[i] for i in viterbi_decode(probs, tags, "bilou")] == sequence


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_the_result_is_the_most_probable_valid_sequence(scheme):
    """Brute force over every sequence of 4 units: Viterbi finds the best valid one."""
    tags = build_tag_set(["C", "D"], scheme)
    rng = np.random.default_rng(0)
    for _ in range(20):
        probs = rng.dirichlet(np.ones(len(tags)), size=4)
        best = max((seq for seq in itertools.product(range(len(tags)), repeat=4)
                    if is_valid([tags[i] for i in seq], scheme)),
                   key=lambda seq: sum(np.log(probs[i, t]) for i, t in enumerate(seq)))
        decoded = viterbi_decode(probs, tags, scheme)
        assert decoded == list(best)
        assert decode_tags([tags[i] for i in decoded], scheme) is not None


def test_the_matcher_decodes_with_viterbi_by_default_and_greedy_on_request(tiny_bert_dir, tmp_path):
    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["D"], tokenizer_max_length=32).save(tmp_path / "ner")
    doc = TextDocument(text="Patients with familial adenomatous polyposis and colorectal cancer were seen again. " * 3)
    for decoding in ("viterbi", "greedy"):
        matcher = HFEntityMatcher(tmp_path / "ner", decoding=decoding)
        assert matcher.codec.decoding == decoding
        matcher.predict([doc])
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        HFEntityMatcher(tmp_path / "ner", decoding="beam")
