"""TSSR (arXiv 2403.07623): two-stream ID / content Transformers, cross-attention, gate, hierarchical contrasting.

docs/DESIGN.md section 5. Per right-padded sequence (item 0 = padding, RecBole convention):

1. **Unimodal encoders**: the ID stream embeds items with ``item_embedding``, the content stream with
   ``content_proj(text_embeddings[item])`` (a frozen text table, Linear to ``d``); each adds its own learned
   positions, LayerNorm, dropout and runs its own causal Transformer (:class:`TransformerEncoder`).
2. **Multimodal encoders**: per stream a stack of :class:`CrossAttentionLayer` s; the queries are the stream's
   own states, the keys and values the *other* stream's unimodal output.
3. **Gate**: ``S = sigmoid(W [F_id; F_con] + b)`` (``W: 2d -> d``), ``F = S * F_id + (1 - S) * F_con`` with
   ``F_id, F_con`` the multimodal outputs.

**Mask** (:func:`prefix_mask`): query ``t`` sees key ``j`` iff ``j <= t`` and (``j < len`` or ``j == t``). Validity
comes from ``item_seq_len``, not from item ids, so whatever sits after ``len`` cannot reach a position before
``len``; a padded query sees the valid prefix and itself, never a later position, and no row is fully masked.
The public TSSR code pads on the left and lets fully-masked padded queries attend uniformly to every
position, future items included: that leak is a bug and is not reproduced here.

**Item representation** for scoring and for the cross-entropy: ``item_embedding + content_proj(text)`` (the sum
of the two modalities' item embeddings), dot product with the fused state; scores need no text at
inference beyond the frozen table kept in the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tedrec_fast.config import TSSRConfig
from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.transformer import (
    MASK_VALUE,
    FeedForward,
    MultiHeadAttention,
    PositionalInput,
    TransformerEncoder,
    gather_last,
    init_recbole_weights,
)
from tedrec_fast.nn.backend_choice import check_backend_name
from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy

__all__ = ["TSSR", "CrossAttentionLayer", "prefix_mask", "next_item_targets", "info_nce", "gated_fusion",
           "IGNORE_INDEX"]

#: target value of positions the cross-entropy ignores (padding)
IGNORE_INDEX = -100


def _valid_positions(item_seq_len: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, L)`` bool: position ``t`` holds an item of the history (``t < item_seq_len``)."""
    return torch.arange(length, device=item_seq_len.device).view(1, -1) < item_seq_len.view(-1, 1)


def prefix_mask(item_seq_len: torch.Tensor, length: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask ``(B, 1, L, L)``: 0 where query ``t`` may see key ``j``, -10000 elsewhere.

    Key ``j`` is visible to query ``t`` iff ``j <= t`` and (``j < item_seq_len`` or ``j == t``): causal, padding
    keys hidden except a padded query's own position (so no row is fully masked and nothing leaks forward).
    """
    position = torch.arange(length, device=item_seq_len.device)
    causal = position.view(-1, 1) >= position.view(1, -1)
    valid_key = _valid_positions(item_seq_len, length).view(-1, 1, 1, length)
    visible = causal & (valid_key | torch.eye(length, dtype=torch.bool, device=item_seq_len.device))
    zero = torch.zeros((), dtype=dtype, device=item_seq_len.device)
    return torch.where(visible, zero, zero + MASK_VALUE)


def next_item_targets(item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-position next items ``(B, L)``: ``item_seq[:, t + 1]`` for ``t < len - 1``, ``target`` at ``len - 1``,
    :data:`IGNORE_INDEX` at padded positions ``t >= len``."""
    length = item_seq.shape[1]
    position = torch.arange(length, device=item_seq.device).view(1, -1)
    last = (item_seq_len.long() - 1).view(-1, 1)
    shifted = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.shape[0], 1)], dim=1)
    targets = torch.where(position < last, shifted, torch.full_like(item_seq, IGNORE_INDEX))
    return torch.where(position == last, target.view(-1, 1).to(item_seq.dtype), targets)


