"""tedrec_fast: fused kernels and a fast trainer for TedRec text-ID fusion recommendation.

Public API::

    from tedrec_fast import FusedSpectralFusion, SpectralFilter, spectral_fusion, spectral_filter
    from tedrec_fast import full_catalog_cross_entropy, backends
"""

from tedrec_fast.backends import backends
from tedrec_fast.nn import FusedSpectralFusion, SpectralFilter
from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy
from tedrec_fast.ops.spectral_filter import spectral_filter
from tedrec_fast.ops.spectral_fusion import spectral_fusion

__all__ = [
    "FusedSpectralFusion",
    "SpectralFilter",
    "spectral_fusion",
    "spectral_filter",
    "full_catalog_cross_entropy",
    "backends",
]
__version__ = "0.1.0"
