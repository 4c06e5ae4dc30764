"""Argument checks shared by the ops: clear ``TypeError``/``ValueError`` naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["autocast_inputs", "check_float_tensors", "check_sequence_filter"]


def check_float_tensors(op: str, names: Sequence[str], tensors: Sequence[object]) -> None:
    """All ``tensors`` are real floating-point tensors of the first one's dtype and device."""
    for name, x in zip(names, tensors):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(
                f"{op}: {name} must be a real floating-point tensor (float32, bfloat16, float16 or float64), "
                f"got {x.dtype}"
            )
    first, first_name = tensors[0], names[0]
    for name, x in zip(names[1:], tensors[1:]):
        if x.device != first.device:
            raise ValueError(f"{op}: {name} is on {x.device} but {first_name} is on {first.device}")
        if x.dtype != first.dtype:
            raise TypeError(
                f"{op}: {name} has dtype {x.dtype} but {first_name} has {first.dtype}; "
                "cast them to one dtype or run under torch.autocast"
            )


def check_sequence_filter(op: str, x: torch.Tensor, x_name: str, complex_weight: torch.Tensor) -> tuple[int, int, int]:
    """``x`` is ``(B, n, d)`` with ``n, d >= 1`` and ``complex_weight`` is ``(1, n // 2 + 1, d, 2)``."""
    if x.dim() != 3:
        raise ValueError(f"{op}: {x_name} must have shape (B, n, d), got {tuple(x.shape)}")
    B, n, d = x.shape
    if n < 1 or d < 1:
        raise ValueError(f"{op}: sequence length and hidden size must be >= 1, got n={n}, d={d}")
    expected = (1, n // 2 + 1, d, 2)
    if tuple(complex_weight.shape) != expected:
        raise ValueError(
            f"{op}: complex_weight must have shape (1, n//2+1, d, 2) = {expected} for n={n}, d={d}, "
            f"got {tuple(complex_weight.shape)}"
        )
    return B, n, d


def autocast_inputs(tensors: tuple[object, ...]) -> tuple[object, ...]:
    """Under ``torch.autocast`` for the first tensor's device, its floating tensors cast to the autocast dtype."""
    first = tensors[0]
    if not (isinstance(first, torch.Tensor) and torch.is_autocast_enabled(first.device.type)):
        return tensors
    dtype = torch.get_autocast_dtype(first.device.type)
    return tuple(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in tensors)


def check_dropout_args(op: str, p: object, training: object, seed: object) -> None:
    """A drop rate ``p`` in ``[0, 1)``, a bool ``training`` and a mask ``seed`` in ``[0, 2^64)`` or ``None``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{op}: p must be a number in [0, 1), got {p!r}")
    if not isinstance(training, bool):
        raise TypeError(f"{op}: training must be a bool, got {type(training).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ValueError(f"{op}: seed must be an int in [0, 2^64), got {seed!r}")
