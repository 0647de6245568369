"""CoNLL/IOB: documents rebuilt with offsets, scheme detection, lenient repairs and strict errors."""

from __future__ import annotations

import pytest

from medkit_exp.io import CorpusError, load_conll, read_conll, split_into_sentences

IOB2 = """-DOCSTART- -X- O O

Patient NN O
has VB O
type JJ B-Disease
2 CD I-Disease
diabetes NN I-Disease
. . O

Started VB O
metformin NN B-Drug
. . O

-DOCSTART- -X- O O

Breast B-Disease
cancer I-Disease
"""


def _write(tmp_path, text, name="data.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_iob2_documents_offsets_and_sentences(tmp_path):
    corpus = load_conll(_write(tmp_path, IOB2))
    d0, d1 = corpus.documents
    assert d0.id == "data-0" and d1.id == "data-1"
    assert d0.text == "Patient has type 2 diabetes .\nStarted metformin ."
    assert [(e.label, e.start, e.end, e.text) for e in d0.anns.entities] == [
        ("Disease", 12, 27, "type 2 diabetes"),
        ("Drug", 38, 47, "metformin"),
    ]
    assert d0.metadata["sentence_spans"] == [[0, 29], [30, 49]]
    assert d1.text == "Breast cancer" and d1.anns.entities[0].text == "Breast cancer"
    assert corpus.report.details == {"scheme": "IOB2", "repaired_tags": 0}
    assert corpus.report.entities == {"Disease": 2, "Drug": 1}
    # sentence splitting follows the CoNLL sentences
    assert [s.text for s in split_into_sentences([d0])] == ["Patient has type 2 diabetes .", "Started metformin ."]


def test_iob1_detected_and_adjacent_chunks(tmp_path):
    text = "a I-X\nb I-X\nc B-X\nd O\ne I-Y\n"
    corpus = load_conll(_write(tmp_path, text))
    assert corpus.report.details["scheme"] == "IOB1"
    assert [e.text for e in corpus.documents[0].anns.entities] == ["a b", "c", "e"]
    assert corpus.report.warning_count == 0


def test_iobes_and_bilou(tmp_path):
    text = "a B-X\nb I-X\nc E-X\nd S-Y\ne O\nf U-Z\ng B-Z\nh L-Z\n"
    corpus = load_conll(_write(tmp_path, text))
    assert corpus.report.details["scheme"] == "IOBES"
    assert [(e.label, e.text) for e in corpus.documents[0].anns.entities] == [
        ("X", "a b c"),
        ("Y", "d"),
        ("Z", "f"),
        ("Z", "g h"),
    ]


def test_lenient_repairs_are_reported_with_lines(tmp_path):
    text = "a O\nb I-X\nc I-X\nd B-Y\ne I-X\n"
    corpus = load_conll(_write(tmp_path, text))
    assert [e.text for e in corpus.documents[0].anns.entities] == ["b c", "d", "e"]
    assert corpus.report.details["repaired_tags"] == 2
    assert corpus.report.warnings[0].startswith(f"{tmp_path.name}/data.conll line 2: I-X follows O (IOB2)")
    assert "line 5: I-X follows B-Y" in corpus.report.warnings[1]


def test_strict_rejects_malformed_sequences(tmp_path):
    path = _write(tmp_path, "a B-X\nb O\nc I-X\n")
    with pytest.raises(CorpusError,
                       match=r"data\.conll line 3: I-X follows O \(IOB2\); fix the tags or pass strict=False"):
        load_conll(path, strict=True)
    path = _write(tmp_path, "a B-X\nb I-X\nc O\n", "e.conll")
    with pytest.raises(CorpusError, match=r"e\.conll line 3: X entity starting on line 1 is not closed by E-X"):
        load_conll(path, scheme="IOBES", strict=True)
    assert [e.text for e in read_conll(path, scheme="IOBES")[0].anns.entities] == ["a b"]


def test_bad_lines(tmp_path):
    with pytest.raises(CorpusError, match=r"bad\.conll line 2: expected 'TOKEN \[columns\] TAG'"):
        load_conll(_write(tmp_path, "a O\nlonely\n", "bad.conll"))
    with pytest.raises(CorpusError, match=r"bad2\.conll line 1: tag 'X-1' is not 'O'"):
        load_conll(_write(tmp_path, "a X-1\n", "bad2.conll"))
    with pytest.raises(CorpusError, match=r"tag E-X is not valid in IOB2; pass scheme='IOBES'"):
        load_conll(_write(tmp_path, "a B-X\nb E-X\n", "bad3.conll"), scheme="IOB2")
    with pytest.raises(CorpusError, match="does not exist"):
        load_conll(tmp_path / "missing.conll")
    with pytest.raises(CorpusError, match=r"empty\.conll: no tokens in this file"):
        load_conll(_write(tmp_path, "-DOCSTART- O\n\n", "empty.conll"))


def test_columns_label_map_and_labels(tmp_path):
    path = _write(tmp_path, "a\tNN\tB-X\tz\nb\tNN\tO\tz\n")
    docs = read_conll(path, tag_column=2, label_map={"X": "Disease"})
    assert [(e.label, e.text) for e in docs[0].anns.entities] == [("Disease", "a")]
    with pytest.raises(CorpusError, match="line 1: label 'X' is not one of"):
        load_conll(path, tag_column=2, labels=["Y"])
