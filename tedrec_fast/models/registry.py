"""``build_model``: the recommenders by name."""

from __future__ import annotations

from typing import Any

import torch

from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.sasrec import SASRec
from tedrec_fast.models.tedrec import TedRec

__all__ = ["build_model", "MODEL_NAMES"]

#: TedRec and its paper ablations: name -> TedRec flags
_TEDREC_VARIANTS: dict[str, dict[str, bool]] = {
    "tedrec": {},
    "tedrec-wo-mm": {"use_moe_modulation": False},
    "tedrec-wo-ag": {"use_gates": False},
    "tedrec-wo-if": {"use_item_filter": False},
    "tedrec-wo-tf": {"use_spectral_fusion": False},
}
MODEL_NAMES: tuple[str, ...] = (*_TEDREC_VARIANTS, "sasrec")


def build_model(
    name: str,
    n_items: int,
    max_seq_length: int,
    text_embeddings: torch.Tensor | None = None,
    **overrides: Any,
) -> SequentialRecommender:
    """Build a recommender by name (case-insensitive), with constructor keyword ``overrides``.

    Names: ``"tedrec"``, ``"tedrec-wo-mm"``, ``"tedrec-wo-ag"``, ``"tedrec-wo-if"``, ``"tedrec-wo-tf"``
    (:class:`TedRec` and its ablations; they need ``text_embeddings``) and ``"sasrec"`` (:class:`SASRec`;
    ``text_embeddings`` is ignored).

    Raises:
        ValueError: unknown name, or a TedRec variant without ``text_embeddings``.
    """
    key = name.lower()
    if key == "sasrec":
        return SASRec(n_items, max_seq_length, **overrides)
    if key not in _TEDREC_VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if text_embeddings is None:
        raise ValueError(f"model {name!r} needs text_embeddings of shape (n_items, text_dim)")
    kwargs = {**_TEDREC_VARIANTS[key], **overrides}
    return TedRec(n_items, text_embeddings, max_seq_length=max_seq_length, **kwargs)
