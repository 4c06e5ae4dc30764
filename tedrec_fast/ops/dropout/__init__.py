"""The dropout op: ``reference.py`` is the spec (torch's ``F.dropout``), ``op.py`` the dispatcher and autograd
function, ``cpu.py`` + ``dropout_cpu.cpp`` the C++ core with counter-based masks."""

from tedrec_fast.ops.dropout.op import BACKENDS, dropout
from tedrec_fast.ops.dropout.reference import dropout_reference

__all__ = ["BACKENDS", "dropout", "dropout_reference"]
