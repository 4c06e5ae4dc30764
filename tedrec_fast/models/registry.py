"""``build_model``: the recommenders by name."""

from __future__ import annotations

from typing import Any

import torch

from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.fmlprec import FMLPRec
from tedrec_fast.models.sasrec import SASRec
from tedrec_fast.models.tedrec import TedRec
from tedrec_fast.models.tssr import TSSR
from tedrec_fast.models.unisrec import UniSRecStyle

__all__ = ["build_model", "needs_text_embeddings", "MODEL_NAMES"]

#: TedRec and its paper ablations: name -> TedRec flags
_TEDREC_VARIANTS: dict[str, dict[str, bool]] = {
    "tedrec": {},
    "tedrec-wo-mm": {"use_moe_modulation": False},
    "tedrec-wo-ag": {"use_gates": False},
    "tedrec-wo-if": {"use_item_filter": False},
    "tedrec-wo-tf": {"use_spectral_fusion": False},
}
#: the other text models: name -> class
_TEXT_MODELS: dict[str, type[SequentialRecommender]] = {"unisrec": UniSRecStyle, "tssr": TSSR}
#: the ID-only models: name -> class
_ID_MODELS: dict[str, type[SequentialRecommender]] = {"sasrec": SASRec, "fmlprec": FMLPRec}
MODEL_NAMES: tuple[str, ...] = (*_TEDREC_VARIANTS, *_ID_MODELS, *_TEXT_MODELS)


def needs_text_embeddings(name: str) -> bool:
    """Whether :func:`build_model` needs ``text_embeddings`` for model ``name`` (case-insensitive)."""
    return name.lower() in _TEDREC_VARIANTS or name.lower() in _TEXT_MODELS


def build_model(
    name: str,
    n_items: int,
    max_seq_length: int,
    text_embeddings: torch.Tensor | None = None,
    **overrides: Any,
) -> SequentialRecommender:
    """Build a recommender by name (case-insensitive), with constructor keyword ``overrides``.

    Names: ``"tedrec"``, ``"tedrec-wo-mm"``, ``"tedrec-wo-ag"``, ``"tedrec-wo-if"``, ``"tedrec-wo-tf"``
    (:class:`TedRec` and its ablations), ``"unisrec"`` (:class:`UniSRecStyle`), ``"tssr"`` (:class:`TSSR`) — these
    need ``text_embeddings`` — and the ID-only ``"sasrec"`` (:class:`SASRec`) and ``"fmlprec"``
    (:class:`FMLPRec`), which ignore ``text_embeddings``.

    Raises:
        ValueError: unknown name, or a text model without ``text_embeddings``.
    """
    key = name.lower()
    if key in _ID_MODELS:
        return _ID_MODELS[key](n_items, max_seq_length, **overrides)
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if text_embeddings is None:
        raise ValueError(f"model {name!r} needs text_embeddings of shape (n_items, text_dim)")
    if key in _TEXT_MODELS:
        return _TEXT_MODELS[key](n_items, text_embeddings, max_seq_length=max_seq_length, **overrides)
    kwargs = {**_TEDREC_VARIANTS[key], **overrides}
    return TedRec(n_items, text_embeddings, max_seq_length=max_seq_length, **kwargs)
