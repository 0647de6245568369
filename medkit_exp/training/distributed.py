"""Data-parallel training over torch.distributed, as launched by ``torchrun``.

Each process trains on its share of every global batch; after the backward passes of an
optimizer step the gradients are summed across processes. Because each micro-batch's loss
is already weighted by its share of the *global* window, the sum is the gradient of the
global batch: N processes with ``batch_size`` b make the update of one process with b x N.
This works with any `TrainableComponent`, whose model the Trainer never needs to wrap.

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) every method is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_env(cls) -> DistributedContext:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        return cls(rank=int(os.environ["RANK"]), world_size=world_size,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, device: torch.device) -> torch.device:
        """Join the process group (gloo on CPU, nccl on GPU); return this process's device."""
        if not self.enabled:
            return device
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True
        return device

    def teardown(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False

    def shard(self, indices: list[int]) -> list[int]:
        """This process's share of a global batch."""
        return indices[self.rank :: self.world_size] if self.enabled else indices

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        import torch.distributed as dist

        for param in params:
            if param.grad is None:  # a process whose share of the window was empty
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)

    def sum(self, *values: float) -> list[float]:
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def gather_lists(self, data: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Concatenate every process's metric data (rank order)."""
        if not self.enabled:
            return data
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, data)
        merged: dict[str, list[Any]] = {}
        for part in gathered:
            for key, values in part.items():
                merged.setdefault(key, []).extend(values)
        return merged

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every process."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()
