"""The spectral-filter op: ``reference.py`` is the spec, ``op.py`` the dispatcher and autograd,
``triton.py`` the Triton launchers of the kernels in ``tedrec_fast.kernels.spectral_filter``."""

from tedrec_fast.ops.spectral_filter.op import BACKENDS, spectral_filter
from tedrec_fast.ops.spectral_filter.reference import spectral_filter_reference

__all__ = ["BACKENDS", "spectral_filter", "spectral_filter_reference"]
