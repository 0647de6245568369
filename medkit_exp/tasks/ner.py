"""Named-entity recognition with `HFEntityMatcherTrainable` (``component=hf_ner``)."""

from __future__ import annotations

from typing import Any


class NerTask:
    def labels(self, cfg: Any, dataset: Any) -> list[str]:
        return list(cfg.component.labels) if cfg.component.labels else dataset.labels

    def build(self, cfg: Any, labels: list[str], device: Any) -> tuple[Any, Any]:
        from medkit_exp.app import resolve_model
        from medkit_exp.text.metrics import SeqEvalMetricsComputer
        from medkit_exp.text.ner import HFEntityMatcher

        component = HFEntityMatcher.make_trainable(
            resolve_model(cfg.component.model),
            labels=labels,
            tagging_scheme=cfg.component.tagging_scheme,
            tag_subtokens=cfg.component.tag_subtokens,
            tokenizer_max_length=cfg.component.max_length,
            window_stride=cfg.component.window_stride,
            device=device,
            attention_dropout=cfg.component.attention_dropout,
        )
        metrics = SeqEvalMetricsComputer(
            component.id_to_label, tagging_scheme=component.tagging_scheme, return_metrics_by_label=cfg.metrics.by_label
        )
        return component, metrics

    def training_items(self, cfg: Any, docs: list[Any]) -> list[Any]:
        if cfg.data.split_sentences:
            from medkit_exp.io.sentences import split_into_sentences

            return split_into_sentences(docs)
        return docs

    def test(self, cfg: Any, model_dir: Any, docs: list[Any], device: Any) -> dict[str, float]:
        from medkit_exp.text.ner import HFEntityMatcher

        matcher = HFEntityMatcher(model=model_dir, device=device, batch_size=cfg.component.predict_batch_size)
        predictions = predict_by_sentence(matcher, docs) if cfg.data.split_sentences else matcher.predict(docs)
        return score_predictions(docs, predictions, matcher.tagging_scheme)


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


def score_predictions(reference_docs, predictions, tagging_scheme: str = "iob2") -> dict[str, float]:
    """Exact-span scores (``precision``, ``f1``...) and token-level seqeval scores (``token_*``)."""
    from medkit_exp.text.metrics import ExactSpanEvaluator, SeqEvalEvaluator

    scores = dict(ExactSpanEvaluator().compute(reference_docs, predictions))
    token_scores = SeqEvalEvaluator(tagging_scheme=tagging_scheme).compute(reference_docs, predictions)
    scores.update({f"token_{k}": v for k, v in token_scores.items()})
    return scores
