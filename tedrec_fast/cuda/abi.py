"""The launch ABI shared by every loader of the CUDA C++ kernels.

Each ``extern "C"`` entry point of ``csrc/`` is described here by its parameter kinds; a launch packs
its arguments into one byte buffer with C alignment and hands ``(buffer, offsets)`` to the loader,
which points the kernel's parameter array into it (``cudaLaunchKernel`` in the extension, the
emulator's call table) or converts them to typed scalars (CuPy). The emulator reports the C++
signature of each kernel, and a test checks it against this table.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["KINDS", "KERNEL_SIGNATURES", "STORAGE_SUFFIX", "pack_args"]

#: parameter kind -> struct format (native byte order, no padding: offsets are aligned explicitly)
KINDS = {"ptr": "Q", "i32": "i", "i64": "q", "f32": "f"}

_SEQUENCE_ARGS = {
    "item": ("ptr", "i64", "i64"),
    "text": ("ptr", "i64", "i64"),
    "grad": ("ptr", "i64", "i64"),
}
_GATES = ("ptr", "ptr", "ptr", "ptr")  # gi_w, gi_b, gf_w, gf_b

#: storage suffix of each entry point, by torch dtype name
STORAGE_SUFFIX = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def _sequence_kernels(suffix: str) -> dict[str, tuple[str, ...]]:
    seq = _SEQUENCE_ARGS
    return {
        f"tedrec_filter_taps_{suffix}": ("ptr", "ptr", "i32", "i32"),
        f"tedrec_fusion_forward_{suffix}": ("ptr", *seq["item"], *seq["text"], "ptr", *_GATES, "i32", "i32", "i32"),
        f"tedrec_fusion_backward_stats_{suffix}": (
            "ptr", *seq["grad"], *seq["item"], *seq["text"], "ptr", *_GATES, "i32", "i32", "i32"),
        f"tedrec_fusion_backward_main_{suffix}": (
            "ptr", "ptr", "ptr", "ptr", "ptr", *seq["grad"], *seq["item"], *seq["text"], "ptr", "ptr", "ptr",
            "i32", "i32", "i32", "i32", "i32"),
    }


KERNEL_SIGNATURES: dict[str, tuple[str, ...]] = {
    **{name: sig for suffix in STORAGE_SUFFIX.values() for name, sig in _sequence_kernels(suffix).items()},
    "tedrec_fusion_backward_reduce": ("ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32"),
    "tedrec_fusion_backward_bias": ("ptr", "ptr", "i32"),
    "tedrec_filter_taps_backward": ("ptr", "ptr", "i32", "i32"),
}


def pack_args(kernel: str, values: Sequence[int | float]) -> tuple[bytes, list[int]]:
    """``values`` packed for ``kernel``: the byte buffer and each parameter's offset in it.

    Raises ``KeyError`` for an unknown kernel and ``ValueError`` for a wrong number of values.
    """
    kinds = KERNEL_SIGNATURES[kernel]
    if len(values) != len(kinds):
        raise ValueError(f"{kernel} takes {len(kinds)} arguments ({', '.join(kinds)}), got {len(values)}")
    buffer = bytearray()
    offsets: list[int] = []
    for kind, value in zip(kinds, values):
        fmt = KINDS[kind]
        size = struct.calcsize(fmt)
        buffer.extend(b"\0" * (-len(buffer) % size))
        offsets.append(len(buffer))
        buffer.extend(struct.pack(fmt, value))
    return bytes(buffer), offsets
