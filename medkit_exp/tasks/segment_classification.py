"""Segment classification with `HFSegmentClassifierTrainable` (``component=hf_segment_classifier``).

Items are the annotations of whole documents (`SegmentItem`), chosen by
``component.source``: ``entities`` classifies every entity by its label (entity typing, e.g.
NCBI-disease's four mention types), ``attribute`` classifies the annotations carrying the
attribute ``component.attr_label`` by its value. The context around each mention is cut
from the whole document by ``component.context``, so ``data.split_sentences`` plays no part.

`labels()` also records the train class distribution, which `test()` uses for the
majority-class baseline (``majority_accuracy``, ``majority_macro_f1``).
"""

from __future__ import annotations

from typing import Any

from medkit_exp.errors import UserError

SOURCES = ("entities", "attribute")


class SegmentClassificationTask:
    """The app's task for ``component.name=hf_segment_classifier`` (see the module docstring)."""

    def __init__(self) -> None:
        self.train_labels: list[str] | None = None

    def labels(self, cfg: Any, dataset: Any) -> list[str]:
        from medkit_exp.text.classification.metrics import gold_labels

        items = self.training_items(cfg, dataset.splits["train"])
        self.train_labels = gold_labels(items, cfg.component.attr_label)
        labels = list(cfg.component.labels) if cfg.component.labels else sorted(set(self.train_labels))
        if len(labels) < 2:
            raise UserError(
                f"component=hf_segment_classifier needs at least 2 classes, the train split gives {labels} "
                f"(component.source={cfg.component.source}); check data.labels, data.label_map and component.source"
            )
        return labels

    def build(self, cfg: Any, labels: list[str], device: Any) -> tuple[Any, Any]:
        from medkit_exp.app import resolve_model
        from medkit_exp.text.classification import ClassificationMetricsComputer, HFSegmentClassifier

        if cfg.metrics.name != "classification":
            raise UserError(
                f"component=hf_segment_classifier scores classes, not metrics={cfg.metrics.name}: add metrics=classification"
            )
        c = cfg.component
        component = HFSegmentClassifier.make_trainable(  # a bad setting's ValueError becomes the app's one line
            resolve_model(c.model), labels=labels, attr_label=c.attr_label, context=c.context,
            context_chars=c.context_chars, start_marker=c.start_marker, end_marker=c.end_marker,
            max_length=c.max_length, device=device,
        )
        return component, ClassificationMetricsComputer(component.id_to_label, cfg.metrics.by_label)

    def training_items(self, cfg: Any, docs: list[Any]) -> list[Any]:
        from medkit_exp.text.classification import items_from_attributes, items_from_entities

        c = cfg.component
        labels = list(c.labels) if c.labels else None
        if c.source == "entities":
            return items_from_entities(docs, labels=labels)
        if c.source == "attribute":
            return items_from_attributes(docs, c.attr_label, segment_label=c.segment_label, labels=labels)
        raise UserError(f"component.source={c.source!r} is unknown; use {' or '.join(SOURCES)}")

    def test(self, cfg: Any, model_dir: Any, docs: list[Any], device: Any) -> dict[str, float]:
        from medkit_exp.text.classification import ClassificationEvaluator, HFSegmentClassifier, majority_scores
        from medkit_exp.text.classification.metrics import gold_labels

        items = self.training_items(cfg, docs)
        if not items:
            return {}
        classifier = HFSegmentClassifier(model=model_dir, device=device, batch_size=cfg.component.predict_batch_size)
        evaluator = ClassificationEvaluator(cfg.component.attr_label, classifier.labels, cfg.metrics.by_label)
        scores = evaluator.compute(items, classifier.predict(items))
        if self.train_labels:
            scores.update(majority_scores(self.train_labels, gold_labels(items, cfg.component.attr_label)))
        scores["items"] = float(len(items))
        return scores

