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
    return first[ids[0]] and last[ids[-1]] and all(allowed[a, b] for a, b in itertools.pairwise(ids))


def test_a_weak_begin_before_a_confident_inside_becomes_an_entity_start():
    tags = IOB2
    probs = probs_for([{"O": 0.9}, {"O": 0.5, "B-D": 0.4}, {"I-D": 0.9}, {"O": 0.9}], tags)
    assert [tags[i] for i in probs.argmax(-1)] == ["O", "O", "I-D", "O"]  # greedy: a broken entity
    assert [tags[i] for i in viterbi_decode(probs, tags, "iob2")] == ["O", "B-D", "I-D", "O"]


def test_an_inside_tag_never_continues_another_label():
    tags = IOB2
    probs = probs_for([{"B-D": 0.9}, {"I-C": 0.6, "I-D": 0.3}], tags)
    assert [tags[i] for i in probs.argmax(-1)] == ["B-D", "I-C"]  # greedy: I-C after B-D, invalid
    # Valid sequences: B-D I-D scores 0.9 x 0.3 = 0.27; the next best, B-D O (or B-D B-C), 0.9 x 0.033.
    assert [tags[i] for i in viterbi_decode(probs, tags, "iob2")] == ["B-D", "I-D"]


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


def constant_tag_model(tiny_bert_dir, folder, tag_probs: dict[str, float]):
    """A NER checkpoint whose every token gets the same tag probabilities, whatever the text."""
    import torch
    from transformers import AutoModelForTokenClassification

    from medkit_exp.text.ner import HFEntityMatcher

    HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["C", "D"], tokenizer_max_length=32).save(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder)
    tags = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert sorted(tags) == sorted(tag_probs)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.log(torch.tensor([tag_probs[tag] for tag in tags])))
    model.save_pretrained(folder)
    return folder


def test_the_matcher_decodes_with_viterbi_by_default_and_greedy_on_request(tiny_bert_dir, tmp_path):
    """Every word's most probable tag is I-C (greedy: one C entity over the whole text), but a valid
    sequence starting C must pay for a B-C (0.001): the most probable valid one is B-D on every word."""
    import re

    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    folder = constant_tag_model(tiny_bert_dir, tmp_path / "ner",
                                {"I-C": 0.5, "B-D": 0.4, "O": 0.05, "I-D": 0.049, "B-C": 0.001})
    text = "Patients with familial adenomatous polyposis were seen again."
    words = re.findall(r"\w+|[^\w\s]", text)  # BERT's words: punctuation apart

    def found(matcher):
        return [(e.label, e.text, round(e.score, 3)) for e in matcher.predict([TextDocument(text=text)])[0]]

    default = HFEntityMatcher(folder)  # no decoding argument
    assert default.codec.decoding == "viterbi"
    assert found(default) == [("D", word, 0.4) for word in words]
    assert found(HFEntityMatcher(folder, decoding="greedy")) == [("C", text, 0.5)]
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        HFEntityMatcher(folder, decoding="beam")
