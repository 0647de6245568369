"""BRAT reading (every malformed case names its file and line), policies, attributes, writing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medkit_exp.core.document import Attribute, Entity, Span, TextDocument
from medkit_exp.io import (
    NORMALIZATION,
    CorpusError,
    load_brat,
    load_brat_splits,
    read_brat,
    read_brat_splits,
    write_brat,
)

TEXT = "Breast cancer and ovarian cancer run in families."


def make_brat(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


def ann(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def brat_error(tmp_path: Path, ann_text: str | bytes, txt: str | bytes = TEXT, **kwargs) -> str:
    folder = make_brat(tmp_path / "train", {"d1.txt": txt, "d1.ann": ann_text})
    with pytest.raises(CorpusError) as info:
        load_brat(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reads_entities_attributes_normalisations_and_counts_ignored_lines(tmp_path):
    folder = make_brat(
        tmp_path / "train",
        {
            "d1.txt": TEXT,
            "d1.ann": ann(
                "T1\tSpecificDisease 0 13\tBreast cancer",
                "N1\tReference T1 MeSH:D001943",
                "T2\tSpecificDisease 18 32\tovarian cancer",
                "N2\tReference T2 MeSH:D010051\tOvarian Neoplasms",
                "N3\tReference T2 OMIM:167000",
                "A1\tNegated T2",
                "M1\tCertainty T1 high",
                "#1\tAnnotatorNotes T1\tchecked",
                "R1\tRelated Arg1:T1 Arg2:T2",
                "",
            ),
            "d2.txt": "No annotation here.",
        },
    )
    corpus = load_brat(folder, split="train")
    d1, d2 = corpus.documents
    assert (d1.id, d2.id) == ("d1", "d2")
    assert d1.metadata == {"path": str(folder / "d1.txt"), "split": "train"}
    e1, e2 = d1.anns.entities
    assert (e1.label, e1.spans, e1.text) == ("SpecificDisease", [Span(0, 13)], "Breast cancer")
    assert [(a.label, a.value) for a in e1.attrs] == [(NORMALIZATION, "MeSH:D001943"), ("Certainty", "high")]
    assert [(a.label, a.value) for a in e2.attrs] == [
        (NORMALIZATION, "MeSH:D010051"),
        (NORMALIZATION, "OMIM:167000"),
        ("Negated", True),
    ]
    assert e2.attrs[0].metadata["type"] == "Reference"
    assert e2.attrs[0].metadata["name"] == "Ovarian Neoplasms"
    assert d2.anns.entities == []
    r = corpus.report
    assert (r.documents, r.unannotated_documents, r.attributes, r.normalizations) == (2, 1, 2, 3)
    assert r.entities == {"SpecificDisease": 2}
    assert r.ignored_lines == {"#": 1, "R": 1}
    assert read_brat(folder)[0].anns.entities[0].text == "Breast cancer"


def test_crlf_text_keeps_offsets(tmp_path):
    txt = "Title line\r\nBreast cancer."
    folder = make_brat(tmp_path / "d", {"a.txt": txt, "a.ann": "T1\tDisease 12 25\tBreast cancer\r\n"})
    (doc,) = read_brat(folder)
    assert doc.text == txt and doc.anns.entities[0].text == "Breast cancer"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("T1 Disease 0 13 Breast cancer", "train/d1.ann line 1: malformed line"),
        ("T1\tDisease 0 x\tBreast cancer", "train/d1.ann line 1: malformed line"),
        ("T1\tDisease\tBreast cancer", "train/d1.ann line 1: malformed line"),
        ("X1\tDisease 0 13\tBreast cancer", "train/d1.ann line 1: malformed line"),
        ("A1\tNegated", "train/d1.ann line 1: malformed line"),
        ("N1\tReference T1", "train/d1.ann line 1: malformed line"),
    ],
)
def test_malformed_lines(tmp_path, line, expected):
    message = brat_error(tmp_path, ann(line))
    assert message.startswith(expected)
    assert "expected" in message


def test_offsets_out_of_range(tmp_path):
    message = brat_error(tmp_path, ann("T1\tDisease 0 13\tBreast cancer", "T2\tDisease 40 400\tfamilies."))
    assert message.startswith("train/d1.ann line 2: span 40-400 is out of range")
    assert f"{len(TEXT)} characters" in message


def test_text_mismatch(tmp_path):
    message = brat_error(tmp_path, ann("T1\tDisease 0 13\tBreast cancre"))
    assert message.startswith(
        "train/d1.ann line 1: span 0-13 text 'Breast cancre' does not match the .txt text 'Breast cancer'")


def test_unknown_label_is_checked_after_the_label_map(tmp_path):
    lines = ann("T1\tSpecificDisease 0 13\tBreast cancer", "T2\tGene 18 25\tovarian")
    message = brat_error(tmp_path / "a", lines, labels=["Disease"], label_map={"SpecificDisease": "Disease"})
    assert message.startswith("train/d1.ann line 2: label 'Gene' is not one of ['Disease']")
    assert "label_map" in message
    message = brat_error(tmp_path / "b", lines, labels=["Disease"], label_map={"Gene": "Protein"})
    assert "line 1: label 'SpecificDisease' is not one of" in message
    message = brat_error(tmp_path / "c", lines, labels=["Disease"],
                         label_map={"SpecificDisease": "Disease", "Gene": "Protein"})
    assert "line 2: label 'Gene' (mapped to 'Protein')" in message


def test_label_map_renames_and_drops_with_counts(tmp_path):
    folder = make_brat(
        tmp_path / "d",
        {
            "a.txt": TEXT,
            "a.ann": ann(
                "T1\tSpecificDisease 0 13\tBreast cancer",
                "N1\tReference T1 MeSH:D001943",
                "T2\tModifier 18 32\tovarian cancer",
                "N2\tReference T2 MeSH:D010051",
            ),
        },
    )
    corpus = load_brat(folder, label_map={"SpecificDisease": "Disease", "Modifier": None}, labels="Disease")
    (doc,) = corpus.documents
    assert [(e.label, e.text) for e in doc.anns.entities] == [("Disease", "Breast cancer")]
    assert corpus.report.dropped_labels == {"Modifier": 1}
    assert corpus.report.ignored_lines == {"N of dropped entity": 1}
    assert corpus.report.normalizations == 1


def test_non_utf8_file(tmp_path):
    message = brat_error(tmp_path, ann("T1\tDisease 0 4\tCaf\xe9").encode("latin-1"), txt="Café".encode("latin-1"))
    assert message.startswith("train/d1.txt: not valid utf-8 (byte 0xe9")
    assert "encoding=" in message
    (doc,) = read_brat(tmp_path / "train", encoding="latin-1")
    assert doc.anns.entities[0].text == "Café"


def test_ann_without_txt(tmp_path):
    folder = make_brat(tmp_path / "train", {"a.txt": TEXT, "b.ann": ann("T1\tDisease 0 1\tB")})
    with pytest.raises(CorpusError, match=r"^train/b\.ann: has no matching b\.txt; add the text file"):
        load_brat(folder)


def test_attribute_of_unknown_entity(tmp_path):
    message = brat_error(tmp_path, ann("T1\tDisease 0 13\tBreast cancer", "A1\tNegated T7"))
    assert message.startswith("train/d1.ann line 2: refers to T7")


def test_duplicate_entity_id(tmp_path):
    message = brat_error(tmp_path, ann("T1\tDisease 0 13\tBreast cancer", "T1\tDisease 18 32\tovarian cancer"))
    assert message.startswith("train/d1.ann line 2: id T1 is already used on line 1")


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError) as info:
        load_brat(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value) and "MEDKIT_EXP_DATA" in str(info.value)
    assert "data.root" in str(info.value)
    with pytest.raises(CorpusError) as info:
        load_brat(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and "does not exist" in str(info.value)
    assert "MEDKIT_EXP_DATA" in str(info.value)
    make_brat(tmp_path / "root" / "train", {"a.txt": TEXT})
    with pytest.raises(CorpusError, match="use read_brat_splits"):
        load_brat(tmp_path / "root")


OVERLAPPING = ann(
    "T1\tDisease 0 13\tBreast cancer",  # longest-first tie-breaks below
    "T2\tDisease 7 13\tcancer",
    "T3\tDisease 18 25\tovarian",
    "T4\tDisease 18 32\tovarian cancer",
)


def test_overlap_error_names_both_entities(tmp_path):
    message = brat_error(tmp_path, OVERLAPPING)
    assert message.startswith("train/d1.ann line 2: entity T2 (Disease 7-13 'cancer') overlaps T1")
    assert "on line 1" in message and "overlap_policy='keep_longest'" in message


@pytest.mark.parametrize(
    "policy, kept",
    [("keep_longest", ["Breast cancer", "ovarian cancer"]), ("keep_first", ["Breast cancer", "ovarian cancer"])],
)
def test_overlap_policies_keep_and_count(tmp_path, policy, kept):
    folder = make_brat(tmp_path / "d", {"a.txt": TEXT, "a.ann": OVERLAPPING})
    corpus = load_brat(folder, overlap_policy=policy)
    assert [e.text for e in corpus.documents[0].anns.entities] == kept
    assert corpus.report.dropped_overlaps == {"Disease": 2}
    assert corpus.report.entities == {"Disease": 2}
    assert "2 dropped as overlapping" in corpus.report.describe()


def test_keep_first_and_keep_longest_differ(tmp_path):
    # "cancer and ovarian" (7-25) starts after "Breast cancer" but is longer.
    folder = make_brat(
        tmp_path / "d",
        {"a.txt": TEXT, "a.ann": ann("T1\tX 0 13\tBreast cancer", "T2\tX 7 25\tcancer and ovarian")},
    )
    assert [e.text for e in read_brat(folder, overlap_policy="keep_first")[0].anns.entities] == ["Breast cancer"]
    assert [e.text for e in read_brat(folder, overlap_policy="keep_longest")[0].anns.entities] == ["cancer and ovarian"]
    assert len(read_brat(folder, overlap_policy="keep")[0].anns.entities) == 2


def test_discontinuous_keep_and_error(tmp_path):
    lines = ann("T1\tDisease 0 6;18 32\tBreast ovarian cancer")
    folder = make_brat(tmp_path / "train", {"d1.txt": TEXT, "d1.ann": lines})
    (ent,) = read_brat(folder)[0].anns.entities
    assert ent.spans == [Span(0, 6), Span(18, 32)] and ent.text == "Breast ovarian cancer"
    with pytest.raises(CorpusError, match=r"^train/d1\.ann line 1: entity T1 has discontinuous spans '0 6;18 32'"):
        load_brat(folder, discontinuous="error")


def test_bad_policy_argument(tmp_path):
    with pytest.raises(ValueError, match="overlap_policy='nope'"):
        load_brat(tmp_path, overlap_policy="nope")


def test_splits(tmp_path):
    make_brat(tmp_path / "train", {"a.txt": TEXT, "a.ann": ann("T1\tDisease 0 13\tBreast cancer")})
    make_brat(tmp_path / "dev", {"b.txt": TEXT})
    splits = read_brat_splits(tmp_path, splits=("train", "dev"))
    assert list(splits) == ["train", "dev"]
    assert splits["dev"][0].metadata["split"] == "dev"
    assert load_brat_splits(tmp_path, splits=("train",))["train"].report.entities == {"Disease": 1}
    with pytest.raises(CorpusError, match=r"split folder\(s\) \['test'\] missing"):
        read_brat_splits(tmp_path)


def _entity(text: str, start: int, end: int, label: str, attrs=()) -> Entity:
    return Entity(label=label, spans=[Span(start, end)], text=text[start:end], attrs=list(attrs))


def _signature(docs):
    return [
        (
            d.id,
            d.text,
            [(e.label, e.spans, e.text, [(a.label, a.value) for a in e.attrs]) for e in d.anns.entities],
        )
        for d in docs
    ]


def test_write_then_read_round_trip(tmp_path):
    text = "Fever\nand cough; no rash.\r\nEnd é."
    doc = TextDocument(
        text=text,
        id="n1",
        anns=[
            _entity(text, 0, 5, "problem", [Attribute(NORMALIZATION, "UMLS:C0015967", {"type": "Reference"})]),
            Entity(label="problem", spans=[Span(0, 5), Span(10, 15)], text="Fever cough"),
            _entity(text, 4, 15, "span_with_newline", [Attribute("negated", True), Attribute("certainty", "low")]),
            _entity(text, 21, 25, "problem", [Attribute("negated", True)]),
        ],
    )
    other = TextDocument(text="", id="empty")
    write_brat([doc, other], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["empty.ann", "empty.txt", "n1.ann", "n1.txt"]
    back = read_brat(tmp_path / "out", overlap_policy="keep")
    assert _signature(back) == _signature([other, doc])
    # writing again replaces the files, leaving no temporary file behind
    write_brat([doc], tmp_path / "out")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "out" / "n1.ann").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it


def test_write_rejects_what_brat_cannot_hold(tmp_path):
    bad_label = TextDocument(text="a b", id="x", anns=[_entity("a b", 0, 3, "two words")])
    with pytest.raises(CorpusError, match="entity label 'two words' cannot be written"):
        write_brat([bad_label], tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written
    with pytest.raises(CorpusError, match="appears twice"):
        write_brat([TextDocument("a", id="x"), TextDocument("b", id="x")], tmp_path / "o")
    with pytest.raises(CorpusError, match="cannot be a BRAT file name"):
        write_brat([TextDocument("a", id="../x")], tmp_path / "o")
