"""``tedrec_fast.backends()``: every backend of every op, and whether it can run on this machine."""

from __future__ import annotations

from tedrec_fast.ops.full_catalog_ce.op import BACKENDS as FULL_CATALOG_CE_BACKENDS
from tedrec_fast.ops.spectral_filter.op import BACKENDS as SPECTRAL_FILTER_BACKENDS
from tedrec_fast.ops.spectral_fusion.op import BACKENDS as SPECTRAL_FUSION_BACKENDS

__all__ = ["backends"]

_OPS = {
    "spectral_fusion": SPECTRAL_FUSION_BACKENDS,
    "spectral_filter": SPECTRAL_FILTER_BACKENDS,
    "full_catalog_cross_entropy": FULL_CATALOG_CE_BACKENDS,
}


def backends() -> dict[str, list[dict[str, object]]]:
    """``{op: [{"name", "available", "reason"}, ...]}`` in ``auto`` priority order.

    ``reason`` says why a backend is unavailable on this machine (``None`` when it is available).
    """
    return {
        op: [
            {"name": b.name, "available": b.unavailable() is None, "reason": b.unavailable()}
            for b in entries
        ]
        for op, entries in _OPS.items()
    }
