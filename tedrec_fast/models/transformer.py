"""SASRec's Transformer encoder (RecBole semantics), written with plain torch ops.

Post-LN layers: ``x = LN(x + Dropout(Attn(x)))``, ``x = LN(x + Dropout(FFN(x)))`` with a GELU (erf) FFN.
Submodule names follow RecBole's ``TransformerEncoder`` (``layer.{i}.multi_head_attention.{query,key,value,
dense,LayerNorm}``, ``layer.{i}.feed_forward.{dense_1,dense_2,LayerNorm}``) so public checkpoints load as is.
Hidden-state dropout is :class:`tedrec_fast.nn.Dropout`: the dropout op's masks, or torch's with ``reference=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tedrec_fast.nn.dropout import Dropout

__all__ = ["PackedTokens", "PositionalInput", "TransformerEncoder", "causal_padding_mask", "gather_last",
           "init_recbole_weights"]

#: RecBole's additive value for masked attention scores
MASK_VALUE = -10000.0
#: how many sizes a packed ``(N, d)`` tensor of :class:`PackedTokens` can take for one ``(B, L)``
PACK_SIZES = 32


def causal_padding_mask(item_seq: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask ``(B, 1, L, L)``: 0 where query i may see key j, -10000 elsewhere.

    Key j is visible to query i iff ``j <= i`` (causal) and ``item_seq[:, j] != 0`` (not padding).
    """
    length = item_seq.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()
    visible = causal.view(1, 1, length, length) & (item_seq != 0).view(-1, 1, 1, length)
    zero = torch.zeros((), dtype=dtype, device=item_seq.device)
    return torch.where(visible, zero, zero + MASK_VALUE)


