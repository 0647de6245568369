"""`HFMaskedLMTrainable`: masked-language-model training of a HF encoder on unlabelled text.

It implements the `TrainableComponent` protocol: ``preprocess`` cuts a text (a `TextDocument`,
any object with a ``text``, or a string) into word pieces, ``pack_examples`` packs a split's
texts into blocks of ``max_length`` tokens, ``collate`` pads blocks into a batch and ``forward``
masks whole words (`medkit_exp.text.mlm.masking`) and returns the loss over the masked tokens.
``save`` writes a plain HF folder (encoder, MLM head and tokenizer) that the NER and classifier
components start from as from any other encoder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from medkit_exp.text.hf_model import (
    MODEL_INPUTS,
    HFTrainableModel,
    as_device,
    attention_dropout_override,
    input_token_limit,
    load_fast_tokenizer,
    pad_examples,
    quiet_transformers,
)
from medkit_exp.text.mlm.masking import IGNORE_INDEX, MaskingSettings, mask_batch
from medkit_exp.text.mlm.packing import NO_WORD, pack_texts, text_pieces
from medkit_exp.training.batch import BatchData

# Evaluation masks are drawn from generators seeded with this plus the block's number, so that
# every evaluation of a split, whatever the model, the seed or the epoch, masks the same tokens.
EVAL_MASK_SEED = 20_200_415


def text_of(item: Any) -> str:
    """The text of an item: a string, or an object (a `TextDocument`) with a ``text``."""
    if isinstance(item, str):
        return item
    text = getattr(item, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"hf_mlm trains on texts: got a {type(item).__name__} with no text; "
                        "give strings or documents with a text attribute")
    return text


class HFMaskedLMTrainable(HFTrainableModel):
    """A HF encoder trained as a masked language model.

    Args:
        model_name_or_path: a HF model folder or hub name; an encoder without an MLM head gets a
            new one (its output layer tied to the input embeddings, as BERT's is).
        max_length: tokens per block, special tokens included (default: the model's limit, at most 512).
        masking: what is masked (`MaskingSettings`: 15% of the tokens, whole words, 80/10/10).
        pack: pack consecutive texts into the same block (no padding); False: each text starts a block.
        attention_dropout: the model's attention dropout (None keeps it).
        fast_dropout: draw dropout masks on CPU with `medkit_exp.training.fast_dropout`.
        device: torch device of the model.
    """

    def __init__(self, model_name_or_path: str | Path, max_length: int | None = 128,
                 masking: MaskingSettings | None = None, pack: bool = True, attention_dropout: float | None = None,
                 fast_dropout: bool = True, device: str | int | torch.device = "cpu") -> None:
        from transformers import AutoConfig, AutoModelForMaskedLM

        quiet_transformers()
        self.model_name_or_path = str(model_name_or_path)
        self.device = as_device(device)
        self.masking = masking or MaskingSettings()
        self.pack = bool(pack)
        self.tokenizer = load_fast_tokenizer(self.model_name_or_path)
        config = AutoConfig.from_pretrained(self.model_name_or_path)
        self.max_length = input_token_limit(config, self.tokenizer, max_length, "component.max_length", minimum=8)
        overrides: dict[str, Any] = attention_dropout_override(config, attention_dropout)
        self.model = AutoModelForMaskedLM.from_pretrained(self.model_name_or_path, **overrides)
        self.model.to(self.device)  # type: ignore[arg-type]  # PreTrainedModel.to (transformers#38052)
        for name in ("mask_token_id", "cls_token_id", "sep_token_id"):
            if getattr(self.tokenizer, name) is None:
                raise ValueError(f"the tokenizer of {self.model_name_or_path} has no {name[:-9]} token; "
                                 "masked-language-model training needs a BERT-like tokenizer")
        special = set(self.tokenizer.all_special_ids)
        self.replacement_ids = torch.tensor([i for i in range(len(self.tokenizer)) if i not in special])
        self._set_fast_dropout(fast_dropout)

    def preprocess(self, data_item: Any) -> dict[str, list[int]]:
        """The text's word pieces and their word numbers (packed into blocks by `pack_examples`)."""
        return text_pieces(self.tokenizer, text_of(data_item))

    def pack_examples(self, examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        """Blocks of ``max_length`` tokens from a split's preprocessed texts, and the text each starts in."""
        return pack_texts(examples, self.max_length, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id,
                          across_texts=self.pack)

    def example_weight(self, example: dict[str, Any]) -> float:
        """Masked tokens of a block: the loss is their mean."""
        return float(self.masking.budget(sum(1 for w in example["word_index"] if w != NO_WORD)))

    def collate(self, batch: list[dict[str, Any]]) -> BatchData:
        """Pad blocks into ``input_ids``, ``attention_mask``, ``word_index`` and ``mask_seed``; the
        masking itself happens in `forward` (new masks each epoch, fixed ones for evaluation)."""
        data = pad_examples(batch, self.tokenizer, self.pad_to_multiple_of, extra={"word_index": NO_WORD},
                            pad_lengths=self.pad_lengths)
        data["mask_seed"] = torch.tensor([EVAL_MASK_SEED + int(e["mask_seed"]) for e in batch], dtype=torch.long)
        return data

    def forward(self, input_batch: BatchData, return_loss: bool, eval_mode: bool
                ) -> tuple[BatchData, torch.Tensor | None]:
        """Mask the batch, predict the masked tokens; returns ``(BatchData(loss_sum, masked_tokens,
        correct), mean loss)``: the sums a perplexity is computed from, and the training loss."""
        seeds = input_batch["mask_seed"].tolist() if eval_mode else None
        masked, labels = mask_batch(input_batch["input_ids"], input_batch["word_index"], self.masking,
                                    self.tokenizer.mask_token_id, self.replacement_ids, seeds)
        self.model.train(not eval_mode)
        inputs = {k: input_batch[k] for k in MODEL_INPUTS if k in input_batch}
        inputs["input_ids"] = masked
        with torch.no_grad() if eval_mode else contextlib.nullcontext():
            logits, targets = self._masked_logits(inputs, labels)
            losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        loss = losses.mean() if len(targets) else losses.sum()
        output = BatchData(loss_sum=losses.detach().sum().reshape(1), masked_tokens=torch.tensor([len(targets)]),
                           correct=(logits.detach().argmax(-1) == targets).sum().reshape(1))
        return output, (loss if return_loss else None)

    def _masked_logits(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits over the vocabulary at the masked positions only, and their targets.

        The output layer over a 30,000-token vocabulary is a large part of a small encoder's cost;
        with a BERT-like head (``cls`` or ``lm_head`` over the encoder's hidden states) it runs on
        the masked positions alone. Other models compute every position's logits and keep the
        masked ones."""
        selected = labels != IGNORE_INDEX
        head = getattr(self.model, "cls", None) or getattr(self.model, "lm_head", None)
        encoder = getattr(self.model, self.model.base_model_prefix, None)
        if head is not None and encoder is not None:
            hidden = encoder(**inputs)[0]
            return head(hidden[selected]), labels[selected]
        return self.model(**inputs).logits[selected], labels[selected]

    def load(self, path: str | Path) -> None:
        """Load weights saved by `save` (resuming a run) into the model in place."""
        from transformers import AutoModelForMaskedLM

        self._adopt_weights(AutoModelForMaskedLM.from_pretrained(str(path)), path)

    def save(self, path: str | Path) -> None:
        """Write the model (encoder and MLM head) and its tokenizer as a HF folder."""
        self._save_hf_folder(path)
