"""Which backend a module's ops will run: each op's backend list, name checks, and the choice for one call.

A module built with ``backend="auto"`` (or a backend name) answers for itself which backend its forward
dispatches to (:meth:`~tedrec_fast.nn.FusedSpectralFusion.chosen_backend`); :func:`model_backends` asks every
op of a recommender, its training loss included (the ``loss_backend`` attribute of the models).
"""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.ops.dispatch import Backend, Problem, choose_backend
from tedrec_fast.ops.full_catalog_ce.op import BACKENDS as FULL_CATALOG_CE_BACKENDS
from tedrec_fast.ops.moe_modulation.op import BACKENDS as MOE_MODULATION_BACKENDS
from tedrec_fast.ops.spectral_filter.op import BACKENDS as SPECTRAL_FILTER_BACKENDS
from tedrec_fast.ops.spectral_fusion.op import BACKENDS as SPECTRAL_FUSION_BACKENDS

__all__ = ["OP_BACKENDS", "check_backend_name", "chosen_backend", "model_backends"]

#: op name (the field names of :class:`tedrec_fast.config.OpBackends`) -> its backends in ``auto`` priority order
OP_BACKENDS: dict[str, tuple[Backend, ...]] = {
    "spectral_fusion": SPECTRAL_FUSION_BACKENDS,
    "spectral_filter": SPECTRAL_FILTER_BACKENDS,
    "full_catalog_ce": FULL_CATALOG_CE_BACKENDS,
    "moe_modulation": MOE_MODULATION_BACKENDS,
}
#: the name the dispatcher reports in its errors, per op
_DISPATCH_NAMES = {"full_catalog_ce": "full_catalog_cross_entropy"}


def check_backend_name(owner: str, op: str, backend: object) -> None:
    """Raise ``ValueError`` naming ``owner`` unless ``backend`` is ``"auto"`` or a backend of ``op``."""
    names = ["auto"] + [b.name for b in OP_BACKENDS[op]]
    if backend not in names:
        raise ValueError(f"{owner}: {op} backend must be one of {names}, got {backend!r}")


def chosen_backend(op: str, requested: str, device: torch.device | str, dtype: torch.dtype,
                   sizes: tuple[tuple[str, int], ...]) -> str:
    """The backend ``op`` dispatches a call of these ``sizes`` to, for ``requested`` (``"auto"`` or a name).

    Raises what the op would raise (``ValueError`` for a named backend that cannot run the call).
    """
    problem = Problem(torch.device(device), dtype, sizes)
    return choose_backend(OP_BACKENDS[op], requested, problem, op=_DISPATCH_NAMES.get(op, op)).name


def model_backends(model: nn.Module, batch: int, device: torch.device | str, dtype: torch.dtype
                   ) -> dict[str, tuple[str, str]]:
    """``op -> (chosen, requested)`` for each op ``model`` runs on a batch of ``batch`` sequences.

    The fused sequence ops answer through their modules' ``chosen_backend``; the training loss through the
    model's ``loss_backend`` (the whole catalog ``n_items`` against the hidden size of ``item_embedding``).
    Ops the model does not run are absent.
    """
    found: dict[str, tuple[str, str]] = {}
    for module in model.modules():
        op = getattr(module, "op_name", None)
        if op in OP_BACKENDS and op not in found:
            found[op] = (module.chosen_backend(batch, device, dtype), module.backend)
    loss = getattr(model, "loss_backend", None)
    table = getattr(model, "item_embedding", None)
    if isinstance(loss, str) and isinstance(table, nn.Embedding):
        sizes = (("B", batch), ("V", table.num_embeddings), ("d", table.embedding_dim))
        found["full_catalog_ce"] = (chosen_backend("full_catalog_ce", loss, device, dtype, sizes), loss)
    return found
