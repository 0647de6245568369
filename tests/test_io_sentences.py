"""Sentence splitting: rules, entities never cut, offsets that map back to the parent."""

from __future__ import annotations

import pytest

from medkit_exp.core.document import Attribute, Entity, Span, TextDocument
from medkit_exp.io import CorpusError, entity_to_parent, merge_sentence_entities, sentence_spans, split_into_sentences


def _texts(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_basic_rules():
    text = "Fever resolved. Was it sepsis? Yes!  New line here\nSecond line.\n\n  Last one"
    assert _texts(text) == ["Fever resolved.", "Was it sepsis?", "Yes!", "New line here", "Second line.", "Last one"]
    assert _texts("") == [] and _texts(" \n ") == []


@pytest.mark.parametrize(
    "text",
    [
        "Drugs, e.g. Aspirin, help.",
        "Smith et al. Showed this.",
        "Compare A vs. B here.",
        "Seen by Dr. Jones today.",
        "J. Smith wrote it.",
        "The dose was 1.5 mg daily.",
        "Glucose-6-phosphate dehydrogenase (EC 1. 1. 1. 49) deficiency.",
        "It was mild. and then it was not.",
        "See Fig. 2 for details.",
        "That is, i.e. Nothing.",
    ],
)
def test_no_split(text):
    assert _texts(text) == [text]


def test_closing_brackets_and_quotes_stay_with_their_sentence():
    assert _texts('He said "stop." Then he left. (It was late.) Fine.') == [
        'He said "stop."',
        "Then he left.",
        "(It was late.)",
        "Fine.",
    ]


def _doc():
    text = "Fever and cough. Started aspirin. Type 2\ndiabetes is known. End."
    ents = [
        Entity(label="problem", spans=[Span(0, 5)], text="Fever", attrs=[Attribute("negated", True)]),
        Entity(label="problem", spans=[Span(10, 15)], text="cough"),
        Entity(label="drug", spans=[Span(25, 32)], text="aspirin"),
        Entity(label="problem", spans=[Span(34, 49)], text="Type 2\ndiabetes"),  # crosses the newline
    ]
    return TextDocument(text=text, id="p1", metadata={"split": "dev"}, anns=ents)


def test_split_keeps_every_entity_and_merges_across_boundaries():
    parent = _doc()
    sents = split_into_sentences([parent])
    assert [s.id for s in sents] == ["p1#s0", "p1#s1", "p1#s2", "p1#s3"]
    assert [s.text for s in sents] == ["Fever and cough.", "Started aspirin.", "Type 2\ndiabetes is known.", "End."]
    assert sents[2].metadata == {"split": "dev", "parent_id": "p1", "parent_offset": 34, "sentence_index": 2}
    assert [[e.text for e in s.anns.entities] for s in sents] == [
        ["Fever", "cough"], ["aspirin"], ["Type 2\ndiabetes"], []]
    assert sents[0].anns.entities[0].attrs[0].value is True
    assert sum(len(s.anns.entities) for s in sents) == len(parent.anns.entities)
    # without the entity, the newline splits
    bare = TextDocument(text=parent.text, id="p2")
    assert [s.text for s in split_into_sentences([bare])][2:4] == ["Type 2", "diabetes is known."]


def test_entity_across_a_sentence_end_merges_sentences():
    text = "He had Dr. Seuss syndrome. Then more. Foo. Bar baz."
    ent = Entity(label="X", spans=[Span(38, 46)], text="Foo. Bar")
    sents = split_into_sentences([TextDocument(text=text, id="d", anns=[ent])])
    assert [s.text for s in sents] == ["He had Dr. Seuss syndrome.", "Then more.", "Foo. Bar baz."]
    assert sents[2].anns.entities[0].spans == [Span(0, 8)]


def test_map_back_to_parents():
    parent = _doc()
    sents = split_into_sentences([parent, TextDocument(text="   ", id="blank")])
    for s in sents:
        for e in s.anns.entities:
            back = entity_to_parent(e, s)
            assert parent.text[back.start : back.end] == e.text
    # predictions: replace the sentence entities, then merge
    preds = []
    for s in sents:
        pred = TextDocument(text=s.text, id=s.id, metadata=s.metadata)
        for e in s.anns.entities:
            pred.anns.add(Entity(label="pred", spans=list(e.spans), text=e.text, score=0.9))
        preds.append(pred)
    (merged, blank) = merge_sentence_entities([parent, TextDocument(text="   ", id="blank")], preds)
    assert [(e.label, e.spans, e.text) for e in merged.anns.entities] == [
        ("pred", e.spans, e.text) for e in parent.anns.entities
    ]
    assert merged.metadata == parent.metadata and blank.anns.entities == []
    kept = merge_sentence_entities([parent], preds[:1], keep_parent_entities=True)[0]
    assert len(kept.anns.entities) == len(parent.anns.entities) + 2


def test_merge_checks_parents():
    sents = split_into_sentences([_doc()])
    with pytest.raises(CorpusError, match="parent 'p1' is not among the parents"):
        merge_sentence_entities([TextDocument(text="x", id="other")], sents)
    with pytest.raises(CorpusError, match="does not match parent 'p1' at offset"):
        merge_sentence_entities([TextDocument(text="y" * 80, id="p1")], sents)


def test_ncbi_like_abstract():
    text = (
        "Identification of APC2, a homologue of the adenomatous polyposis coli tumour suppressor.\n"
        "The APC tumour-suppressor protein controls the Wnt pathway (reviewed in [1] [2]). "
        "Human APC2 maps to chromosome 19p13. 3. APC and APC2 may have comparable functions in cancer."
    )
    assert _texts(text) == [
        "Identification of APC2, a homologue of the adenomatous polyposis coli tumour suppressor.",
        "The APC tumour-suppressor protein controls the Wnt pathway (reviewed in [1] [2]).",
        "Human APC2 maps to chromosome 19p13. 3.",
        "APC and APC2 may have comparable functions in cancer.",
    ]
