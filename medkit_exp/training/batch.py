"""`BatchData`: the dict that flows from `collate` through `forward` to the metrics."""

from __future__ import annotations

from typing import Any

import torch


class BatchData(dict):
    """A dict of columns with row access and device moves.

    ``batch["input_ids"]`` returns a column (a tensor or a list), ``batch[0]`` returns the
    first row as a plain dict, and ``batch.to_device("cuda")`` returns a new batch whose
    tensors live on that device (other values are shared, not copied).
    """

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return {name: column[key] for name, column in self.items()}
        return super().__getitem__(key)

    def to_device(self, device: torch.device | str) -> BatchData:
        return BatchData(
            {
                name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                for name, value in self.items()
            }
        )

    @property
    def nb_rows(self) -> int:
        """Number of rows, read off the first column (0 for an empty batch)."""
        for value in self.values():
            if isinstance(value, torch.Tensor):
                return int(value.shape[0]) if value.dim() else 1
            return len(value)
        return 0
