"""How a run computes: its float precision (``fp32``, ``bf16`` autocast, or ``auto``) and
whether its model is compiled.

``auto`` picks bf16 where the hardware computes it natively (a GPU that supports it, or a
CPU with AMX or AVX512-BF16 units, where oneDNN runs bf16 matrix products several times
faster than fp32) and fp32 elsewhere, where bf16 would be emulated and slower.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "auto")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_bf16_units() -> tuple[str, ...]:
    """The bf16 units this CPU reports (``/proc/cpuinfo`` flags; none where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``(fp32 or bf16, why)`` for the setting ``precision`` on ``device``."""
    if precision != "auto":
        return precision, "asked"
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        return ("bf16", "auto: the GPU computes bf16") if native else ("fp32", "auto: no native bf16 on this GPU")
    units = cpu_bf16_units() if device.type == "cpu" else ()
    if units:
        return "bf16", f"auto: the CPU has {'/'.join(units)}"
    return "fp32", f"auto: no native bf16 on {device.type}"


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context of a resolved ``precision`` (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(owner: Any, what: str = "the component") -> None:
    """Compile ``owner.model`` in place with torch.compile (Inductor, dynamic shapes).

    In place (``nn.Module.compile``), so the module keeps its parameters, state dict and
    ``save_pretrained``; only its forward is replaced by the compiled one.
    """
    model = getattr(owner, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"compile=true compiles the `model` attribute (a torch.nn.Module) of {what}, and "
                         f"{type(owner).__name__} has none; turn compile off")
    model.compile(dynamic=True)
