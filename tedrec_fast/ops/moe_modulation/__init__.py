"""The MoE-modulation op: ``reference.py`` is the spec, ``op.py`` the dispatcher, ``core.py`` the autograd
function, ``moe_cpu.cpp`` the C++ core, ``tedrec_fast.kernels.moe_modulation`` the Triton kernels."""

from tedrec_fast.ops.moe_modulation.op import BACKENDS, moe_modulation
from tedrec_fast.ops.moe_modulation.reference import moe_modulation_reference

__all__ = ["BACKENDS", "moe_modulation", "moe_modulation_reference"]
