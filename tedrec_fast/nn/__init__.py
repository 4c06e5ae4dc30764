"""Thin ``nn.Module`` wrappers over the ops, and which backend each will run (:mod:`.backend_choice`)."""

from tedrec_fast.nn.backend_choice import model_backends
from tedrec_fast.nn.dropout import Dropout
from tedrec_fast.nn.spectral_filter import SpectralFilter
from tedrec_fast.nn.spectral_fusion import FusedSpectralFusion

__all__ = ["Dropout", "FusedSpectralFusion", "SpectralFilter", "model_backends"]
