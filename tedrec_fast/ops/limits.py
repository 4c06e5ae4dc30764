"""Limits and dtypes shared by the sequence ops' kernel backends (spectral fusion, spectral filter).

The torch backends have no limits; the Triton and CUDA kernels hold one whole sequence per program, so
``n`` and ``d`` are bounded (the per-target launch tables in ``kernels/`` may allow less).
"""

from __future__ import annotations

import torch

__all__ = ["MAX_N", "MAX_D", "KERNEL_DTYPES"]

#: longest sequence the kernels run
MAX_N = 512
#: widest hidden size the kernels run
MAX_D = 2048
#: input dtypes of the Triton kernels
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
