"""Entity-level inference and scoring on whole documents (what the test split is scored with)."""

from __future__ import annotations

from typing import Any


def predict_by_sentence(matcher: Any, docs: list[Any]) -> list[list[Any]]:
    """Predict sentence by sentence (as a model trained on sentences saw its inputs), with
    entities in document coordinates. The documents' own entities are ignored, so reference
    annotations never influence where sentences are cut."""
    from medkit_exp.core import TextDocument
    from medkit_exp.io.sentences import entity_to_parent, split_into_sentences

    bare = [TextDocument(text=doc.text, id=doc.id, metadata=doc.metadata) for doc in docs]
    sentences = split_into_sentences(bare)
    by_parent: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    for sentence, entities in zip(sentences, matcher.predict(sentences)):
        by_parent[sentence.metadata["parent_id"]].extend(entity_to_parent(e, sentence) for e in entities)
    return [by_parent[doc.id] for doc in docs]


def predict_documents(matcher: Any, docs: list[Any], split_sentences: bool = False) -> list[list[Any]]:
    """The entities ``matcher`` finds in each document, read sentence by sentence if asked."""
    return predict_by_sentence(matcher, docs) if split_sentences else matcher.predict(docs)


def score_predictions(reference_docs, predictions, tagging_scheme: str = "iob2") -> dict[str, float]:
    """Exact-span scores (``precision``, ``f1``...) and token-level seqeval scores (``token_*``)."""
    from medkit_exp.text.metrics import ExactSpanEvaluator, SeqEvalEvaluator

    scores = dict(ExactSpanEvaluator().compute(reference_docs, predictions))
    token_scores = SeqEvalEvaluator(tagging_scheme=tagging_scheme).compute(reference_docs, predictions)
    scores.update({f"token_{k}": v for k, v in token_scores.items()})
    return scores
