"""``metrics=perplexity``: how well a masked language model predicts the tokens it did not see."""

from __future__ import annotations

import math
from typing import Any

from medkit_exp.training.batch import BatchData


class PerplexityMetricsComputer:
    """Perplexity over the masked tokens (``exp`` of their mean cross-entropy), that mean itself
    (``mlm_loss``), and the share of masked tokens predicted exactly (``masked_accuracy``).

    Every masked token counts the same, whatever batch it fell in: the sums come from the
    component's forward pass (``loss_sum``, ``masked_tokens``, ``correct``), not from batch means.
    """

    def prepare_batch(self, model_output: BatchData, input_batch: BatchData) -> dict[str, list[Any]]:
        """The batch's summed loss, masked-token count and correct predictions."""
        return {key: [float(model_output[key].sum())] for key in ("loss_sum", "masked_tokens", "correct")}

    def compute(self, all_data: dict[str, list[Any]]) -> dict[str, float]:
        """``perplexity``, ``mlm_loss`` and ``masked_accuracy`` over every masked token."""
        tokens = sum(all_data.get("masked_tokens", []))
        if not tokens:
            return {}
        mean_loss = sum(all_data["loss_sum"]) / tokens
        return {"perplexity": math.exp(min(mean_loss, 700.0)), "mlm_loss": mean_loss,
                "masked_accuracy": sum(all_data["correct"]) / tokens}

    @classmethod
    def for_component(cls, component: Any) -> PerplexityMetricsComputer:
        """The metrics computer of ``metrics=perplexity``; the component must be a masked language model."""
        if not callable(getattr(component, "pack_examples", None)) or not hasattr(component, "masking"):
            raise ValueError(f"metrics=perplexity scores a masked language model, and {type(component).__name__} "
                             "is not one; use it with component=hf_mlm")
        return cls()
