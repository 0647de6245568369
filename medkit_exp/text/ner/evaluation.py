"""Entity-level inference and scoring on whole documents (what the test split is scored with)."""

from __future__ import annotations

from typing import Any


def predict_by_sentence(matcher: Any, docs: list[Any]) -> list[list[Any]]:
    """Predict sentence by sentence (as a model trained on sentences saw its inputs), with
    entities in document coordinates. The documents' own entities are ignored, so reference
    annotations never influence where sentences are cut."""
    from medkit_exp.io.sentences import entity_to_parent

    sentences = _sentences_of(docs)
    by_parent: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    for sentence, entities in zip(sentences, matcher.predict(sentences), strict=True):
        by_parent[sentence.metadata["parent_id"]].extend(entity_to_parent(e, sentence) for e in entities)
    return [by_parent[doc.id] for doc in docs]


def predict_documents(matcher: Any, docs: list[Any], split_sentences: bool = False) -> list[list[Any]]:
    """The entities ``matcher`` finds in each document, read sentence by sentence if asked."""
    return predict_by_sentence(matcher, docs) if split_sentences else matcher.predict(docs)


def predict_documents_with_probabilities(matcher: Any, docs: list[Any],
                                         split_sentences: bool = False) -> tuple[list[list[Any]], list[Any]]:
    """`predict_documents`' entities, and the label probabilities of each document's words
    (`medkit_exp.text.predictions.TokenProbabilities`, document coordinates), from
    ``matcher.predict_with_probabilities`` (`HFEntityMatcher`'s)."""
    from medkit_exp.text.predictions import TokenProbabilities

    if not split_sentences:
        pairs = matcher.predict_with_probabilities(docs)
        return [entities for entities, _ in pairs], [words for _, words in pairs]
    from medkit_exp.io.sentences import entity_to_parent

    sentences = _sentences_of(docs)
    entities: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    words: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    for sentence, (found, probs) in zip(sentences, matcher.predict_with_probabilities(sentences), strict=True):
        parent = sentence.metadata["parent_id"]
        entities[parent].extend(entity_to_parent(e, sentence) for e in found)
        words[parent].append(probs.shifted(sentence.metadata["parent_offset"]))
    labels = matcher.token_labels
    return ([entities[doc.id] for doc in docs],
            [TokenProbabilities.concatenate(labels, words[doc.id]) for doc in docs])


def _sentences_of(docs: list[Any]) -> list[Any]:
    """The sentences of ``docs`` (their own entities ignored, so reference annotations never
    influence where sentences are cut)."""
    from medkit_exp.core import TextDocument
    from medkit_exp.io.sentences import split_into_sentences

    return split_into_sentences([TextDocument(text=doc.text, id=doc.id, metadata=doc.metadata) for doc in docs])


def score_predictions(reference_docs, predictions, tagging_scheme: str = "iob2") -> dict[str, float]:
    """Exact-span scores (``precision``, ``f1``...) and token-level seqeval scores (``token_*``)."""
    from medkit_exp.text.metrics import ExactSpanEvaluator, SeqEvalEvaluator

    scores = dict(ExactSpanEvaluator().compute(reference_docs, predictions))
    token_scores = SeqEvalEvaluator(tagging_scheme=tagging_scheme).compute(reference_docs, predictions)
    scores.update({f"token_{k}": v for k, v in token_scores.items()})
    return scores


def entity_errors(reference_docs, predictions) -> list:
    """Every mistake of ``predictions`` against the documents' entities, as `ErrorRow` s.

    Exact matches (span and label) are right; a predicted span equal to a gold span with
    another label is a wrong label; every other gold entity is missed (false negative) and
    every other predicted one spurious (false positive), so a boundary error counts as both.
    """
    rows = []
    for doc, predicted in zip(reference_docs, predictions, strict=True):
        rows += _document_errors(doc, predicted)
    return rows


def _document_errors(doc, predicted) -> list:
    """The `ErrorRow` s of one document's predicted entities (see `entity_errors`)."""
    from medkit_exp.text.error_report import ErrorRow, MarkedSpan, MarkIndex, SentenceLocator, highlighted

    gold = {_bounds(e): e.label for e in doc.anns.entities}
    pred = {_bounds(e): e for e in predicted}
    spans = [MarkedSpan(s, e, "gold", label) for (s, e), label in gold.items()]
    spans += [MarkedSpan(s, e, "pred", entity.label) for (s, e), entity in pred.items()]
    # Sentences and marks are indexed once per document: each row then costs its own size.
    sentences, marks = SentenceLocator(doc.text), MarkIndex(spans)

    def row(kind: str, bounds: tuple[int, int], label: str, gold_label: str = "", pred_label: str = "",
            score: float | None = None) -> ErrorRow:
        window = sentences.around(*bounds)
        return ErrorRow(kind, label, doc.text[bounds[0]:bounds[1]], str(doc.id), bounds[0], bounds[1],
                        gold_label, pred_label, highlighted(doc.text, window, marks),
                        doc.text[window[0]:window[1]], score)

    rows = []
    for bounds, label in gold.items():
        if bounds not in pred:
            rows.append(row("false_negative", bounds, label, gold_label=label))
        elif pred[bounds].label != label:
            rows.append(row("wrong_label", bounds, label, label, pred[bounds].label, pred[bounds].score))
    for bounds, entity in pred.items():
        if bounds not in gold:
            rows.append(row("false_positive", bounds, entity.label, pred_label=entity.label, score=entity.score))
    return rows


def _bounds(entity) -> tuple[int, int]:
    return entity.spans[0].start, entity.spans[-1].end
