"""TedRec (Xu et al., CIKM 2024): text-ID sequence-level fusion, as published (docs/DESIGN.md section 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tedrec_fast.config import TedRecConfig
from tedrec_fast.models.backbone import SASRecBackbone
from tedrec_fast.models.fusion import AblatedSpectralFusion
from tedrec_fast.models.moe import MoEModulation
from tedrec_fast.nn import FusedSpectralFusion
from tedrec_fast.nn.backend_choice import check_backend_name

__all__ = ["TedRec"]


class TedRec(SASRecBackbone):
    """TedRec: MoE-modulated text + ID embeddings, spectral fusion, SASRec encoder, cosine softmax.

    Per position ``j`` of a right-padded sequence of exactly ``max_seq_length`` items:

    1. ``T = moe_adaptor(x)``: MoE modulation of the frozen text vectors ``x`` (:class:`MoEModulation`);
    2. ``V = fusion(E, T)`` with ``E`` the ID embeddings (:class:`~tedrec_fast.nn.FusedSpectralFusion`);
    3. SASRec: ``+`` positions, LayerNorm, dropout, Transformer; representation at position ``len - 1``.

    Training loss: cross-entropy over all items (padding row included) of ``cos(seq, item_embedding) /
    temperature``; eval scores (:meth:`full_sort_scores`) are the cosine without temperature.

    Args:
        n_items: number of items including the padding item 0.
        text_embeddings: ``(n_items, text_dim)`` language-model vectors in item-index order; stored as a
            frozen float32 buffer ``text_embeddings`` (saved in the state dict) with row 0 set to zero.
        max_seq_length: sequence length ``n``; inputs must have exactly this length (the fusion filter and
            the modulation tables are per position).
        hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout: SASRec part.
        n_experts, adaptor_dropout: MoE modulation (dropout on the experts' input).
        temperature: softmax temperature of the training loss.
        fusion_backend: backend of the fused op (``"auto"``, ``"triton"``, ``"cuda"``, ``"torch"``); used only with all
            of ``use_gates``, ``use_item_filter``, ``use_spectral_fusion`` on.
        use_moe_modulation: False = "w/o MM": one position-independent table per expert (UniSRec's
            MoE parametric whitening) instead of per-position modulation tables.
        use_gates: False = "w/o AG": ``V = E2 + F`` instead of the dual gates.
        use_item_filter: False = "w/o IF": raw ID embeddings ``E`` instead of the filtered ``E2``.
        use_spectral_fusion: False = "w/o TF": ``F = T * E`` (time domain) instead of the spectral product.
        reference: the public implementation's computation step for step: the MoE modulation in its eager
            formulas with ``nn.Dropout`` masks drawn in its order, the last Transformer layer at every position.
            Default (False): the fast path: the op :func:`~tedrec_fast.ops.moe_modulation.moe_modulation` (its
            own counter-based masks), hidden-state dropout from the dropout op (:class:`tedrec_fast.nn.Dropout`) and
            the last layer only at each sequence's last position.
        moe_backend: backend of the MoE-modulation op (``"auto"``, ``"triton"``, ``"cpp"``, ``"torch"``).
        loss_backend: backend of the training loss :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(
        self,
        n_items: int,
        text_embeddings: torch.Tensor,
        max_seq_length: int = 50,
        hidden_size: int = TedRecConfig.hidden_size,
        n_layers: int = TedRecConfig.n_layers,
        n_heads: int = TedRecConfig.n_heads,
        inner_size: int = TedRecConfig.inner_size,
        hidden_dropout: float = TedRecConfig.hidden_dropout,
        attn_dropout: float = TedRecConfig.attn_dropout,
        n_experts: int = TedRecConfig.n_experts,
        adaptor_dropout: float = TedRecConfig.adaptor_dropout,
        temperature: float = TedRecConfig.temperature,
        fusion_backend: str = "auto",
        use_moe_modulation: bool = True,
        use_gates: bool = True,
        use_item_filter: bool = True,
        use_spectral_fusion: bool = True,
        reference: bool = False,
        moe_backend: str = "auto",
        loss_backend: str = "auto",
    ) -> None:
        super().__init__(
            n_items, max_seq_length, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout,
            reference=reference,
        )
        text = torch.as_tensor(text_embeddings)
        if text.dim() != 2 or text.shape[0] != n_items:
            raise ValueError(f"text_embeddings must be (n_items={n_items}, text_dim), got {tuple(text.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        check_backend_name("TedRec", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
        text = text.detach().to(torch.float32).clone()
        text[0] = 0.0
        self.register_buffer("text_embeddings", text)
        self.temperature = temperature
        self.moe_adaptor = MoEModulation(
            n_experts, text.shape[1], hidden_size, adaptor_dropout, max_seq_length if use_moe_modulation else 1,
            reference=reference, backend=moe_backend,
        )
        if use_gates and use_item_filter and use_spectral_fusion:
            self.fusion = FusedSpectralFusion(max_seq_length, hidden_size, backend=fusion_backend)
        else:
            self.fusion = AblatedSpectralFusion(
                max_seq_length, hidden_size, use_gates, use_item_filter, use_spectral_fusion
            )

    def embed_sequence(self, item_seq: torch.Tensor) -> torch.Tensor:
        if item_seq.shape[1] != self.max_seq_length:
            raise ValueError(
                f"TedRec: item_seq must have length max_seq_length={self.max_seq_length} (right-padded with 0), "
                f"got {item_seq.shape[1]}"
            )
        text = self.moe_adaptor.forward_items(*self.item_embedding.index_rows(item_seq, self.text_embeddings))
        return self.fusion(self.item_embedding(item_seq), text)

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward(item_seq, item_seq_len), dim=-1)

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        self.check_item_range(start, stop)
        return F.normalize(self.item_embedding.rows(start, stop), dim=-1)

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.item_embedding.cross_entropy(
            self.forward(item_seq, item_seq_len), target, temperature=self.temperature, normalize=True,
            backend=self.loss_backend
        )
