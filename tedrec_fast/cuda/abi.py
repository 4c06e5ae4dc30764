"""The launch ABI shared by every loader of the CUDA C++ kernels.

An op's host side registers the ``extern "C"`` entry points of its ``csrc/`` kernels by their parameter kinds
(:func:`register_kernels`); a launch packs its arguments into one byte buffer with C alignment and hands
``(buffer, offsets)`` to the loader, which points the kernel's parameter array into it (``cudaLaunchKernel``
in the extension, the emulator's call table) or converts them to typed scalars (CuPy).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

__all__ = ["KINDS", "register_kernels", "signature", "pack_args"]

#: parameter kind -> struct format (native byte order, no padding: offsets are aligned explicitly)
KINDS = {"ptr": "Q", "i32": "i", "i64": "q", "f32": "f"}

_SIGNATURES: dict[str, tuple[str, ...]] = {}


def register_kernels(signatures: Mapping[str, tuple[str, ...]]) -> None:
    """Make the kernels ``{name: parameter kinds}`` launchable by name; ``ValueError`` on an unknown kind or a
    name already registered with another signature."""
    for name, kinds in signatures.items():
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(f"kernel {name}: unknown parameter kinds {unknown} (known: {sorted(KINDS)})")
        if _SIGNATURES.get(name, kinds) != tuple(kinds):
            raise ValueError(f"kernel {name} is already registered with the signature {_SIGNATURES[name]}")
        _SIGNATURES[name] = tuple(kinds)


def signature(kernel: str) -> tuple[str, ...]:
    """The parameter kinds of ``kernel``; ``KeyError`` naming it if no op registered it."""
    try:
        return _SIGNATURES[kernel]
    except KeyError:
        raise KeyError(f"no CUDA kernel {kernel!r} is registered (tedrec_fast.cuda.abi.register_kernels)") from None


def pack_args(kernel: str, values: Sequence[int | float]) -> tuple[bytes, list[int]]:
    """``values`` packed for ``kernel``: the byte buffer and each parameter's offset in it.

    Raises ``KeyError`` for an unknown kernel and ``ValueError`` for a wrong number of values.
    """
    kinds = signature(kernel)
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
