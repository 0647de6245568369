"""Dropout whose mask costs a third of PyTorch's on CPU.

On CPU, ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, about 4.5 ns an
element on this project's machines: a fifth of a MiniLM training step went into drawing
dropout masks (bench/README.md, "Where the time goes"). `fast_dropout` draws 16 random bits
an element from torch's own generator (so ``torch.manual_seed`` still makes a run
repeatable) and keeps an element when they clear a threshold: the same Bernoulli mask and
``1 / (1 - p)`` scaling, with ``p`` rounded to a multiple of 1/65536 (0.1 becomes
0.100006). On other devices PyTorch's own dropout is already fused, and is used as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RANDOM_BITS = 16
_LEVELS = 1 << RANDOM_BITS


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale``, keeping the mask as bytes (one an element) for backward.

    On CPU, operations on boolean tensors are not vectorized (a ``torch.where`` or a product
    with the mask costs 8x a product of two float tensors), but reading the same bytes as
    ``uint8`` is: so the mask becomes a float tensor of 0 and ``scale`` before the product.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        keep_bytes = keep.view(torch.uint8)
        ctx.save_for_backward(keep_bytes)
        ctx.scale = scale
        return x * keep_bytes.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep_bytes,) = ctx.saved_tensors
        return grad * keep_bytes.to(grad.dtype).mul_(ctx.scale), None, None


def dropped_levels(p: float) -> int:
    """How many of the 65,536 values of a 16-bit draw drop an element: ``p`` rounded."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return round(p * _LEVELS)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Differentiable in ``x``; ``x`` itself when not ``training``; PyTorch's own dropout off the
    CPU, and for a ``p`` that rounds to 1 (everything dropped).
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    dropped = dropped_levels(p)
    if dropped == 0:
        return x
    if dropped == _LEVELS:
        return F.dropout(x, p, training=True)
    count = x.numel()
    # random_ over the full int64 range: 64 uniform bits a word, read as four 16-bit draws.
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    draws = words.view(torch.int16)[:count].view(x.shape)
    keep = draws >= dropped - (_LEVELS // 2)  # int16 draws are uniform over [-32768, 32767]
    return _MaskedScale.apply(x, keep, _LEVELS / (_LEVELS - dropped))


class FastDropout(torch.nn.Dropout):
    """`torch.nn.Dropout` computed with `fast_dropout` (the same ``p``; ``inplace`` is ignored)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fast_dropout(input, self.p, self.training)


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace every plain `torch.nn.Dropout` of ``model`` by a `FastDropout`; how many were replaced.

    The modules have no parameters or buffers, so the state dict and saved models are unchanged.
    """
    replaced = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(module, name, FastDropout(child.p))
                replaced += 1
    return replaced
