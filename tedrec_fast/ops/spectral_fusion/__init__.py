"""The spectral-fusion op: ``reference.py`` is the spec, ``op.py`` the dispatcher and autograd,
``tedrec_fast.kernels.spectral_fusion`` the Triton kernels."""

from tedrec_fast.ops.spectral_fusion.op import BACKENDS, spectral_fusion
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference

__all__ = ["BACKENDS", "spectral_fusion", "spectral_fusion_reference"]
