"""``component=hf_ner``: `HFEntityMatcherTrainable` with what an experiment needs beyond training.

`hf_ner` is the config node's ``_target_``: it finds the labels in the training documents
when none are given and resolves the packaged MiniLM. The component it returns trains on
documents (optionally sentence by sentence) and implements the app's optional hooks
(`medkit_exp.training.protocols.ExperimentHooks`): the test split is scored on entities
with exact character spans, and the best checkpoint is logged as an MLflow pyfunc model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkit_exp.core.document import TextDocument
from medkit_exp.text.hf_model import PACKAGED_MINILM, resolve_model
from medkit_exp.text.ner.hf_entity_matcher_trainable import HFEntityMatcherTrainable
from medkit_exp.training.phases import ERROR_REPORT, phase


class NerExperimentComponent(HFEntityMatcherTrainable):
    """An `HFEntityMatcherTrainable` that can also split documents into sentences for
    training, score test documents and log itself as an MLflow model.

    Args (beyond the parent's):
        split_sentences: train on sentences instead of whole documents, and predict the test
            documents sentence by sentence too.
        predict_batch_size: windows per forward pass when predicting the test documents.
        predict_precision: precision of that prediction and of the logged MLflow model
            (``fp32``, ``bf16``, ``int8``, ``auto``; see `HFEntityMatcher`).
    """

    summary_metrics = ("precision", "recall", "f1")
    test_note = "exact character spans"

    def __init__(self, *args: Any, split_sentences: bool = False, predict_batch_size: int = 32,
                 predict_precision: str = "fp32", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from medkit_exp.text.hf_model import inference_precision

        self.split_sentences = bool(split_sentences)
        self.predict_batch_size = int(predict_batch_size)
        inference_precision(predict_precision, self.device)  # a bad value fails now, not after training
        self.predict_precision = predict_precision

    def preprocess(self, data_item: TextDocument) -> list[dict[str, Any]]:
        """Tagged windows of a document, or of each of its sentences with ``split_sentences``."""
        if not self.split_sentences:
            return super().preprocess(data_item)
        from medkit_exp.io.sentences import split_into_sentences

        windows = []
        for sentence in split_into_sentences([data_item]):
            windows.extend(super().preprocess(sentence))
        return windows

    def score_test(self, model_dir: Path, items: Sequence[TextDocument], report_dir: Path | None = None,
                   predictions_path: Path | None = None) -> dict[str, float]:
        """Exact-span and token scores of the model saved in ``model_dir`` on whole test documents;
        with ``report_dir``, its mistakes in ``analysis/errors.html`` and ``errors.tsv`` there; with
        ``predictions_path``, each document's gold and predicted entities there as JSON Lines
        (`medkit_exp.text.predictions`: what the exact-span scores are recomputed from), with the
        text and the label probabilities of each of its words (what annotation suspects are ranked by)."""
        from medkit_exp.text.error_report import write_error_report
        from medkit_exp.text.ner.evaluation import (
            entity_errors,
            predict_documents,
            predict_documents_with_probabilities,
            score_predictions,
        )
        from medkit_exp.text.ner.hf_entity_matcher import HFEntityMatcher
        from medkit_exp.text.predictions import ner_records, write_records

        docs = list(items)
        matcher = HFEntityMatcher(model=model_dir, device=self.device, batch_size=self.predict_batch_size,
                                  precision=self.predict_precision)
        if predictions_path is None:
            predictions = predict_documents(matcher, docs, self.split_sentences)
        else:
            predictions, words = predict_documents_with_probabilities(matcher, docs, self.split_sentences)
            write_records(predictions_path, ner_records(docs, predictions, Path(predictions_path).stem, words))
        scores = score_predictions(docs, predictions, matcher.tagging_scheme)
        if report_dir is not None:
            counts = {"test documents": len(docs), "gold entities": sum(len(d.anns.entities) for d in docs),
                      "predicted entities": sum(len(p) for p in predictions), "exact-span precision":
                      scores["precision"], "exact-span recall": scores["recall"], "exact-span F1": scores["f1"]}
            with phase(ERROR_REPORT):  # what a stop signal now interrupts (medkit_exp.training.phases)
                write_error_report(entity_errors(docs, predictions), Path(report_dir) / "analysis",
                                   "Test errors of the best checkpoint (exact character spans)", counts)
        return scores

    def log_mlflow_model(self, model_dir: Path, *, step: int = 0, register_as: str | None = None) -> Any:
        """Log the model saved in ``model_dir`` as a pyfunc model of the active MLflow run."""
        from medkit_exp.text.ner.model_logging import log_entity_matcher_model

        return log_entity_matcher_model(model_dir, register_as=register_as, batch_size=self.predict_batch_size,
                                        split_sentences=self.split_sentences, step=step,
                                        precision=self.predict_precision)


def entity_labels(documents: Sequence[TextDocument]) -> list[str]:
    """The entity labels found in ``documents``, sorted."""
    return sorted({e.label for doc in documents for e in doc.anns.entities})


def hf_ner(
    model: str = PACKAGED_MINILM,
    labels: list[str] | None = None,
    tagging_scheme: str = "iob2",
    tag_subtokens: bool = False,
    max_length: int | None = 128,
    window_stride: int | None = None,
    attention_dropout: float | None = None,
    fast_dropout: bool = True,
    split_sentences: bool = False,
    predict_batch_size: int = 32,
    predict_precision: str = "fp32",
    *,
    train_data: Sequence[TextDocument] = (),
    device: Any = "cpu",
) -> NerExperimentComponent:
    """The ``hf_ner`` component: a token classifier over ``model`` for ``labels`` (default: the
    entity labels of ``train_data``). ``max_length`` is the tokens per window (longer texts are
    split into overlapping windows, ``window_stride`` tokens apart); ``attention_dropout`` 0 lets
    PyTorch use its fused attention kernel (less memory); ``fast_dropout`` false draws dropout
    masks with PyTorch's own (slower) CPU dropout; ``predict_precision`` is the precision
    of test prediction and of the logged model (``fp32``, ``bf16``, ``int8``, ``auto``)."""
    labels = list(labels) if labels else entity_labels(train_data)
    if not labels:
        raise ValueError("no entity label: the training documents have no entity and component.labels is empty")
    return NerExperimentComponent(
        resolve_model(model),
        labels,
        tagging_scheme=tagging_scheme,
        tag_subtokens=tag_subtokens,
        tokenizer_max_length=max_length,
        window_stride=window_stride,
        attention_dropout=attention_dropout,
        fast_dropout=fast_dropout,
        device=device,
        split_sentences=split_sentences,
        predict_batch_size=predict_batch_size,
        predict_precision=predict_precision,
    )
