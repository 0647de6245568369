"""Masked-language-model training (task-adaptive pretraining): ``component=hf_mlm``, ``metrics=perplexity``."""

from medkit_exp.text.mlm.masking import MaskingSettings, mask_batch, mask_block
from medkit_exp.text.mlm.metrics import PerplexityMetricsComputer
from medkit_exp.text.mlm.trainable import HFMaskedLMTrainable

__all__ = ["HFMaskedLMTrainable", "MaskingSettings", "PerplexityMetricsComputer", "mask_batch", "mask_block"]
