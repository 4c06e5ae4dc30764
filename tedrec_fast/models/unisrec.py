"""UniSRec-style baseline: MoE-whitened text + ID embedding per item, SASRec encoder, cosine softmax."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tedrec_fast.config import UniSRecConfig
from tedrec_fast.models.backbone import SASRecBackbone
from tedrec_fast.models.moe import MoEModulation
from tedrec_fast.nn.backend_choice import check_backend_name
from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy

__all__ = ["UniSRecStyle"]


class UniSRecStyle(SASRecBackbone):
    """UniSRec (Hou et al., KDD 2022) fine-tuned with IDs, the setting TedRec's paper compares with.

    Item representation ``r_i = adaptor(x_i) + e_i``: the MoE adaptor (:class:`MoEModulation` with one
    position-independent whitening table per expert, i.e. UniSRec's parametric whitening, no positional
    modulation) of the frozen text vector ``x_i`` plus the ID embedding ``e_i``. The sequence input is
    ``r`` of each history item; SASRec encodes it (positions, LayerNorm, dropout, Transformer, position
    ``len - 1``). Loss: cross-entropy over all items of ``cos(seq, r) / temperature``; eval scores: the
    cosine. Defaults are TedRec's where they apply (d = 300, 8 experts, adaptor dropout 0.2, temperature 0.07).

    Args:
        n_items: number of items including the padding item 0.
        text_embeddings: ``(n_items, text_dim)`` frozen text vectors in item-index order (float32 buffer,
            row 0 set to 0).
        max_seq_length: the longest input sequence.
        hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout: SASRec part.
        n_experts, adaptor_dropout: the MoE adaptor.
        temperature: softmax temperature of the training loss.
        loss_backend: backend of the training loss :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(
        self,
        n_items: int,
        text_embeddings: torch.Tensor,
        max_seq_length: int = 50,
        hidden_size: int = UniSRecConfig.hidden_size,
        n_layers: int = UniSRecConfig.n_layers,
        n_heads: int = UniSRecConfig.n_heads,
        inner_size: int = UniSRecConfig.inner_size,
        hidden_dropout: float = UniSRecConfig.hidden_dropout,
        attn_dropout: float = UniSRecConfig.attn_dropout,
        n_experts: int = UniSRecConfig.n_experts,
        adaptor_dropout: float = UniSRecConfig.adaptor_dropout,
        temperature: float = UniSRecConfig.temperature,
        loss_backend: str = "auto",
    ) -> None:
        super().__init__(
            n_items, max_seq_length, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout
        )
        text = torch.as_tensor(text_embeddings)
        if text.dim() != 2 or text.shape[0] != n_items:
            raise ValueError(f"text_embeddings must be (n_items={n_items}, text_dim), got {tuple(text.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        check_backend_name("UniSRecStyle", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
        text = text.detach().to(torch.float32).clone()
        text[0] = 0.0
        self.register_buffer("text_embeddings", text)
        self.temperature = temperature
        self.moe_adaptor = MoEModulation(n_experts, text.shape[1], hidden_size, adaptor_dropout, n_positions=1)

    def embed_sequence(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.moe_adaptor(F.embedding(item_seq, self.text_embeddings)) + self.item_embedding(item_seq)

    def item_representations(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """``(stop - start, d)``: ``adaptor(text) + ID embedding`` of items ``start .. stop - 1`` (default: all,
        padding row included)."""
        text = self.text_embeddings[start:stop]
        return self.moe_adaptor(text.unsqueeze(0)).squeeze(0) + self.item_embedding.weight[start:stop]

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward(item_seq, item_seq_len), dim=-1)

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        self.check_item_range(start, stop)
        return F.normalize(self.item_representations(start, stop), dim=-1)

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return full_catalog_cross_entropy(
            self.forward(item_seq, item_seq_len), self.item_representations(), target, temperature=self.temperature,
            backend=self.loss_backend,
        )
