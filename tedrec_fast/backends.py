"""``tedrec_fast.backends()``: every backend of every op, and whether it can run on this machine."""

from __future__ import annotations

from tedrec_fast.ops.full_catalog_ce.op import BACKENDS as FULL_CATALOG_CE_BACKENDS
from tedrec_fast.ops.moe_modulation.op import BACKENDS as MOE_MODULATION_BACKENDS
from tedrec_fast.ops.spectral_filter.op import BACKENDS as SPECTRAL_FILTER_BACKENDS
from tedrec_fast.ops.spectral_fusion.op import BACKENDS as SPECTRAL_FUSION_BACKENDS

__all__ = ["backends"]

_OPS = {
    "spectral_fusion": SPECTRAL_FUSION_BACKENDS,
    "spectral_filter": SPECTRAL_FILTER_BACKENDS,
    "full_catalog_cross_entropy": FULL_CATALOG_CE_BACKENDS,
    "moe_modulation": MOE_MODULATION_BACKENDS,
}


def backends() -> dict[str, list[dict[str, object]]]:
    """``{op: [{"name", "available", "reason", "detail"}, ...]}`` in ``auto`` priority order.

    ``reason`` says why a backend is unavailable on this machine (``None`` when it is available);
    ``detail`` adds what matters when it is (the CUDA backend's active loader: extension or nvrtc).
    :func:`tedrec_fast.cuda.loaders.loaders_report` lists every loader of the CUDA kernels.
    """
    report = {}
    for op, entries in _OPS.items():
        rows = []
        for b in entries:
            reason = b.unavailable()
            rows.append({"name": b.name, "available": reason is None, "reason": reason, "detail": b.detail()})
        report[op] = rows
    return report
