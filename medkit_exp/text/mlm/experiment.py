"""``component=hf_mlm``: masked-language-model training of any HF encoder on a corpus's text.

Task-adaptive pretraining (Gururangan et al. 2020): continue a general encoder's pretraining on
the texts of the task, then start ``hf_ner`` or ``hf_segment_classifier`` from the saved folder
(or from the run, ``component.model=runs:/<run id>/...``). Any reader's documents serve (their
annotations are ignored), or ``data=text`` (plain text files).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkit_exp.text.hf_model import PACKAGED_MINILM, resolve_model
from medkit_exp.text.mlm.masking import MaskingSettings
from medkit_exp.text.mlm.trainable import HFMaskedLMTrainable


class MaskedLMExperimentComponent(HFMaskedLMTrainable):
    """`HFMaskedLMTrainable` with what the app shows of it: its scores are perplexities."""

    summary_metrics = ("perplexity", "masked_accuracy")
    test_note = "masked tokens, fixed masks"

    def log_mlflow_model(self, model_dir: Path, *, step: int = 0, register_as: str | None = None) -> Any:
        """Log the HF folder saved in ``model_dir`` as an MLflow model of the active run (a fill-mask
        pyfunc), so that ``models:/`` URIs and the registry can name it as a starting point."""
        from medkit_exp.text.mlm.model_logging import log_masked_lm_model

        return log_masked_lm_model(model_dir, register_as=register_as, step=step)


def hf_mlm(
    model: str = PACKAGED_MINILM,
    max_length: int | None = 128,
    mlm_probability: float = 0.15,
    mask_share: float = 0.8,
    random_share: float = 0.1,
    whole_word_masking: bool = True,
    pack: bool = True,
    attention_dropout: float | None = None,
    fast_dropout: bool = True,
    *,
    train_data: Sequence[Any] = (),
    device: Any = "cpu",
) -> MaskedLMExperimentComponent:
    """The ``hf_mlm`` component: ``model`` trained to predict ``mlm_probability`` of the tokens of
    blocks of ``max_length`` tokens (texts packed together with ``pack``), whole words at a time with
    ``whole_word_masking``; of the predicted tokens ``mask_share`` are shown as the mask token and
    ``random_share`` as a random one."""
    masking = MaskingSettings(rate=mlm_probability, mask_share=mask_share, random_share=random_share,
                              whole_words=whole_word_masking)
    return MaskedLMExperimentComponent(resolve_model(model), max_length=max_length, masking=masking, pack=pack,
                                       attention_dropout=attention_dropout, fast_dropout=fast_dropout, device=device)
