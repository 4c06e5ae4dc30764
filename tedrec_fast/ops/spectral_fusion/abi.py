"""The kernel table of spectral fusion's CUDA C++ kernels (``csrc/spectral_fusion.cu``), registered with
the generic launch ABI (:mod:`tedrec_fast.cuda.abi`) on import.

Each ``extern "C"`` entry point is described by its parameter kinds. The emulator reports the C++ signature
of each kernel, and a test checks it against this table.
"""

from __future__ import annotations

from tedrec_fast.cuda.abi import register_kernels

__all__ = ["KERNEL_SIGNATURES", "STORAGE_SUFFIX"]

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


#: every entry point of ``csrc/`` -> its parameter kinds
KERNEL_SIGNATURES: dict[str, tuple[str, ...]] = {
    **{name: sig for suffix in STORAGE_SUFFIX.values() for name, sig in _sequence_kernels(suffix).items()},
    "tedrec_fusion_backward_reduce": ("ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32"),
    "tedrec_fusion_backward_bias": ("ptr", "ptr", "i32"),
    "tedrec_filter_taps_backward": ("ptr", "ptr", "i32", "i32"),
}

register_kernels(KERNEL_SIGNATURES)