def gather_last(hidden: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    """Rows ``hidden[b, item_seq_len[b] - 1]`` of a ``(B, L, d)`` tensor, shape ``(B, d)``."""
    index = (item_seq_len.long() - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


def init_recbole_weights(module: nn.Module, std: float = 0.02) -> None:
    """RecBole's init, for ``Module.apply``: Linear/Embedding N(0, std), Linear bias 0, LayerNorm (1, 0).

    As in RecBole, the whole embedding table is drawn, the padding row included.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PositionalInput:
    """Mixin for an ``nn.Module``: the input stage ``dropout(LayerNorm(x + position_embedding))``.

    The submodules keep RecBole's names (``position_embedding``, ``LayerNorm``, ``dropout``), so state
    dicts of RecBole models load unchanged.
    """

    def init_positional_input(self, max_seq_length: int, hidden_size: int, hidden_dropout: float,
                              eps: float, reference: bool = False) -> None:
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = Dropout(hidden_dropout, reference)

    def add_positions(self, emb: torch.Tensor) -> torch.Tensor:
        """``(B, L, d)`` per-position inputs with positions added, normalised and dropped out."""
        positions = torch.arange(emb.shape[1], device=emb.device)
        return self.dropout(self.LayerNorm(emb + self.position_embedding(positions)))


class PackedTokens:
    """The real positions of a ``(B, L)`` batch as the rows of a packed ``(N, d)`` tensor, in row-major order.

    ``N`` is rounded up to a multiple of ``B * L / PACK_SIZES`` (at most ``B * L``) by keeping some other
    positions too (the first ones in row-major order): packed tensors then take one of at most
    :data:`PACK_SIZES` sizes. With a size per batch, glibc's heap fragmented without bound on the CPU (the
    resident memory of an ML-100k TedRec run grew by ≈ 25 MB per step); a kept padded position is a masked key
    that no real position reads, so the extra rows change nothing.

    Args:
        real: ``(B, L)`` bool, the positions to keep (e.g. ``item_seq != 0``).
        last: ``(B,)`` positions kept as well, whatever ``real`` says (the ones a model reads).
    """

    def __init__(self, real: torch.Tensor, last: torch.Tensor) -> None:
        self.batch, self.length = real.shape
        keep = real.clone()
        keep[torch.arange(self.batch, device=real.device), last] = True
        keep = keep.reshape(-1)
        total, count = keep.numel(), int(keep.sum())
        step = -(-total // PACK_SIZES)
        extra = min(-count % step, total - count)
        if extra:
            keep[(~keep).nonzero()[:extra, 0]] = True
        self.index = keep.nonzero().squeeze(1)
        self._row = torch.full((self.batch * self.length,), -1, dtype=torch.long, device=real.device)
        self._row[self.index] = torch.arange(len(self.index), device=real.device)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, d)`` -> the ``(N, d)`` rows at the kept positions."""
        return x.reshape(self.batch * self.length, x.shape[-1]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, d)`` rows -> ``(B, L, d)`` with zeros at the positions not kept."""
        full = x.new_zeros(self.batch * self.length, x.shape[-1]).index_copy(0, self.index, x)
        return full.view(self.batch, self.length, x.shape[-1])

    def rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Packed row of position ``positions[b]`` of each sequence ``b`` (``(B,)``; kept positions only)."""
        return self._row[torch.arange(self.batch, device=positions.device) * self.length + positions]


class MultiHeadAttention(nn.Module):
    """Self-attention block with residual and post-LayerNorm: ``LN(x + Dropout(Dense(Attn(x))))``."""

    def __init__(self, n_heads: int, hidden_size: int, hidden_dropout: float, attn_dropout: float, eps: float,
                 reference: bool = False) -> None:
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of n_heads ({n_heads})")
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.out_dropout = Dropout(hidden_dropout, reference)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.n_heads, hidden // self.n_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask.to(q.dtype), dropout_p=self.attn_dropout if self.training else 0.0
        )
        context = context.transpose(1, 2).reshape(x.shape)
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)

    def forward_packed(self, x: torch.Tensor, attn_mask: torch.Tensor, tokens: PackedTokens) -> torch.Tensor:
        """:meth:`forward` at the packed positions ``tokens`` only: ``x`` and the result are ``(N, d)`` rows.

        The other positions enter the attention as zero queries, keys and values; their keys are masked.
        """
        q, k, v = (self._heads(tokens.unpack(linear(x))) for linear in (self.query, self.key, self.value))
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask.to(q.dtype), dropout_p=self.attn_dropout if self.training else 0.0
        )
        context = tokens.pack(context.transpose(1, 2).reshape(tokens.batch, tokens.length, x.shape[-1]))
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)

    def forward_last(self, x: torch.Tensor, attn_mask: torch.Tensor, tokens: PackedTokens,
                     last: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_packed` at one position per sequence only: ``(B, d)``, the rows at positions ``last``.

        Keys and values are computed at every packed position, the query, attention output and residual only at
        ``last`` (``(B,)`` indices).
        """
        x_last = x[tokens.rows(last)]
        q = self._heads(self.query(x_last).unsqueeze(1))
        k, v = (self._heads(tokens.unpack(linear(x))) for linear in (self.key, self.value))
        rows = torch.arange(tokens.batch, device=x.device)
        mask = attn_mask[rows, :, last].unsqueeze(2)  # (B, 1, 1, L): the mask rows of the queries at ``last``
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.to(q.dtype), dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.LayerNorm(self.out_dropout(self.dense(context.reshape(x_last.shape))) + x_last)


class FeedForward(nn.Module):
    """Position-wise FFN with residual and post-LayerNorm: ``LN(x + Dropout(W2 GELU(W1 x)))``."""

    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout: float, eps: float,
                 reference: bool = False) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = Dropout(hidden_dropout, reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense_2(F.gelu(self.dense_1(x)))) + x)


class TransformerLayer(nn.Module):
    """One post-LN Transformer layer: attention block then feed-forward block."""

    def __init__(
        self, n_heads: int, hidden_size: int, inner_size: int, hidden_dropout: float, attn_dropout: float, eps: float,
        reference: bool = False,
    ) -> None:
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(n_heads, hidden_size, hidden_dropout, attn_dropout, eps,
                                                       reference)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, eps, reference)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.multi_head_attention(x, attn_mask))

    def forward_packed(self, x: torch.Tensor, attn_mask: torch.Tensor, tokens: PackedTokens) -> torch.Tensor:
        """:meth:`forward` at the packed positions ``tokens`` only (``(N, d)`` rows in and out)."""
        return self.feed_forward(self.multi_head_attention.forward_packed(x, attn_mask, tokens))

    def forward_last(self, x: torch.Tensor, attn_mask: torch.Tensor, tokens: PackedTokens,
                     last: torch.Tensor) -> torch.Tensor:
        """The rows ``last`` of :meth:`forward_packed`, computing queries, attention output and FFN only there."""
        return self.feed_forward(self.multi_head_attention.forward_last(x, attn_mask, tokens, last))


class TransformerEncoder(nn.Module):
    """A stack of ``n_layers`` :class:`TransformerLayer`; ``forward(x (B, L, d), mask (B, 1, L, L))``."""

    def __init__(
        self,
        n_layers: int = 2,
        n_heads: int = 2,
        hidden_size: int = 64,
        inner_size: int = 256,
        hidden_dropout: float = 0.5,
        attn_dropout: float = 0.5,
        eps: float = 1e-12,
        reference: bool = False,
    ) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            TransformerLayer(n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, eps, reference)
            for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, attn_mask)
        return x

    def forward_last(self, x: torch.Tensor, attn_mask: torch.Tensor, last: torch.Tensor,
                     real: torch.Tensor | None = None) -> torch.Tensor:
        """``forward(x, attn_mask)[arange(B), last]`` ``(B, d)``, computing only what that result reads.

        Every layer runs only at the real positions ``real`` (``(B, L)`` bool; default: all) and at ``last``: a
        padded position is a masked key, so no real position reads it (exact wherever the positions ``last`` hold
        items, as in every batch of the data). The last layer computes its queries, attention output and
        feed-forward only at positions ``last`` (``(B,)`` indices), its keys and values at the real ones.
        """
        if real is None:
            real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        tokens = PackedTokens(real, last)
        x = tokens.pack(x)
        for layer in self.layer[:-1]:
            x = layer.forward_packed(x, attn_mask, tokens)
        return self.layer[-1].forward_last(x, attn_mask, tokens, last)
