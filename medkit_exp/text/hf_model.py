"""What the HF-based trainable components share: one forward pass with an optional loss."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from medkit_exp.training.batch import BatchData

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def hf_forward(
    model: torch.nn.Module, input_batch: BatchData, return_loss: bool, eval_mode: bool
) -> tuple[BatchData, torch.Tensor | None]:
    """Run a HF model on a collated batch: ``(BatchData(logits=...), loss or None)``.

    ``eval_mode`` switches dropout off and gradients off; the loss is the model's own (from
    ``labels``), so the batch must hold labels when ``return_loss``.
    """
    model.train(not eval_mode)
    inputs = {k: input_batch[k] for k in MODEL_INPUTS if k in input_batch}
    if return_loss:
        if "labels" not in input_batch:
            raise ValueError("forward(return_loss=True) needs a batch with labels: collate preprocessed items")
        inputs["labels"] = input_batch["labels"]
    with torch.no_grad() if eval_mode else contextlib.nullcontext():
        output = model(**inputs)
    return BatchData(logits=output.logits), (output.loss if return_loss else None)


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")  # BERT-likes, DistilBERT-likes


def attention_dropout_override(config: Any, attention_dropout: float | None) -> dict[str, float]:
    """``from_pretrained`` keyword arguments that set the model's attention dropout (none when None)."""
    if attention_dropout is None:
        return {}
    if not 0.0 <= attention_dropout < 1.0:
        raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout}; use 0 or 0.1, or leave it unset")
    for key in ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            return {key: float(attention_dropout)}
    raise ValueError(
        f"the {type(config).__name__} of this model has no attention dropout setting "
        f"({' or '.join(ATTENTION_DROPOUT_KEYS)}); leave attention_dropout unset for it"
    )

