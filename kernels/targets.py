"""The GPU targets the kernels support, and the per-target launch configurations of each op.

:data:`TARGETS` is the one table of supported GPUs: each entry is an ``sm_<arch>`` with the limits a
launch must respect there, from the CUDA C++ Programming Guide's table of technical specifications per
compute capability (shared memory per block is the opt-in maximum a kernel may request; registers per
thread is the most ``ptxas`` may give one thread). The Triton and CUDA C++ kernels are compiled for
every entry without a GPU (``python -m tedrec_fast.kernels.aot --arch A``; tests/kernels/test_aot_compile.py,
tests/cuda/test_cuda_compile.py) and every configuration the dispatcher can pick there is checked to fit.

:class:`TargetConfigs` is how an op's kernel module states its launch configurations per target: one
mapping ``{arch: {key: config}}`` next to its kernels. :func:`device_target` gives the entry a device
runs as, so the dispatcher and the launchers pick configurations for the device's compute capability.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

__all__ = ["Target", "TARGETS", "TUNED_TRITON", "INTERPRETER_ARCH", "target", "target_for_capability", "device_target",
           "launch_arch", "unsupported_capability", "TargetConfigs"]

KB = 1024


@dataclass(frozen=True)
class Target:
    """One GPU architecture the kernels are compiled and checked for."""

    arch: int  #: ``sm_<arch>``: 10 * major + minor of the compute capability
    gpus: str  #: examples of GPUs of this architecture
    shared_per_block: int  #: bytes of shared memory one block may use (opt-in maximum)
    shared_per_sm: int  #: bytes of shared memory per SM
    registers_per_thread: int = 255
    registers_per_sm: int = 64 * KB

    @property
    def name(self) -> str:
        return f"sm_{self.arch}"

    @property
    def capability(self) -> tuple[int, int]:
        return divmod(self.arch, 10)


#: every supported target, oldest first (Triton 3.6.0 and CUDA 12.8+/13 compile for all of them)
TARGETS: dict[int, Target] = {t.arch: t for t in (
    Target(80, "A100, A30", 163 * KB, 164 * KB),
    Target(86, "A10, A40, RTX 30xx, RTX A6000", 99 * KB, 100 * KB),
    Target(89, "L4, L40S, RTX 40xx", 99 * KB, 100 * KB),
    Target(90, "H100, H200, GH200", 227 * KB, 228 * KB),
    Target(100, "B200, GB200", 227 * KB, 228 * KB),
    Target(120, "RTX 50xx, RTX PRO 6000 Blackwell", 99 * KB, 100 * KB),
)}

#: the Triton release (major, minor) the per-target configurations were chosen and checked with: the GPU
#: machine's, and what torch 2.11's CUDA wheels pin. Register allocation, so spilling, changes between releases
#: (Triton 3.9.0 spills at TedRec's shape with every configuration tried; bench/NOTES.md)
TUNED_TRITON = (3, 6)

#: the table entry whose configurations the Triton interpreter (CPU tensors, tests) launches, besides
#: those an op keeps for lengths no GPU target runs
INTERPRETER_ARCH = 90


def target(arch: int) -> Target:
    """The table entry ``sm_<arch>``; ``ValueError`` naming ``arch`` if the table has none."""
    if arch not in TARGETS:
        raise ValueError(f"arch must be one of {', '.join(map(str, TARGETS))} (the supported GPU targets), "
                         f"got {arch!r}")
    return TARGETS[arch]


def target_for_capability(capability: tuple[int, int]) -> Target | None:
    """The entry a device of compute ``capability`` runs as: its own, else the newest entry of the same
    major version below it (code for X.y runs on X.z, z >= y; e.g. 8.7 -> sm_86, 10.3 -> sm_100); ``None``
    when the table has no entry of its major version (the device is not supported)."""
    major, minor = capability
    own = 10 * major + minor
    same_major = [arch for arch in TARGETS if arch // 10 == major and arch <= own]
    return TARGETS[max(same_major)] if same_major else None


def device_target(device: torch.device) -> Target | None:
    """:func:`target_for_capability` of a CUDA ``device``."""
    return target_for_capability(torch.cuda.get_device_capability(device))


def launch_arch(device: torch.device) -> int | None:
    """The arch whose configurations a launch on ``device`` uses: the device's table entry on CUDA,
    ``None`` for CPU tensors (the Triton interpreter, which has no shared memory or register limits).
    ``ValueError`` for a CUDA device of no supported target."""
    if device.type != "cuda":
        return None
    found = device_target(device)
    if found is None:
        raise ValueError(f"device {device} of compute capability {unsupported_capability(device)} is not a "
                         f"supported GPU target ({', '.join(t.name for t in TARGETS.values())})")
    return found.arch


def unsupported_capability(device: torch.device) -> str:
    """The compute capability of a CUDA ``device`` as ``"major.minor"``."""
    return ".".join(map(str, torch.cuda.get_device_capability(device)))


K = TypeVar("K", bound=Hashable)
C = TypeVar("C", bound=Hashable)


class TargetConfigs(Generic[K, C]):
    """An op's launch configurations per target: ``{arch: {key: config}}`` (the key is what the config
    depends on, e.g. the padded sequence length). A key missing on a target means no configuration of
    the op fits that target for such shapes; ``why`` explains it (for the dispatcher's message).
    """

    def __init__(self, op: str, table: Mapping[int, Mapping[K, C]], why: Callable[[int, K], str]) -> None:
        unknown = set(table) - set(TARGETS)
        missing = set(TARGETS) - set(table)
        if unknown or missing:
            raise ValueError(f"{op}: configurations must name exactly the targets {sorted(TARGETS)}; "
                             f"unknown {sorted(unknown)}, missing {sorted(missing)}")
        self.op = op
        self.table = {arch: dict(configs) for arch, configs in table.items()}
        self.why = why

    def get(self, arch: int, key: K) -> C | None:
        """The configuration for ``key`` on ``sm_<arch>``, or ``None`` when none fits there."""
        return self.table[target(arch).arch].get(key)

    def why_not(self, arch: int, key: K) -> str | None:
        """Why no configuration of ``key`` runs on ``sm_<arch>``, or ``None`` when one does."""
        if self.get(arch, key) is not None:
            return None
        return self.why(arch, key)

    def configs(self, arch: int) -> list[C]:
        """Every configuration the dispatcher can pick on ``sm_<arch>``, without repeats, in table order."""
        return list(dict.fromkeys(self.table[target(arch).arch].values()))

    def keys(self, arch: int) -> list[K]:
        """The keys ``sm_<arch>`` has a configuration for, in table order."""
        return list(self.table[target(arch).arch])
