"""Per-word label probabilities of NER predictions (HFEntityMatcher.predict_with_probabilities,
predict_documents_with_probabilities, score_test's records): one row per word of the text, in
document characters, summing to 1, with the very entities `predict` finds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_ner_component import LABELS, SENTENCE, SENTENCE_ENTITIES, make_doc, oracle_matcher, trainable

from medkit_exp.core.document import Segment, Span, TextDocument, covered_text
from medkit_exp.stats import ner_counts
from medkit_exp.text.ner import HFEntityMatcher
from medkit_exp.text.ner.evaluation import predict_documents, predict_documents_with_probabilities
from medkit_exp.text.predictions import TokenProbabilities, ner_records, read_records, table_of


def entity_tuples(entities):
    return [(e.label, [(s.start, s.end) for s in e.spans], e.text, e.score) for e in entities]


def non_space(text: str, lo: int = 0, hi: int | None = None) -> set[int]:
    hi = len(text) if hi is None else hi
    return {i for i in range(lo, hi) if not text[i].isspace()}


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_a_real_tiny_model_gives_a_row_per_word_summing_to_one(tiny_bert_dir, tmp_path, scheme):
    # A random tiny BERT read through 16-token windows: rows come from several windows.
    trainable(tiny_bert_dir, tagging_scheme=scheme, tokenizer_max_length=16).save(tmp_path)
    matcher = HFEntityMatcher(model=tmp_path, batch_size=4)
    docs = [make_doc(SENTENCE * 4, SENTENCE_ENTITIES), TextDocument("", id="empty"),
            TextDocument("  \n ", id="blank"), make_doc("Fièvre (38,5°C) et douleur.", [], "short")]
    found = matcher.predict_with_probabilities(docs)
    assert [entity_tuples(e) for e, _ in found] == [entity_tuples(e) for e in matcher.predict(docs)]
    assert matcher.token_labels == ("O", *LABELS)
    for doc, (_, words) in zip(docs, found, strict=True):
        assert words.labels == ("O", *LABELS) and words.probs.shape == (len(words.tokens), 3)
        assert np.allclose(words.probs.sum(axis=1), 1.0, atol=1e-5) and (words.probs >= 0).all()
        covered = [i for start, end in words.tokens for i in range(start, end)]
        assert len(covered) == len(set(covered)) and covered == sorted(covered)  # words in order, apart
        assert set(covered) == non_space(doc.text)  # every character of every word, no space
        assert all(doc.text[s:e] == doc.text[s:e].strip() for s, e in words.tokens)
    assert [covered_text(docs[3].text, [Span(s, e)]) for s, e in found[3][1].tokens][:4] == ["Fièvre", "(", "38", ","]


def test_probabilities_sum_each_labels_tags_and_follow_labels_map(tiny_bert_dir, tmp_path):
    # The oracle gives one tag e^6 / (e^6 + 4) to each entity word; O words get O that way.
    matcher = oracle_matcher(tiny_bert_dir, tmp_path, "iob2", labels_map={"drug": "medication"})
    doc = make_doc(SENTENCE, SENTENCE_ENTITIES)
    (entities, words), = matcher.predict_with_probabilities([doc])
    assert words.labels == ("O", "medication", "problem") and [e.label for e in entities][:1] == ["medication"]
    sure, other = np.exp(6) / (np.exp(6) + 4), 1 / (np.exp(6) + 4)
    by_word = {doc.text[s:e]: row for (s, e), row in zip(words.tokens, words.probs, strict=True)}
    assert by_word["douleur"] == pytest.approx([other, 2 * other, sure + other], rel=1e-5)  # B- and I-problem
    assert by_word["morphine"] == pytest.approx([other, sure + other, 2 * other], rel=1e-5)
    assert by_word["Patient"] == pytest.approx([sure, 2 * other, 2 * other], rel=1e-5)


def test_segments_give_words_in_document_characters(tiny_bert_dir, tmp_path):
    matcher = oracle_matcher(tiny_bert_dir, tmp_path, "iob2")
    text = "Intro. Patient sous morphine. Rien. Pas de fièvre ce matin."
    pieces = [Span(7, 29), Span(36, 59)]
    joined = Segment(label="sentences", spans=pieces, text=covered_text(text, pieces))
    (entities, words), = matcher.predict_with_probabilities([joined])
    assert [text[s:e] for s, e in words.tokens] == ["Patient", "sous", "morphine", ".", "Pas", "de", "fièvre", "ce",
                                                     "matin", "."]
    best = {text[s:e]: words.labels[int(row.argmax())] for (s, e), row in zip(words.tokens, words.probs, strict=True)}
    assert best["morphine"] == "drug" and best["fièvre"] == "problem" and best["sous"] == "O"
    assert [e.text for e in entities] == ["morphine", "fièvre"]


def test_sentence_by_sentence_words_are_the_documents_words(tiny_bert_dir, tmp_path):
    # The oracle reads each word alone, so sentence by sentence or whole, the rows are the same.
    matcher = oracle_matcher(tiny_bert_dir, tmp_path, "bilou")
    docs = [make_doc(SENTENCE * 3, SENTENCE_ENTITIES, "long"), TextDocument("   ", id="blank"),
            make_doc("Fièvre. Morphine ce soir.\nRien.", [], "other")]
    for split in (False, True):
        entities, words = predict_documents_with_probabilities(matcher, docs, split_sentences=split)
        assert [entity_tuples(e) for e in entities] == [entity_tuples(e) for e in predict_documents(matcher, docs,
                                                                                                       split)]
        whole = [w for _, w in matcher.predict_with_probabilities(docs)]
        for doc, mine, reference in zip(docs, words, whole, strict=True):
            assert mine.tokens == reference.tokens
            assert {i for s, e in mine.tokens for i in range(s, e)} == non_space(doc.text)
            assert np.allclose(mine.probs, reference.probs, atol=1e-6)
    assert words[1].probs.shape == (0, 3)


def test_records_carry_text_and_rounded_probabilities_that_readers_ignore(tiny_bert_dir, tmp_path):
    matcher = oracle_matcher(tiny_bert_dir, tmp_path, "iob2")
    docs = [make_doc(SENTENCE, SENTENCE_ENTITIES, "a"), make_doc("Rien ce matin.", [], "b")]
    entities, words = predict_documents_with_probabilities(matcher, docs)
    records = ner_records(docs, entities, "test", words)
    plain = ner_records(docs, entities, "test")
    assert set(records[0]) == {"document_id", "split", "gold", "predicted", "text", "tokens", "token_labels",
                               "token_probs"}
    assert records[0]["text"] == SENTENCE and records[0]["token_labels"] == ["O", *LABELS]
    rows = records[0]["token_probs"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in rows) and all(round(p, 4) == p for row in rows for p in row)
    assert len(json.dumps(rows[0])) < 40  # four decimals, not float noise
    again = TokenProbabilities.of_record(json.loads(json.dumps(records[0])))
    assert again.tokens == words[0].tokens and np.allclose(again.probs, words[0].probs, atol=5e-5)
    # Scores, counts and the MLflow table read the same from records with or without the new keys.
    assert ner_counts(records).scores() == ner_counts(plain).scores()
    assert table_of(records) == table_of(plain)
    with pytest.raises(ValueError, match="2 documents but the word probabilities of 1"):
        ner_records(docs, entities, "test", words[:1])


def test_score_test_writes_records_with_probabilities(tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner.experiment import hf_ner

    docs = [make_doc(SENTENCE, SENTENCE_ENTITIES, "a"), make_doc("Pas de fièvre. " * 3, [("fièvre", "problem")], "b")]
    for split_sentences in (False, True):
        component = hf_ner(str(tiny_bert_dir), labels=LABELS, max_length=16, split_sentences=split_sentences)
        component.save(tmp_path / "model")
        path = tmp_path / f"sentences-{split_sentences}" / "predictions" / "test.jsonl"
        scores = component.score_test(tmp_path / "model", docs, predictions_path=path)
        records = read_records(path)
        assert [r["document_id"] for r in records] == ["a", "b"] and records[1]["text"] == docs[1].text
        assert ner_counts(records).score("f1") == pytest.approx(scores["f1"], abs=1e-12)
        for doc, record in zip(docs, records, strict=True):
            assert {i for s, e in record["tokens"] for i in range(s, e)} == non_space(doc.text)
            assert len(record["token_probs"]) == len(record["tokens"])
            assert all(abs(sum(row) - 1) < 1e-3 for row in record["token_probs"])
