"""Thin ``nn.Module`` wrappers over the ops."""

from tedrec_fast.nn.spectral_filter import SpectralFilter
from tedrec_fast.nn.spectral_fusion import FusedSpectralFusion

__all__ = ["FusedSpectralFusion", "SpectralFilter"]
