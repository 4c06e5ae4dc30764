"""Process-group helpers for training under ``torchrun`` (one process per device); ``shard_bounds`` is
:func:`tedrec_fast.parallel.sharding.shard_bounds`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tedrec_fast.parallel.sharding import shard_bounds

__all__ = ["DistContext", "init_distributed", "leave_process_group", "shard_bounds"]


@dataclass(frozen=True)
class DistContext:
    """Rank and world size of this process (``world_size == 1``: no process group, nothing is reduced)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """Whether gradients and metrics are reduced across processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress bars and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op for one process)."""
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes in place (a no-op for one process) and return it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum of ``tensor`` over all processes in place (a no-op for one process); returns it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor


def init_distributed(device: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1) and pick this process's device.

    ``device="auto"`` means CUDA if available, else CPU. Under ``torchrun`` a CUDA process uses
    ``cuda:$LOCAL_RANK`` and the NCCL backend; CPU processes use gloo. Without ``torchrun`` no process
    group is created.
    """
    if not isinstance(device, str):
        raise TypeError(f"init_distributed: device must be a string, got {type(device).__name__}")
    chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), chosen
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size()), chosen


def leave_process_group() -> None:
    """Destroy the process group this process joined, if any, before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads are destroyed while still joinable and the process
    aborts ("terminate called without an active exception", SIGABRT) now and then, after the work is done.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
