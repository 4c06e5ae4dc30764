"""Checked atomic checkpoint files, RNG state capture and seeding."""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from tedrec_fast.safe_files import atomic_save

#: first bytes of a checkpoint file (then the payload's sha256 and size, a newline and ``torch.save``'s bytes)
_MAGIC = b"TEDREC_FAST_CHECKPOINT 1 "
_HEADER = re.compile(re.escape(_MAGIC) + rb"sha256=([0-9a-f]{64}) bytes=(\d+)")

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
    """``torch.save`` ``obj`` into ``path`` atomically, behind a header holding the payload's size and sha256.

    A reader (or a resumed run) sees the old file or the new one, never a partial write
    (:func:`tedrec_fast.safe_files.atomic_file`); :func:`load_checkpoint` checks the hash.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getbuffer()
    header = f"{_MAGIC.decode()}sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()
    atomic_save(path, lambda handle: (handle.write(header), handle.write(payload)), "checkpoint")


def _payload(path: Path, data: bytes) -> bytes:
    """The checked ``torch.save`` bytes of the checkpoint file ``path`` holding ``data``."""
    if not data:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or write")
    if len(data) < len(_MAGIC) and _MAGIC.startswith(data):
        raise ValueError(f"checkpoint {path} is truncated: only the first {len(data)} bytes of its header")
    if not data.startswith(_MAGIC):
        if data.startswith(b"PK\x03\x04") or data[:1] == b"\x80":
            raise ValueError(f"checkpoint {path} is a torch/pickle file without tedrec_fast's checksum header: not "
                             "written by tedrec_fast's trainer (or by a version before checksums); not loaded")
        raise ValueError(f"checkpoint {path} is not a tedrec_fast checkpoint (unknown format, "
                         f"first bytes {data[:8]!r})")
    end = data.find(b"\n", 0, 256)
    match = _HEADER.fullmatch(data[:end]) if end > 0 else None
    if match is None:
        raise ValueError(f"checkpoint {path} has a damaged header (truncated or corrupted file)")
    payload = memoryview(data)[end + 1:]
    expected = int(match[2])
    if len(payload) != expected:
        state = "truncated" if len(payload) < expected else "longer than written"
        raise ValueError(f"checkpoint {path} is {state}: {len(payload)} of {expected} payload bytes")
    if hashlib.sha256(payload).hexdigest() != match[1].decode():
        raise ValueError(f"checkpoint {path} is corrupted: its content hash does not match the one recorded "
                         "when it was written")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic`, after checking its size and content hash.

    Only tensors, numbers, strings and containers are unpickled (``weights_only=True``).

    Raises:
        ValueError: one line naming the file and what is wrong (missing, empty, truncated, corrupted, foreign).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    payload = _payload(path, data)
    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickles: the error below says it in one line
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types; the message is what matters
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {path} cannot be loaded safely (weights only): {reason[:200]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint mapping")
    return state


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
