"""The MoE-modulation op: ``reference.py`` is the spec, ``op.py`` the dispatcher, ``core.py`` the autograd
function, ``cpu.py`` + ``moe_cpu.cpp`` the C++ core, ``triton.py`` the Triton launchers of the kernels in
``tedrec_fast.kernels.moe_modulation``."""

from tedrec_fast.ops.moe_modulation.op import BACKENDS, moe_modulation
from tedrec_fast.ops.moe_modulation.reference import moe_modulation_reference

__all__ = ["BACKENDS", "moe_modulation", "moe_modulation_reference"]
