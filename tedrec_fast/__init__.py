"""tedrec_fast: fused kernels and a fast trainer for TedRec text-ID fusion recommendation.

Public API::

    from tedrec_fast import FusedSpectralFusion, SpectralFilter, spectral_fusion, spectral_filter
    from tedrec_fast import full_catalog_cross_entropy, backends

The names are imported on first use, so ``import tedrec_fast.cli`` (``tedrec-fast --help``) loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tedrec_fast._lazy import lazy_exports

if TYPE_CHECKING:
    from tedrec_fast.availability import backends
    from tedrec_fast.nn import FusedSpectralFusion, SpectralFilter
    from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy
    from tedrec_fast.ops.spectral_filter import spectral_filter
    from tedrec_fast.ops.spectral_fusion import spectral_fusion

#: public name -> the module it comes from
_EXPORTS = {
    "FusedSpectralFusion": "tedrec_fast.nn",
    "SpectralFilter": "tedrec_fast.nn",
    "spectral_fusion": "tedrec_fast.ops.spectral_fusion",
    "spectral_filter": "tedrec_fast.ops.spectral_filter",
    "full_catalog_cross_entropy": "tedrec_fast.ops.full_catalog_ce",
    "backends": "tedrec_fast.availability",
}

__all__ = [
    "FusedSpectralFusion",
    "SpectralFilter",
    "spectral_fusion",
    "spectral_filter",
    "full_catalog_cross_entropy",
    "backends",
]
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
