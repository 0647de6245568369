"""Train only the rows of a model's input embedding that the training data uses.

The word embedding of a BERT-like model is half of its parameters (MiniLM: 11.7M of 22.7M,
30,522 rows), but a fine-tuning corpus uses a few thousand of its tokens. A row whose token
never occurs in a training batch has a gradient of exactly zero at every step, so AdamW
without weight decay never moves it (its moments stay zero, and so does its update) and it
adds nothing to the gradient norm. Giving the used rows a parameter of their own and
freezing the full matrix is therefore the same training, up to float rounding, without
the zero-filling, clipping and AdamW updates of the other rows at every step, nor their
gradient and two moments in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


class TrainedEmbeddingRows:
    """The used rows of ``embedding`` as one parameter (``rows``); the full matrix is frozen.

    A forward hook makes the embedding read those rows, so the model computes exactly as
    before. ``write_back`` copies them into the embedding's weight (after each optimizer step,
    so that the model and what it saves stay a plain, current HF model), ``read_back`` the
    other way (after weights were loaded), and ``remove`` restores the plain, fully trainable
    embedding.
    """

    def __init__(self, embedding: torch.nn.Embedding, token_ids: Iterable[int]) -> None:
        weight = embedding.weight
        used = sorted({int(i) for i in token_ids} - {embedding.padding_idx})
        if used and not 0 <= used[0] <= used[-1] < embedding.num_embeddings:
            raise ValueError(f"token ids must lie in [0, {embedding.num_embeddings}), got {used[0]}..{used[-1]}")
        self.embedding = embedding
        self.ids = torch.tensor(used, dtype=torch.long, device=weight.device)
        self.row_of = torch.full((embedding.num_embeddings,), -1, dtype=torch.long, device=weight.device)
        self.row_of[self.ids] = torch.arange(len(used), device=weight.device)
        self.rows = torch.nn.Parameter(weight.detach()[self.ids].clone())
        weight.requires_grad_(False)
        self._hook = embedding.register_forward_hook(self._read_rows)

    def _read_rows(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        local = self.row_of[inputs[0]]
        trained = F.embedding(local.clamp(min=0), self.rows)
        return torch.where((local >= 0).unsqueeze(-1), trained, output)

    def write_back(self) -> None:
        """Copy the trained rows into the embedding's weight."""
        with torch.no_grad():
            self.embedding.weight[self.ids] = self.rows

    def read_back(self) -> None:
        """Take the rows from the embedding's weight again (in place: an optimizer stays valid)."""
        with torch.no_grad():
            self.rows.copy_(self.embedding.weight[self.ids])

    def to(self, device: torch.device) -> None:
        """Move the rows (the same parameter, as ``Module.to`` does: an optimizer stays valid)."""
        self.rows.data = self.rows.data.to(device)
        self.ids, self.row_of = self.ids.to(device), self.row_of.to(device)

    def remove(self) -> None:
        """Write the rows back and make the whole embedding trainable again, as it was."""
        self.write_back()
        self._hook.remove()
        self.embedding.weight.requires_grad_(True)
