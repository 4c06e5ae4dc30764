"""What the tests and the benchmarks' sweeps share: per-dtype tolerances against the float64 reference.

``(atol, rtol)`` relative to outputs of order 1. The Triton backend computes 16-bit inputs in fp32 and
rounds once on output; fp32 on the interpreter is exact fp32 arithmetic (on a GPU, the default 3xTF32
products give the same order of error). Random inputs for each op are in ``tedrec_fast.ops.<op>.inputs``.
"""

from __future__ import annotations

import torch

__all__ = ["FORWARD", "BACKWARD", "TF32", "FULL_CATALOG_CE_FORWARD", "FULL_CATALOG_CE_BACKWARD"]

FORWARD = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (3e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}
#: gradients sum over more terms (the batch for parameter gradients), so they are a little looser
BACKWARD = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (1e-4, 1e-4),
    torch.bfloat16: (5e-2, 3e-2),
    torch.float16: (8e-3, 8e-3),
}
#: TF32 products on a GPU (``torch.set_float32_matmul_precision("high")``)
TF32 = (5e-3, 5e-3)

#: full-catalog cross-entropy (loss of order 1-10, gradients summed over the catalog); the loss is
#: computed in fp32 for 16-bit inputs, so their error is the rounding of the inputs themselves
FULL_CATALOG_CE_FORWARD = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (1e-5, 1e-5),
    torch.float16: (1e-5, 1e-5),
}
FULL_CATALOG_CE_BACKWARD = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (1e-4, 1e-4),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float16: (2e-3, 2e-3),
}