def info_nce(
    query: torch.Tensor, key: torch.Tensor, temperature: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """One-direction InfoNCE with in-batch negatives, cosine similarity: mean over valid rows ``b`` of
    ``-log softmax_c(cos(query[b], key[c]) / temperature)[b]``.

    ``query, key``: ``(..., B, d)`` (leading dims are independent groups, e.g. steps); ``valid``: ``(..., B)``
    bool, rows and candidate columns that take part (default all). Returns a scalar (float32).
    """
    sims = (F.normalize(query.float(), dim=-1) @ F.normalize(key.float(), dim=-1).transpose(-1, -2)) / temperature
    if valid is None:
        valid = torch.ones(sims.shape[:-1], dtype=torch.bool, device=sims.device)
    sims = sims.masked_fill(~valid.unsqueeze(-2), MASK_VALUE)
    loss = torch.logsumexp(sims, dim=-1) - sims.diagonal(dim1=-2, dim2=-1)
    weight = valid.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def gated_fusion(f_id: torch.Tensor, f_con: torch.Tensor, gate: nn.Linear) -> torch.Tensor:
    """``S = sigmoid(gate([f_id; f_con]))``, ``S * f_id + (1 - S) * f_con`` (``gate: 2d -> d``)."""
    s = torch.sigmoid(gate(torch.cat([f_id, f_con], dim=-1)))
    return s * f_id + (1.0 - s) * f_con


class CrossAttention(MultiHeadAttention):
    """Cross-attention block with residual and post-LN: ``LN(x + Dropout(Dense(Attn(q=x, k=v=memory))))``."""

    def forward(self, x: torch.Tensor, memory: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        q, k, v = self._heads(self.query(x)), self._heads(self.key(memory)), self._heads(self.value(memory))
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask.to(q.dtype), dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.LayerNorm(self.out_dropout(self.dense(context.transpose(1, 2).reshape(x.shape))) + x)


class CrossAttentionLayer(nn.Module):
    """One multimodal layer: :class:`CrossAttention` over the other stream, then the feed-forward block."""

    def __init__(
        self, n_heads: int, hidden_size: int, inner_size: int, hidden_dropout: float, attn_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.cross_attention = CrossAttention(n_heads, hidden_size, hidden_dropout, attn_dropout, eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, eps)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.cross_attention(x, memory, attn_mask))


class _Stream(PositionalInput, nn.Module):
    """One modality: positions + LayerNorm + dropout + causal Transformer, then cross-attention layers."""

    def __init__(self, max_seq_length: int, hidden_size: int, n_layers: int, n_cross_layers: int, n_heads: int,
                 inner_size: int, hidden_dropout: float, attn_dropout: float, eps: float) -> None:
        super().__init__()
        self.init_positional_input(max_seq_length, hidden_size, hidden_dropout, eps)
        self.encoder = TransformerEncoder(n_layers, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, eps)
        self.cross = nn.ModuleList(
            CrossAttentionLayer(n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, eps)
            for _ in range(n_cross_layers)
        )

    def unimodal(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.add_positions(emb), mask)

    def multimodal(self, own: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.cross:
            own = layer(own, other, mask)
        return own


class TSSR(SequentialRecommender):
    """Two-stream sequential recommender with hierarchical contrasting (see the module docstring).

    Training loss: ``CE + user_weight * L_user + item_weight * L_item``, where

    * ``CE``: cross-entropy over the whole catalog (dot-product logits, :func:`full_catalog_cross_entropy`, no
      ``B x L x |V|`` logits tensor) at every valid position ``t`` of the fused states (targets from
      :func:`next_item_targets`: the next history item, ``target`` at ``len - 1``), averaged over valid positions;
    * ``L_user``: InfoNCE (cosine, ``contrast_temperature``, in-batch negatives) between the valid-position means
      of the two unimodal outputs, both directions, averaged;
    * ``L_item``: at each step ``t``, the ID stream's unimodal state vs the content embedding of the next item
      and the content stream's state vs the ID embedding of the next item (the two cross-modal directions,
      averaged), negatives = the other sequences' next items at the same step, valid positions only.

    Args:
        n_items: number of items including the padding item 0.
        text_embeddings: ``(n_items, text_dim)`` frozen text vectors in item-index order (a float32 buffer,
            row 0 set to 0).
        max_seq_length: the longest input sequence.
        hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout: each stream's unimodal
            Transformer (SASRec defaults); ``n_cross_layers``: cross-attention layers per stream.
        contrast_temperature: temperature of both InfoNCE terms (0.2).
        user_weight, item_weight: weights of ``L_user`` and ``L_item`` (1, 1).
        loss_backend: backend of the cross-entropy :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(
        self,
        n_items: int,
        text_embeddings: torch.Tensor,
        max_seq_length: int = 50,
        hidden_size: int = TSSRConfig.hidden_size,
        n_layers: int = TSSRConfig.n_layers,
        n_cross_layers: int = TSSRConfig.n_cross_layers,
        n_heads: int = TSSRConfig.n_heads,
        inner_size: int = TSSRConfig.inner_size,
        hidden_dropout: float = TSSRConfig.hidden_dropout,
        attn_dropout: float = TSSRConfig.attn_dropout,
        contrast_temperature: float = TSSRConfig.contrast_temperature,
        user_weight: float = TSSRConfig.user_weight,
        item_weight: float = TSSRConfig.item_weight,
        layer_norm_eps: float = TSSRConfig.layer_norm_eps,
        loss_backend: str = "auto",
    ) -> None:
        super().__init__()
        if n_items < 2:
            raise ValueError(f"n_items counts the padding item 0 and must be >= 2, got {n_items}")
        text = torch.as_tensor(text_embeddings)
        if text.dim() != 2 or text.shape[0] != n_items:
            raise ValueError(f"text_embeddings must be (n_items={n_items}, text_dim), got {tuple(text.shape)}")
        if contrast_temperature <= 0:
            raise ValueError(f"contrast_temperature must be > 0, got {contrast_temperature}")
        if user_weight < 0 or item_weight < 0:
            raise ValueError(f"user_weight and item_weight must be >= 0, got {user_weight}, {item_weight}")
        if n_cross_layers < 1:
            raise ValueError(f"n_cross_layers must be >= 1, got {n_cross_layers}")
        check_backend_name("TSSR", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
        self.n_items = n_items
        self.max_seq_length = max_seq_length
        self.contrast_temperature = contrast_temperature
        self.user_weight = user_weight
        self.item_weight = item_weight
        text = text.detach().to(torch.float32).clone()
        text[0] = 0.0
        self.register_buffer("text_embeddings", text)
        self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.content_proj = nn.Linear(text.shape[1], hidden_size)
        sizes = (max_seq_length, hidden_size, n_layers, n_cross_layers, n_heads, inner_size, hidden_dropout,
                 attn_dropout, layer_norm_eps)
        self.id_stream = _Stream(*sizes)
        self.content_stream = _Stream(*sizes)
        self.gate = nn.Linear(2 * hidden_size, hidden_size)
        self.apply(init_recbole_weights)

    def _check(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> None:
        if item_seq.dim() != 2 or item_seq.shape[1] > self.max_seq_length:
            raise ValueError(
                f"TSSR: item_seq must be (B, L) with L <= {self.max_seq_length}, got {tuple(item_seq.shape)}"
            )
        if item_seq_len.shape != item_seq.shape[:1]:
            raise ValueError(
                f"TSSR: item_seq_len must have shape ({item_seq.shape[0]},), got {tuple(item_seq_len.shape)}"
            )

    def content_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """Content-stream item embeddings: ``content_proj(text_embeddings[items])``."""
        return self.content_proj(F.embedding(items, self.text_embeddings))

    def item_representations(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """``(stop - start, d)``: ID embedding + projected content embedding of items ``start .. stop - 1``
        (default: all; the scoring side)."""
        return self.item_embedding.weight[start:stop] + self.content_proj(self.text_embeddings[start:stop])

    def encode(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> dict[str, torch.Tensor]:
        """All states ``(B, L, d)``: unimodal ``"id"``, ``"content"`` and the gated multimodal ``"fused"``."""
        self._check(item_seq, item_seq_len)
        mask = prefix_mask(item_seq_len, item_seq.shape[1], self.item_embedding.weight.dtype)
        h_id = self.id_stream.unimodal(self.item_embedding(item_seq), mask)
        h_con = self.content_stream.unimodal(self.content_embedding(item_seq), mask)
        f_id = self.id_stream.multimodal(h_id, h_con, mask)
        f_con = self.content_stream.multimodal(h_con, h_id, mask)
        return {"id": h_id, "content": h_con, "fused": gated_fusion(f_id, f_con, self.gate)}

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return gather_last(self.encode(item_seq, item_seq_len)["fused"], item_seq_len)

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.forward(item_seq, item_seq_len)

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        self.check_item_range(start, stop)
        return self.item_representations(start, stop)

    def losses(
        self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The three terms ``{"ce", "user", "item"}`` (unweighted scalars) of :meth:`calculate_loss`."""
        states = self.encode(item_seq, item_seq_len)
        valid = _valid_positions(item_seq_len, item_seq.shape[1])
        targets = next_item_targets(item_seq, item_seq_len, target)
        ce = full_catalog_cross_entropy(states["fused"].flatten(0, 1), self.item_representations(), targets.flatten(),
                                        temperature=1.0, normalize=False, ignore_index=IGNORE_INDEX,
                                        backend=self.loss_backend)
        weight = valid.unsqueeze(-1).to(states["id"].dtype)
        count = item_seq_len.view(-1, 1).to(weight.dtype)
        user_id, user_con = ((states[k] * weight).sum(1) / count for k in ("id", "content"))
        tau = self.contrast_temperature
        user = 0.5 * (info_nce(user_id, user_con, tau) + info_nce(user_con, user_id, tau))
        next_items = targets.clamp_min(0).transpose(0, 1)  # (L, B); padded positions point at item 0, unused
        steps_valid = valid.transpose(0, 1)
        item = 0.5 * (
            info_nce(states["id"].transpose(0, 1), self.content_embedding(next_items), tau, steps_valid)
            + info_nce(states["content"].transpose(0, 1), self.item_embedding(next_items), tau, steps_valid)
        )
        return {"ce": ce, "user": user, "item": item}

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.losses(item_seq, item_seq_len, target)
        return terms["ce"] + self.user_weight * terms["user"] + self.item_weight * terms["item"]
