"""``tedrec_fast.backends()``: every backend of every op, and whether it can run on this machine."""

from __future__ import annotations

from tedrec_fast.cuda.loaders import loaders_report
from tedrec_fast.ops.dropout.op import BACKENDS as DROPOUT_BACKENDS
from tedrec_fast.ops.full_catalog_ce.op import BACKENDS as FULL_CATALOG_CE_BACKENDS
from tedrec_fast.ops.moe_modulation.op import BACKENDS as MOE_MODULATION_BACKENDS
from tedrec_fast.ops.spectral_filter.op import BACKENDS as SPECTRAL_FILTER_BACKENDS
from tedrec_fast.ops.spectral_fusion.op import BACKENDS as SPECTRAL_FUSION_BACKENDS

__all__ = ["backends", "BackendReport"]

_OPS = {
    "spectral_fusion": SPECTRAL_FUSION_BACKENDS,
    "spectral_filter": SPECTRAL_FILTER_BACKENDS,
    "full_catalog_cross_entropy": FULL_CATALOG_CE_BACKENDS,
    "moe_modulation": MOE_MODULATION_BACKENDS,
    "dropout": DROPOUT_BACKENDS,
}


class BackendReport(dict):
    """``{op: [{"name", "available", "reason", "detail"}, ...]}`` that prints as the ``tedrec-fast backends`` table.

    ``loaders`` lists the loaders of the CUDA C++ kernels (``[{"name", "device_type", "available",
    "reason"}, ...]``, :func:`tedrec_fast.cuda.loaders.loaders_report`).
    """

    def __init__(self, rows: dict[str, list[dict[str, object]]], loaders: list[dict[str, object]]) -> None:
        super().__init__(rows)
        self.loaders = loaders

    def __str__(self) -> str:
        lines = []
        for op, rows in self.items():
            lines.append(op)
            for row in rows:
                if row["available"]:
                    state = "available" + (f" ({row['detail']})" if row["detail"] else "")
                else:
                    state = f"no: {row['reason']}"
                lines.append(f"  {row['name']:<14} {state}")
        lines.append("loaders of the CUDA C++ kernels (backend 'cuda')")
        for row in self.loaders:
            state = "available" if row["available"] else f"no: {row['reason']}"
            lines.append(f"  {row['name']:<14} {row['device_type']} tensors, {state}")
        return "\n".join(lines)

    __repr__ = __str__


def backends() -> BackendReport:
    """Every backend of every op in ``auto`` priority order, and the loaders of the CUDA kernels.

    A ``dict`` ``{op: [{"name", "available", "reason", "detail"}, ...]}``: ``reason`` says why a backend is
    unavailable on this machine (``None`` when it is available); ``detail`` adds what matters when it is (the
    CUDA backend's active loader: extension or nvrtc). ``print(backends())`` shows it as a table, the one
    ``tedrec-fast backends`` prints.
    """
    report = {}
    for op, entries in _OPS.items():
        rows = []
        for b in entries:
            reason = b.unavailable()
            rows.append({"name": b.name, "available": reason is None, "reason": reason, "detail": b.detail()})
        report[op] = rows
    return BackendReport(report, loaders_report())
