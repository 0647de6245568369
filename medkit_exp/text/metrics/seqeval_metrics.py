"""Entity-level scores of tag sequences with seqeval, and the NER metrics computer of the Trainer.

Scores are strict (seqeval ``mode="strict"``): an entity counts only when its tags form a
valid mention of the scheme (IOB2, or BILOU) with the exact same boundaries and label.
`seqeval_scores` can also score and name its results as medkit does (`medkit_exp.text.metrics.ner`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.text.ner.tagging import OUTSIDE, check_scheme, labels_of_tags

AVERAGES = ("micro", "macro", "weighted")
KEY_STYLES = ("medkit_exp", "medkit")
IGNORE_INDEX = -100


PIECE_LENGTH = 512  # tags per piece a long sequence is cut into for seqeval (see split_at_shared_outside)


def split_at_shared_outside(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                            piece_length: int = PIECE_LENGTH) -> tuple[list[list[str]], list[list[str]]]:
    """The sequences cut into pieces of about ``piece_length`` tags, each cut made just after a
    position tagged ``O`` on both sides, so that no entity of either side is cut: the entities,
    hence every score, are those of the whole sequences.

    seqeval's strict mode copies the rest of a sequence at every entity it reads, which makes a
    whole document scored as one sequence quadratic in its length (hours for a 700k-character
    document); pieces keep the cost linear.
    """
    true_pieces: list[list[str]] = []
    pred_pieces: list[list[str]] = []
    for true_seq, pred_seq in zip(y_true, y_pred, strict=True):
        start = 0
        for i in range(piece_length - 1, len(true_seq) - 1):
            if i - start + 1 >= piece_length and true_seq[i] == OUTSIDE and pred_seq[i] == OUTSIDE:
                true_pieces.append(list(true_seq[start : i + 1]))
                pred_pieces.append(list(pred_seq[start : i + 1]))
                start = i + 1
        true_pieces.append(list(true_seq[start:]))
        pred_pieces.append(list(pred_seq[start:]))
    return true_pieces, pred_pieces


def seqeval_scores(
    y_true: Sequence[Sequence[str]],
    y_pred: Sequence[Sequence[str]],
    tagging_scheme: str = "iob2",
    average: str = "micro",
    return_metrics_by_label: bool = True,
    labels: Sequence[str] | None = None,
    key_style: str = "medkit_exp",
    strict: bool = True,
) -> dict[str, float]:
    """``precision``, ``recall``, ``f1``, ``accuracy`` and, per label, ``{label}_precision``,
    ``{label}_recall``, ``{label}_f1``, ``{label}_support``.

    ``labels`` fixes which per-label keys are returned (absent labels score 0); by default
    the labels seen in ``y_true`` or ``y_pred``. Without any entity on either side, all
    scores are 0 (accuracy excepted).

    ``key_style="medkit"`` names the scores as medkit does: ``{average}_precision``,
    ``{average}_recall``, ``{average}_f1-score``, ``support`` (reference entities),
    ``accuracy``, and per label ``{label}_f1-score``. ``strict=False`` scores IOB2 as conlleval
    does (an ``I-`` without its ``B-`` still starts an entity), as medkit does for IOB2.
    """
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import BILOU, IOB2

    scheme = check_scheme(tagging_scheme)
    check_options(average, key_style)
    if len(y_true) != len(y_pred) or any(len(t) != len(p) for t, p in zip(y_true, y_pred, strict=True)):
        raise ValueError("y_true and y_pred must hold sequences of the same lengths")
    y_true, y_pred = split_at_shared_outside(y_true, y_pred)
    nb_tags = sum(len(seq) for seq in y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accuracy = float(accuracy_score(y_true, y_pred)) if nb_tags else 0.0
        has_entities = any(tag != "O" for seq in y_true + y_pred for tag in seq)
        # Lenient (conlleval) mode takes no scheme: seqeval reads the tags' prefixes as IOB.
        mode = {"mode": "strict", "scheme": BILOU if scheme == "bilou" else IOB2} if strict else {}
        report = {}
        if has_entities:
            report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **mode)
    overall = report.get(f"{average} avg", {})
    if key_style == "medkit":
        metrics = {f"{average}_{name}": _number(overall.get(name)) for name in ("precision", "recall", "f1-score")}
        metrics.update(support=int(overall.get("support", 0)), accuracy=accuracy)
    else:
        metrics = {
            "precision": _number(overall.get("precision")),
            "recall": _number(overall.get("recall")),
            "f1": _number(overall.get("f1-score")),
            "accuracy": accuracy,
        }
    if return_metrics_by_label:
        if labels is None:
            labels = sorted(set(labels_of_tags([tag for seq in y_true + y_pred for tag in seq])))
        f1_key = "f1-score" if key_style == "medkit" else "f1"
        for label in labels:
            row = report.get(label, {})
            metrics[f"{label}_precision"] = _number(row.get("precision"))
            metrics[f"{label}_recall"] = _number(row.get("recall"))
            metrics[f"{label}_{f1_key}"] = _number(row.get("f1-score"))
            metrics[f"{label}_support"] = _number(row.get("support"))
    return metrics


def check_options(average: str, key_style: str = "medkit_exp") -> None:
    """Raise ``ValueError`` naming the allowed values of a bad ``average`` or ``key_style``."""
    if average not in AVERAGES:
        raise ValueError(f"unknown average {average!r}: use one of {', '.join(AVERAGES)}")
    if key_style not in KEY_STYLES:
        raise ValueError(f"unknown key_style {key_style!r}: use one of {', '.join(KEY_STYLES)}")


def _number(value: Any) -> float:
    """A plain float, 0.0 for missing or NaN values."""
    if value is None:
        return 0.0
    value = float(value)
    return 0.0 if math.isnan(value) else value


class SeqEvalMetricsComputer:
    """Strict entity-level metrics of a token-classification model, for the `Trainer`.

    Args:
        id_to_label: tag of each class id, or a component exposing ``id_to_label`` (and
            ``tagging_scheme``), e.g. an `HFEntityMatcherTrainable`.
        tagging_scheme: ``"iob2"`` or ``"bilou"``; by default the component's, else iob2.
        average: ``"micro"``, ``"macro"`` or ``"weighted"`` for the overall scores.
        return_metrics_by_label: add ``{label}_precision/_recall/_f1/_support``.
        key_style, strict: how scores are named and entities matched (see `seqeval_scores`).
    """

    @classmethod
    def for_component(cls, component: Any, by_label: bool = True, average: str = "micro") -> SeqEvalMetricsComputer:
        """The metrics of a NER component's tags (``metrics=seqeval``): its ``id_to_label`` and scheme."""
        if getattr(component, "tagging_scheme", None) is None:
            raise ValueError(f"seqeval scores tag sequences, and {type(component).__name__} has no tagging_scheme; "
                             "use metrics=classification, metrics=perplexity (component=hf_mlm) or a metrics "
                             "computer of your own")
        return cls(component.id_to_label, tagging_scheme=getattr(component, "tagging_scheme", None),
                   average=average, return_metrics_by_label=by_label)

    def __init__(
        self,
        id_to_label: Mapping[int, str] | Any,
        tagging_scheme: str | None = None,
        average: str = "micro",
        return_metrics_by_label: bool = True,
        *,
        key_style: str = "medkit_exp",
        strict: bool = True,
    ) -> None:
        if not isinstance(id_to_label, Mapping):
            component = id_to_label
            if not hasattr(component, "id_to_label"):
                raise TypeError(
                    f"id_to_label must be a dict or a component with id_to_label, got {type(component).__name__}"
                )
            id_to_label = component.id_to_label
            tagging_scheme = tagging_scheme or getattr(component, "tagging_scheme", None)
        self.id_to_label = {int(k): v for k, v in id_to_label.items()}
        self.tagging_scheme = check_scheme(tagging_scheme or "iob2")
        check_options(average, key_style)
        self.average = average
        self.return_metrics_by_label = return_metrics_by_label
        self.key_style, self.strict = key_style, strict
        self.labels = labels_of_tags([self.id_to_label[i] for i in sorted(self.id_to_label)])

    def prepare_batch(self, model_output: Any, input_batch: Any) -> dict[str, list[list[str]]]:
        """Gold and predicted tag sequences of a batch, at positions whose label is not -100."""
        predictions = model_output["logits"].argmax(dim=-1).cpu().tolist()
        gold = input_batch["labels"].cpu().tolist()
        y_true, y_pred = [], []
        for gold_row, pred_row in zip(gold, predictions, strict=True):
            keep = [i for i, label in enumerate(gold_row) if label != IGNORE_INDEX]
            y_true.append([self.id_to_label[gold_row[i]] for i in keep])
            y_pred.append([self.id_to_label[pred_row[i]] for i in keep])
        return {"y_true": y_true, "y_pred": y_pred}

    def compute(self, all_data: dict[str, list[Any]]) -> dict[str, float]:
        """Scores over all the prepared batches of a phase."""
        return seqeval_scores(
            all_data.get("y_true", []),
            all_data.get("y_pred", []),
            tagging_scheme=self.tagging_scheme,
            average=self.average,
            return_metrics_by_label=self.return_metrics_by_label,
            labels=self.labels,
            key_style=self.key_style,
            strict=self.strict,
        )
