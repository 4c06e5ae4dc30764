"""What the Triton kernel modules share: the numerics policy, persistent grid sizes, AOT signatures."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import triton.language as tl

__all__ = ["dot_precision", "acc_dtype", "tl_acc_dtype", "persistent_programs", "aot_signature"]

_TL_PTR = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float64: "*fp64"}


def dot_precision(dtype: torch.dtype) -> str:
    """The ``tl.dot`` input precision for inputs of ``dtype``, following PyTorch's fp32 matmul setting.

    * float64: ``"ieee"`` (float64 products).
    * float32 with ``torch.get_float32_matmul_precision() == "highest"`` (PyTorch's default):
      ``"tf32x3"`` -- three TF32 products per multiply, fp32-level error (~1e-6 relative).
    * float32 with ``"high"`` or ``"medium"`` (TF32 allowed): ``"tf32"`` -- one TF32 product,
      ~5e-4 relative error on the output.
    * bf16 / fp16 inputs are upcast to fp32 on load and use ``"tf32"``, which represents their values
      exactly (the interpreter also computes bf16 ``tl.dot`` wrongly, so kernels never feed it 16-bit).
    """
    if dtype == torch.float64:
        return "ieee"
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "tf32x3"
    return "tf32"


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype for inputs of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tl_acc_dtype(dtype: torch.dtype) -> tl.dtype:
    """:func:`acc_dtype` as a Triton dtype (a kernel's ``ACC`` constexpr)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def persistent_programs(device: torch.device, work: int) -> int:
    """Programs of a persistent grid over ``work`` items: one per SM (two under the interpreter, enough
    to exercise the loop), never more than ``work``, at least one."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 2
    return max(1, min(work, sms))


def aot_signature(fn, constexprs: dict, dtype: torch.dtype, accumulators: Iterable[str] = (),
                  overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Triton signature for compiling ``fn`` ahead of time: pointers to ``dtype`` data, pointers named in
    ``accumulators`` in the accumulation dtype, ``overrides`` as given, ``i32`` scalars, the constexprs."""
    accumulators = set(accumulators)
    overrides = overrides or {}
    acc_ptr = _TL_PTR[acc_dtype(dtype)]
    signature = {}
    for arg in fn.arg_names:
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg in overrides:
            signature[arg] = overrides[arg]
        elif arg in accumulators:
            signature[arg] = acc_ptr
        elif arg.endswith("_ptr"):
            signature[arg] = _TL_PTR[dtype]
        else:
            signature[arg] = "i32"
    return signature
