"""Atomic checkpoint files, RNG state capture and seeding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_atomic", "load_checkpoint", "rng_state", "restore_rng_state", "seed_everything"]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch's CPU and CUDA RNGs; with ``deterministic`` also require deterministic algorithms.

    Deterministic mode sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless set) as cuBLAS requires, calls
    ``torch.use_deterministic_algorithms(True)`` and turns off cuDNN benchmarking.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it onto ``path``.

    A reader (or a resumed run) sees the old file or the new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (tensors, numbers, strings and containers only)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_checkpoint: path {str(path)!r} is not a file")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The torch CPU RNG, the CUDA RNG of ``device`` (if CUDA) and the shuffling ``generator``'s state."""
    state = {"torch_cpu": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, torch.Tensor], device: torch.device, generator: torch.Generator) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch_cpu"].cpu())
    generator.set_state(state["shuffle"].cpu())
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)
