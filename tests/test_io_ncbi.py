"""The real NCBI-disease corpus (shared data beside the repository; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medkit_exp.io import (
    NCBI_LABEL_MAP,
    corpus_digest,
    corpus_summary,
    load_brat,
    read_brat,
    read_jsonl,
    split_into_sentences,
    write_brat,
    write_jsonl,
)

NCBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ncbi-disease"
pytestmark = pytest.mark.skipif(not (NCBI / "train").is_dir(), reason=f"NCBI-disease data not found at {NCBI}")


@pytest.fixture(scope="module")
def train():
    return load_brat(NCBI / "train", label_map=NCBI_LABEL_MAP, labels={"Disease"}, split="train")


def test_train_split_counts(train):
    report = train.report
    assert report.documents == len(train.documents) == 593
    assert report.entities == {"Disease": 5145}
    assert report.total_dropped == 0 and report.unannotated_documents == 0
    assert report.normalizations == 5248  # CompositeMentions carry several MeSH/OMIM ids
    ids = {d.id for d in train.documents}
    assert {"8528200", "8528200.1"} <= ids
    assert corpus_summary(train.documents)["entities_per_label"] == {"Disease": 5145}


def test_original_labels():
    report = load_brat(NCBI / "train").report
    assert report.entities == {"SpecificDisease": 2972, "Modifier": 1289, "DiseaseClass": 769, "CompositeMention": 115}


def test_sentences_keep_every_entity(train):
    sentences = split_into_sentences(train.documents)
    assert sum(len(s.anns.entities) for s in sentences) == 5145
    assert len(sentences) > 4 * len(train.documents)


def test_round_trip(train, tmp_path):
    docs = train.documents[:40]
    write_brat(docs, tmp_path / "brat")
    assert corpus_digest(read_brat(tmp_path / "brat")) == corpus_digest(docs)
    back = read_jsonl(write_jsonl(docs, tmp_path / "docs.jsonl"))
    assert corpus_digest(back) == corpus_digest(docs)
    assert [a.value for a in back[0].anns.entities[0].attrs] == [a.value for a in docs[0].anns.entities[0].attrs]


@pytest.mark.parametrize("split, documents, entities", [("dev", 100, 787), ("test", 100, 960)])
def test_dev_and_test_split_counts(split, documents, entities):
    corpus = load_brat(NCBI / split, label_map=NCBI_LABEL_MAP, labels={"Disease"}, split=split)
    assert len(corpus.documents) == documents and corpus.report.entities == {"Disease": entities}
    for doc in corpus.documents:  # the reader checked every covered text; check it once more here
        for entity in doc.anns.entities:
            assert doc.text[entity.start:entity.end] == entity.text
