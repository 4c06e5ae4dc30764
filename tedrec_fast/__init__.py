"""tedrec_fast: fused kernels and a fast trainer for TedRec text-ID fusion recommendation.

Public API::

    from tedrec_fast import FusedSpectralFusion, spectral_fusion, backends
"""

from tedrec_fast.backends import backends
from tedrec_fast.nn import FusedSpectralFusion
from tedrec_fast.ops.spectral_fusion import spectral_fusion

__all__ = ["FusedSpectralFusion", "spectral_fusion", "backends"]
__version__ = "0.1.0"
