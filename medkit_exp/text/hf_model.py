"""What the HF-based trainable components share: one forward pass with an optional loss."""

from __future__ import annotations

import contextlib

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
