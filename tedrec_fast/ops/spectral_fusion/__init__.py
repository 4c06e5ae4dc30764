"""The spectral-fusion op: ``reference.py`` is the spec, ``op.py`` the dispatcher and autograd,
``triton.py`` the Triton launchers of the kernels in ``tedrec_fast.kernels.spectral_fusion``, ``cuda.py``
and ``abi.py`` the host side and kernel table of the CUDA C++ kernels (``csrc/``), ``inputs.py`` input makers."""

from tedrec_fast.ops.spectral_fusion.op import BACKENDS, spectral_fusion
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference

__all__ = ["BACKENDS", "spectral_fusion", "spectral_fusion_reference"]
