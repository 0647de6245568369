"""medkit's module path of the NER metrics (``from medkit.text.metrics.ner import ...``).

The two classes here take medkit's arguments in medkit's order, with medkit's defaults, and
name and compute their scores as medkit does: ``macro_precision``, ``macro_recall``,
``macro_f1-score``, ``support`` (reference entities), ``accuracy`` and, per label,
``{label}_precision``, ``{label}_recall``, ``{label}_f1-score``, ``{label}_support``; IOB2
is scored leniently (conlleval's way), BILOU strictly. medkit code thus moves over by changing
its imports and reads the same keys. The project's own names (``f1``...) and strict scoring
are those of `medkit_exp.text.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.text.metrics import evaluators, seqeval_metrics

__all__ = ["SeqEvalEvaluator", "SeqEvalMetricsComputer"]


class SeqEvalMetricsComputer(seqeval_metrics.SeqEvalMetricsComputer):
    """The Trainer's NER metrics, as medkit computes and names them.

    Args:
        id_to_label: tag of each class id (``trainable.id_to_label``).
        tagging_scheme: ``"bilou"`` (medkit's default) or ``"iob2"``.
        return_metrics_by_label: add the per-label scores.
        average: ``"macro"`` (medkit's default) or ``"weighted"``; also names the keys.
    """

    def __init__(
        self,
        id_to_label: Mapping[int, str],
        tagging_scheme: str = "bilou",
        return_metrics_by_label: bool = True,
        average: str = "macro",
    ) -> None:
        super().__init__(id_to_label, tagging_scheme, average, return_metrics_by_label,
                         key_style="medkit", strict=tagging_scheme == "bilou")


class SeqEvalEvaluator(evaluators.SeqEvalEvaluator):
    """Predicted entities scored against reference documents, as medkit computes and names it.

    Args:
        tagging_scheme: ``"bilou"`` (medkit's default) or ``"iob2"``.
        return_metrics_by_label: add the per-label scores.
        average: ``"macro"`` (medkit's default) or ``"weighted"``.
        tokenizer: a HF fast tokenizer whose tokens are tagged (its special tokens are not,
            which changes only the accuracy); without one, as in medkit, every character is
            (the project's evaluator tags words).
        labels_remapping: labels renamed on both sides before scoring.

    Of overlapping entities the longest is tagged, where medkit lets the later one overwrite.
    """

    def __init__(
        self,
        tagging_scheme: str = "bilou",
        return_metrics_by_label: bool = True,
        average: str = "macro",
        tokenizer: Any | None = None,
        labels_remapping: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(tagging_scheme, return_metrics_by_label, average, _units(tokenizer), labels_remapping,
                         key_style="medkit", strict=tagging_scheme == "bilou")


def _units(tokenizer: Any | None) -> evaluators.WordTokenizer:
    """The character ranges tagged: every character, or the tokens of a HF tokenizer."""
    if tokenizer is None:
        return _characters
    return lambda text: [tuple(span) for span in tokenizer(text, add_special_tokens=False,
                                                            return_offsets_mapping=True)["offset_mapping"]]


def _characters(text: str) -> Sequence[tuple[int, int]]:
    return [(i, i + 1) for i in range(len(text))]
