"""Attention for training HF encoders on CPU with attention dropout: `fast_dropout` inside.

With attention dropout on, PyTorch's scaled-dot-product attention cannot use its fused CPU
kernel and falls back to its reference path, which draws the dropout mask with the slow
``bernoulli_`` (`medkit_exp.training.fast_dropout`) and guards every softmax row against a
fully masked row. `use_fast_training_attention` gives a model an attention implementation
(registered with transformers' ``AttentionInterface``) that, while training on CPU with
dropout, computes the same attention explicitly with `fast_dropout`: a MiniLM training step
on NCBI-disease is about a fifth faster. Everywhere else (evaluation, inference, GPUs,
causal or grouped-query attention) it hands over to transformers' own ``sdpa`` function.
The setting is not saved with the model: a saved checkpoint loads with ``sdpa`` as before.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import torch

from medkit_exp.training.fast_dropout import fast_dropout

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TRAINING_ATTENTION = "medkit_exp_cpu_training"


def _explicit_attention_applies(module: Any, query: torch.Tensor, key: torch.Tensor, dropout: float,
                                is_causal: bool | None, kwargs: dict[str, Any]) -> bool:
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    return (module.training and dropout > 0 and query.device.type == "cpu" and not causal
            and query.shape[1] == key.shape[1] and kwargs.get("position_bias") is None
            and kwargs.get("softcap") is None)


def cpu_training_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0,
                           scaling: float | None = None, is_causal: bool | None = None,
                           **kwargs: Any) -> tuple[torch.Tensor, None]:
    """softmax(q k^T * scaling + mask) v with `fast_dropout` on the probabilities; transformers' sdpa otherwise.

    ``query``, ``key``, ``value``: (batch, heads, length, head size); ``attention_mask`` as
    transformers' sdpa mask builds it (None, boolean with True where attention is allowed, or
    additive floats). Returns the output as (batch, length, heads, head size), like sdpa's.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _explicit_attention_applies(module, query, key, dropout, is_causal, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scaling)
    if attention_mask is not None:
        # In place, and as an additive bias: neither a masked_fill nor its backward copies the scores.
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype, device=scores.device).masked_fill_(
                ~attention_mask, torch.finfo(scores.dtype).min)
        scores.add_(attention_mask)
    probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


@cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(TRAINING_ATTENTION, cpu_training_attention)
    AttentionMaskInterface.register(TRAINING_ATTENTION, sdpa_mask)


def use_fast_training_attention(model: PreTrainedModel) -> bool:
    """Switch a transformers model that uses ``sdpa`` attention to `cpu_training_attention`.

    Returns whether it was switched: models on another attention implementation, or that do
    not take a custom one, keep theirs.
    """
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) not in ("sdpa", TRAINING_ATTENTION):
        return False
    _register()
    try:
        model.set_attn_implementation(TRAINING_ATTENTION)
    except (AttributeError, ValueError, TypeError, ImportError):
        return False
    return model.config._attn_implementation == TRAINING_ATTENTION
