"""Named entity recognition: tagging schemes, and a trainable HF token-classification matcher.

`HFEntityMatcher` (inference) and `HFEntityMatcherTrainable` (fine-tuning) import torch and
transformers, so they are loaded lazily on first access; `tagging` is pure Python.
"""

from __future__ import annotations

from typing import Any

from medkit_exp.text.ner.tagging import build_tag_set, decode_tags, encode_tags

__all__ = ["HFEntityMatcher", "HFEntityMatcherTrainable", "build_tag_set", "decode_tags", "encode_tags"]

_LAZY = {
    "HFEntityMatcher": "medkit_exp.text.ner.hf_entity_matcher",
    "HFEntityMatcherTrainable": "medkit_exp.text.ner.hf_entity_matcher_trainable",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
