"""JSONL: round trip (attributes, normalisations, metadata, scores) and line-numbered validation."""

from __future__ import annotations

import json

import pytest

from medkit_exp.core.document import Attribute, Entity, Span, TextDocument
from medkit_exp.io import NORMALIZATION, CorpusError, load_jsonl, read_jsonl, write_jsonl


def _doc() -> TextDocument:
    text = "Started metformin for type 2 diabetes; no fever."
    return TextDocument(
        text=text,
        id="d1",
        metadata={"split": "train", "source": {"site": 3}},
        anns=[
            Entity(label="treatment", spans=[Span(8, 17)], text="metformin", attrs=[Attribute("dose", "500 mg")]),
            Entity(
                label="problem",
                spans=[Span(22, 37)],
                text="type 2 diabetes",
                attrs=[
                    Attribute(NORMALIZATION, "MeSH:D003924", {"type": "Reference"}),
                    Attribute(NORMALIZATION, "UMLS:C0011860", {"type": "Reference"}),
                ],
                score=0.75,
            ),
            Entity(label="problem", spans=[Span(39, 41), Span(42, 47)], text="no fever", metadata={"k": 1}),
        ],
    )


def _signature(docs):
    return [
        (
            d.id,
            d.text,
            d.metadata,
            [
                (e.label, e.spans, e.text, e.score, e.metadata, [(a.label, a.value, a.metadata) for a in e.attrs])
                for e in d.anns.entities
            ],
        )
        for d in docs
    ]


def test_round_trip(tmp_path):
    docs = [_doc(), TextDocument(text="Nothing.", id="d2")]
    path = write_jsonl(docs, tmp_path / "sub" / "corpus.jsonl")
    assert _signature(read_jsonl(path)) == _signature(docs)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["entities"][0]["attrs"] == {"dose": "500 mg"}  # object form when lossless
    assert isinstance(first["entities"][1]["attrs"], list)  # list form for repeated labels
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_minimal_records_and_report(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"text": "Fever and cough.", "entities": [{"label": "P", "spans": [[0, 5]], "attrs": {"negated": true}}]}\n'
        "\n"
        '{"id": 7, "text": "ok"}\n',
        encoding="utf-8",
    )
    corpus = load_jsonl(path, label_map={"P": "problem"})
    d1, d2 = corpus.documents
    assert d1.id == "c-1" and d2.id == "7"
    assert d1.anns.entities[0].text == "Fever" and d1.anns.entities[0].label == "problem"
    assert d1.anns.entities[0].attrs[0].value is True
    assert corpus.report.entities == {"problem": 1}
    assert corpus.report.unannotated_documents == 1


@pytest.mark.parametrize(
    "line, expected",
    [
        ("{not json", "invalid JSON"),
        ('["a"]', "each line must be a JSON object"),
        ('{"id": "a"}', "'text' is missing"),
        ('{"id": "a", "text": "abc", "entities": [{"spans": [[0, 1]]}]}', "entity 0: 'label' must be"),
        ('{"id": "a", "text": "abc", "entities": [{"label": "X", "spans": [[0, 9]]}]}',
         "entity 0: span 0-9 is out of range"),
        ('{"id": "a", "text": "abc", "entities": [{"label": "X", "spans": [0, 1]}]}', "must be a [start, end] pair"),
        (
            '{"id": "a", "text": "abc", "entities": [{"label": "X", "spans": [[0, 2]], "text": "bc"}]}',
            "entity 0: span 0-2 text 'bc' does not match the document text 'ab'",
        ),
        ('{"id": "a", "text": "abc", "entities": [{"label": "Y", "spans": [[0, 2]]}]}',
         "label 'Y' is not one of ['X']"),
        (
            '{"id": "a", "text": "abc", "entities": '
            '[{"label": "X", "spans": [[0, 2]]}, {"label": "X", "spans": [[1, 3]]}]}',
            "overlaps",
        ),
        ('{"id": "first", "text": "abc"}', "document id 'first' is already used on line 1"),
    ],
)
def test_line_numbered_errors(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "first", "text": "x"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_jsonl(path, labels=["X"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path.name}/bad.jsonl line 2: ") and expected in message
    assert "\n" not in message


def test_missing_file_and_overlap_policy(tmp_path):
    with pytest.raises(CorpusError, match="does not exist.*MEDKIT_EXP_DATA"):
        load_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"empty\.jsonl: no documents in this file"):
        load_jsonl(tmp_path / "empty.jsonl")
    path = tmp_path / "o.jsonl"
    path.write_text(
        '{"id": "a", "text": "abcd", "entities": '
        '[{"label": "X", "spans": [[0, 2]]}, {"label": "X", "spans": [[1, 4]]}]}\n',
        encoding="utf-8",
    )
    corpus = load_jsonl(path, overlap_policy="keep_longest")
    assert [e.text for e in corpus.documents[0].anns.entities] == ["bcd"]
    assert corpus.report.dropped_overlaps == {"X": 1}


def test_unwritable_values(tmp_path):
    doc = TextDocument(text="a", id="x", metadata={"obj": object()})
    with pytest.raises(CorpusError, match="document 'x': cannot be written as JSON"):
        write_jsonl([doc], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
