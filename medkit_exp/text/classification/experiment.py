"""``component=hf_segment_classifier``: `HFSegmentClassifierTrainable` trained on whole documents.

`hf_segment_classifier` is the config node's ``_target_``. The component it returns takes
documents: ``source="entities"`` classifies every entity by its label (entity typing, e.g.
NCBI-disease's four mention types), ``source="attribute"`` the annotations carrying the
attribute ``attr_label`` by its value. The context around each mention is cut from the whole
document. It implements the app's optional hooks: the test split is scored with accuracy
and macro F1 beside the majority-class baseline of the train split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkit_exp.core.document import TextDocument
from medkit_exp.text.classification.hf_segment_classifier_trainable import HFSegmentClassifierTrainable
from medkit_exp.text.classification.items import SegmentItem, items_from_attributes, items_from_entities
from medkit_exp.text.classification.metrics import gold_labels
from medkit_exp.text.hf_model import PACKAGED_MINILM, resolve_model

SOURCES = ("entities", "attribute")


def segment_items(docs: Sequence[TextDocument], source: str, attr_label: str, segment_label: str | None = None,
                  labels: Sequence[str] | None = None) -> list[SegmentItem]:
    """The items of ``docs`` to classify, as ``source`` says (see the module docstring)."""
    if source == "entities":
        return items_from_entities(docs, labels=labels)
    if source == "attribute":
        return items_from_attributes(docs, attr_label, segment_label=segment_label, labels=labels)
    raise ValueError(f"source={source!r} is unknown; use {' or '.join(SOURCES)}")


class SegmentClassifierExperimentComponent(HFSegmentClassifierTrainable):
    """An `HFSegmentClassifierTrainable` whose items are documents (each gives its segments).

    Args (beyond the parent's): ``source``, ``segment_label`` and ``item_labels`` choose the
    segments of a document; ``train_labels`` (the train split's gold classes) give the
    majority baseline; ``predict_batch_size`` is the batch size of test prediction.
    """

    summary_metrics = ("accuracy", "macro_f1", "majority_accuracy", "majority_macro_f1")

    def __init__(self, *args: Any, source: str = "entities", segment_label: str | None = None,
                 item_labels: Sequence[str] | None = None, train_labels: Sequence[str] = (),
                 predict_batch_size: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.segment_label = segment_label
        self.item_labels = list(item_labels) if item_labels else None
        self.train_labels = list(train_labels)
        self.predict_batch_size = int(predict_batch_size)

    def items_of(self, docs: Sequence[TextDocument]) -> list[SegmentItem]:
        return segment_items(docs, self.source, self.attr_label, self.segment_label, self.item_labels)

    def preprocess(self, data_item: Any) -> Any:
        """The examples of every segment of a document (or the one example of a `SegmentItem`)."""
        if isinstance(data_item, TextDocument):
            return [super(SegmentClassifierExperimentComponent, self).preprocess(i) for i in self.items_of([data_item])]
        return super().preprocess(data_item)

    def score_test(self, model_dir: Path, items: Sequence[TextDocument], report_dir: Path | None = None,
                   predictions_path: Path | None = None) -> dict[str, float]:
        """Accuracy, macro F1 and per-class scores of the saved model, and the majority baseline;
        with ``report_dir``, its mistakes in ``analysis/errors.html`` and ``errors.tsv`` and the
        confusion matrix in ``plots/confusion_matrix.png`` there; with ``predictions_path``, each
        item's document id, gold and predicted class there as JSON Lines (`medkit_exp.text.predictions`)."""
        from medkit_exp.text.classification import ClassificationEvaluator, HFSegmentClassifier, majority_scores
        from medkit_exp.text.predictions import classification_records, write_records

        segments = self.items_of(list(items))
        if not segments:
            return {}
        classifier = HFSegmentClassifier(model=model_dir, device=self.device, batch_size=self.predict_batch_size)
        evaluator = ClassificationEvaluator(self.attr_label, classifier.labels, True)
        predictions = classifier.predict(segments)
        scores = evaluator.compute(segments, predictions)
        if predictions_path is not None:
            document_ids = [str(item.doc.id) if item.doc is not None else f"item-{i}"
                            for i, item in enumerate(segments)]
            write_records(predictions_path, classification_records(
                document_ids, gold_labels(segments, self.attr_label), [str(p.label) for p in predictions],
                Path(predictions_path).stem))
        if report_dir is not None:
            self._write_report(Path(report_dir), segments, predictions, classifier.labels, scores)
        if self.train_labels:
            scores.update(majority_scores(self.train_labels, gold_labels(segments, self.attr_label)))
        scores["items"] = float(len(segments))
        return scores


    def _write_report(self, folder: Path, segments: list[SegmentItem], predictions: list[Any], labels: list[str],
                      scores: dict[str, float]) -> None:
        from medkit_exp.text.error_report import ErrorRow, MarkedSpan, SentenceLocator, highlighted, write_error_report
        from medkit_exp.training.plots import confusion_matrix

        gold = gold_labels(segments, self.attr_label)
        predicted = [p.label for p in predictions]
        confusion_matrix(labels, gold, predicted, folder / "plots" / "confusion_matrix.png")
        rows = []
        locators: dict[int, SentenceLocator] = {}  # one per document: its sentences are split once
        for item, g, p in zip(segments, gold, predictions, strict=True):
            if g == p.label:
                continue
            start, end = item.segment.spans[0].start, item.segment.spans[-1].end
            text = item.doc.text if item.doc is not None else item.segment.text
            if item.doc is None:
                start, end = 0, len(text)
            key = id(item.doc) if item.doc is not None else id(item)
            if key not in locators:
                locators[key] = SentenceLocator(text)
            window = locators[key].around(start, end)
            marks = [MarkedSpan(start, end, "pred", f"gold {g}, predicted {p.label}")]
            rows.append(ErrorRow("wrong_label", g, item.segment.text, str(item.doc.id if item.doc else ""), start, end,
                                 g, p.label, highlighted(text, window, marks), text[window[0]:window[1]], p.score))
        counts = {"test items": len(segments), "accuracy": scores.get("accuracy", float("nan")),
                  "macro F1": scores.get("macro_f1", float("nan"))}
        write_error_report(rows, folder / "analysis", "Test errors of the best checkpoint (segment classes)", counts)


def hf_segment_classifier(
    model: str = PACKAGED_MINILM,
    source: str = "entities",
    attr_label: str = "type",
    segment_label: str | None = None,
    context: str = "sentence",
    context_chars: int = 200,
    start_marker: str = "[E]",
    end_marker: str = "[/E]",
    max_length: int | None = 128,
    labels: list[str] | None = None,
    predict_batch_size: int = 64,
    fast_dropout: bool = True,
    *,
    train_data: Sequence[TextDocument] = (),
    device: Any = "cpu",
) -> SegmentClassifierExperimentComponent:
    """The ``hf_segment_classifier`` component: classes ``labels`` (default: those of the train
    split's segments), each mention shown in its ``context`` between the two markers."""
    train_items = segment_items(train_data, source, attr_label, segment_label, labels)
    train_labels = gold_labels(train_items, attr_label)
    classes = list(labels) if labels else sorted(set(train_labels))
    if len(classes) < 2:
        raise ValueError(f"at least 2 classes are needed, the train split gives {classes} (source={source}); "
                         "check data.labels, data.label_map and component.source")
    return SegmentClassifierExperimentComponent(
        resolve_model(model), classes, attr_label=attr_label, context=context, context_chars=context_chars,
        start_marker=start_marker, end_marker=end_marker, max_length=max_length, device=device,
        source=source, segment_label=segment_label, item_labels=labels, train_labels=train_labels,
        predict_batch_size=predict_batch_size, fast_dropout=fast_dropout,
    )
