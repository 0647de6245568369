"""What a NER checkpoint needs besides the HF weights, and the window overlap.

A checkpoint folder written by `HFEntityMatcherTrainable.save` is a plain HF model folder
(``config.json`` with the tags as ``id2label``, weights, tokenizer) plus
``medkit_exp_ner.json`` (`NerSettings`): tagging scheme, sub-token policy, entity labels,
window length and stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkit_exp.text.ner.tagging import check_scheme, infer_scheme, labels_of_tags, split_tag
from medkit_exp.text.settings_io import load_settings, save_settings

SETTINGS_FILE = "medkit_exp_ner.json"


@dataclass
class NerSettings:
    """Tagging settings saved next to the model (``medkit_exp_ner.json``)."""

    tagging_scheme: str
    tag_subtokens: bool
    labels: list[str]
    tags: list[str]
    max_length: int | None = None
    window_stride: int | None = None
    format_version: int = 1

    def save(self, directory: str | Path) -> None:
        save_settings(self, Path(directory) / SETTINGS_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> NerSettings | None:
        """The settings saved in ``directory``, or None when it has none (a plain HF model)."""
        settings = load_settings(cls, Path(directory) / SETTINGS_FILE)
        if settings is not None:
            settings.tagging_scheme = check_scheme(settings.tagging_scheme)
        return settings

    @classmethod
    def from_model_config(cls, config: Any) -> NerSettings:
        """Settings of a plain HF token-classification model, read from its ``id2label``.

        The scheme is BILOU when tags use L-/U- (or E-/S-), else IOB2; sub-tokens are assumed
        untagged (each word read from its first sub-token).
        """
        id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
        tags = [id2label[i] for i in sorted(id2label)]
        try:
            scheme = infer_scheme(tags)
            for tag in tags:
                split_tag(tag)
        except ValueError as error:
            raise ValueError(
                f"cannot read entity tags from the model config id2label {tags}: {error}; "
                "use a token-classification model whose labels are IOB2/BILOU tags (O, B-X, I-X...)"
            ) from None
        if "O" not in tags:
            raise ValueError(f"the model config id2label {tags} has no 'O' tag: it is not an IOB2/BILOU NER model")
        return cls(tagging_scheme=scheme, tag_subtokens=False, labels=labels_of_tags(tags), tags=tags)


def resolve_stride(max_length: int, nb_special: int, requested: int | None) -> int:
    """Overlap between windows: ``requested``, else a quarter of the window."""
    capacity = max_length - nb_special
    if capacity < 2:
        raise ValueError(
            f"a window of {max_length} tokens leaves {capacity} for text after {nb_special} special tokens: "
            "raise tokenizer_max_length"
        )
    stride = max_length // 4 if requested is None else requested
    stride = min(stride, capacity - 1) if requested is None else stride
    if not 0 <= stride < capacity:
        raise ValueError(
            f"window_stride={requested} must be in [0, {capacity - 1}] for windows of {max_length} tokens "
            f"({nb_special} of them special): lower it or raise tokenizer_max_length"
        )
    return stride
