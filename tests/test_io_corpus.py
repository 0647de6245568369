"""Corpus helpers: label maps, filters, overlap resolution, summary and digest."""

from __future__ import annotations

import pytest

from medkit_exp.core.document import Entity, Segment, Span, TextDocument
from medkit_exp.io import (
    apply_label_map,
    corpus_digest,
    corpus_labels,
    corpus_summary,
    filter_labels,
    format_summary,
    resolve_overlaps,
)


def _docs():
    text = "Fever and cough after aspirin."
    return [
        TextDocument(
            text=text,
            id="a",
            metadata={"split": "train"},
            anns=[
                Entity(label="SpecificDisease", spans=[Span(0, 5)], text="Fever"),
                Entity(label="Modifier", spans=[Span(10, 15)], text="cough"),
                Entity(label="Drug", spans=[Span(22, 29)], text="aspirin"),
                Segment(label="sentence", spans=[Span(0, 30)], text=text),
            ],
        ),
        TextDocument(text="Nothing to see.", id="b"),
    ]


def test_apply_label_map_returns_new_documents():
    docs = _docs()
    mapped = apply_label_map(docs, {"SpecificDisease": "Disease", "Modifier": "Disease", "Drug": None})
    assert [(e.label, e.text) for e in mapped[0].anns.entities] == [("Disease", "Fever"), ("Disease", "cough")]
    assert len(mapped[0].anns.segments) == 1
    assert mapped[0].anns.entities[0].uid == docs[0].anns.entities[0].uid
    assert docs[0].anns.entities[0].label == "SpecificDisease"  # input untouched
    assert mapped[0].metadata == {"split": "train"} and mapped[0].metadata is not docs[0].metadata
    assert corpus_labels(mapped) == ["Disease"]


def test_filter_labels():
    docs = _docs()
    assert corpus_labels(filter_labels(docs, keep=["Drug"])) == ["Drug"]
    assert corpus_labels(filter_labels(docs, drop=["Drug"])) == ["Modifier", "SpecificDisease"]
    assert len(filter_labels(docs, keep=[])[0].anns) == 1  # the segment stays


def test_resolve_overlaps_policies():
    ents = [
        Entity(label="X", spans=[Span(0, 5)], text="....."),
        Entity(label="X", spans=[Span(3, 12)], text="........."),
        Entity(label="X", spans=[Span(20, 22)], text=".."),
        Entity(label="X", spans=[Span(20, 22)], text=".."),
    ]
    kept, dropped = resolve_overlaps(ents, "keep_longest")
    assert kept == [ents[1], ents[2]] and dropped == [ents[0], ents[3]]
    kept, dropped = resolve_overlaps(ents, "keep_first")
    assert kept == [ents[0], ents[2]] and dropped == [ents[1], ents[3]]
    assert resolve_overlaps(ents, "keep") == (ents, [])
    with pytest.raises(ValueError, match="overlaps"):
        resolve_overlaps(ents, "error")
    assert resolve_overlaps([ents[0], ents[2]], "error") == ([ents[0], ents[2]], [])


def test_summary_and_format():
    summary = corpus_summary(_docs())
    assert summary == {
        "documents": 2,
        "entities": 3,
        "entities_per_label": {"Drug": 1, "Modifier": 1, "SpecificDisease": 1},
        "characters": 45,
        "whitespace_tokens": 8,
        "documents_without_entities": 1,
        "discontinuous_entities": 0,
    }
    text = format_summary(summary, name="toy")
    assert text.startswith("toy: 2 documents, 3 entities (Drug 1, Modifier 1, SpecificDisease 1), 45 characters")
    assert text == format_summary(_docs(), name="toy") and "\n" not in text


def test_digest_is_stable_and_sensitive():
    docs = _docs()
    digest = corpus_digest(docs)
    assert len(digest) == 64 and corpus_digest(docs, short=True) == digest[:12]
    assert corpus_digest(_docs()) == digest  # fresh objects, new uids: same digest
    assert corpus_digest(list(reversed(docs))) != digest  # order-sensitive, as documented
    assert corpus_digest(apply_label_map(docs, {"Drug": "Chem"})) != digest
    # entity order inside a document does not matter
    shuffled = TextDocument(text=docs[0].text, id="a", anns=list(reversed(docs[0].anns.entities)))
    assert corpus_digest([shuffled, docs[1]]) == digest
    # a golden value: the digest must not change across runs, processes or releases
    assert digest == "cab9c7a9ff6838b98dd8af3d40f51a0dbc79548e12994493c17de1aa7cd07b35"


def _resolve_by_checking_every_kept_entity(entities, policy):
    """The overlap policies as a scan of every kept entity: what `resolve_overlaps` must match."""
    def length(e):
        return sum(s.end - s.start for s in e.spans)

    if policy == "keep_longest":
        order = sorted(range(len(entities)), key=lambda i: (-length(entities[i]), entities[i].start, i))
    else:
        order = sorted(range(len(entities)), key=lambda i: (entities[i].start, -length(entities[i]), i))
    kept, dropped = [], []
    for i in order:
        (dropped if any(entities[i].overlaps(entities[k]) for k in kept) else kept).append(i)
    return [entities[i] for i in sorted(kept)], [entities[i] for i in sorted(dropped)]


@pytest.mark.parametrize("policy", ["keep_longest", "keep_first"])
def test_overlap_policies_equal_a_scan_of_every_kept_entity_on_random_entities(policy):
    import random

    from medkit_exp.core.document import Entity, Span
    from medkit_exp.io.corpus import resolve_overlaps

    rng = random.Random(7)
    for _ in range(300):
        entities = []
        for _ in range(rng.randrange(0, 20)):
            spans, pos = [], rng.randrange(0, 60)
            for _ in range(rng.choice([1, 1, 1, 2, 3])):  # discontinuous entities too
                end = pos + rng.randrange(0, 8)
                spans.append(Span(pos, end))
                pos = end + rng.randrange(1, 10)
            entities.append(Entity(label=rng.choice("AB"), spans=spans, text=""))
        assert resolve_overlaps(entities, policy) == _resolve_by_checking_every_kept_entity(entities, policy)
