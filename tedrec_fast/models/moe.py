"""TedRec's MoE modulation of frozen text embeddings (paper section 3.1.1, docs/DESIGN.md section 1 step 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tedrec_fast.nn.backend_choice import chosen_backend
from tedrec_fast.ops.moe_modulation import moe_modulation

__all__ = ["ModulationExpert", "MoEModulation"]


class ModulationExpert(nn.Module):
    """One expert: ``lin(dropout(x) - bias)`` with ``lin`` a bias-free ``text_dim -> hidden_size`` Linear.

    ``bias`` (init 0) is the expert's modulation table ``(1, n_positions, text_dim)``: one row per sequence
    position (TedRec), or a single row shared by all positions (``n_positions=1``: UniSRec's parametric
    whitening, the paper's "w/o MM" ablation). It is computed as ``lin(dropout(x)) - lin(bias)``, equal
    to the formula above but without materialising the ``(B, n, text_dim)`` difference.
    """

    def __init__(self, text_dim: int, hidden_size: int, dropout: float, n_positions: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(1, n_positions, text_dim))
        self.lin = nn.Linear(text_dim, hidden_size, bias=False)
        nn.init.normal_(self.lin.weight, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.dropout(x)) - self.lin(self.bias)


class MoEModulation(nn.Module):
    """Noisy softmax mixture of :class:`ModulationExpert` s over all experts (no top-k truncation).

    Gate logits ``x @ w_gate`` (``w_gate, w_noise: (text_dim, n_experts)``, init 0); in training they get
    ``randn * (softplus(x @ w_noise) + 1e-2)`` added. The gate sees ``x`` without dropout. Names follow the
    public model's ``MoEAdaptorLayer`` (``experts.{k}.bias``, ``experts.{k}.lin.weight``, ``w_gate``,
    ``w_noise``).

    ``forward(x)`` maps ``(B, n, text_dim)`` to ``(B, n, hidden_size)``; ``n`` must equal ``n_positions``
    unless ``n_positions == 1``. :meth:`forward_items` computes the same from item ids and a text table: by
    default with the op :func:`~tedrec_fast.ops.moe_modulation.moe_modulation` (its own counter-based dropout
    masks, ``backend``), with ``reference=True`` in the public model's formulas and order of random draws.
    """

    noise_epsilon = 1e-2
    op_name = "moe_modulation"

    def __init__(self, n_experts: int, text_dim: int, hidden_size: int, dropout: float, n_positions: int,
                 reference: bool = False, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(reference, bool):
            raise TypeError(f"MoEModulation: reference must be a bool, got {type(reference).__name__}")
        self.reference = reference
        self.backend = backend
        self.experts = nn.ModuleList(
            ModulationExpert(text_dim, hidden_size, dropout, n_positions) for _ in range(n_experts)
        )
        self.w_gate = nn.Parameter(torch.zeros(text_dim, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(text_dim, n_experts))

    def gates(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Expert weights ``(..., n_experts)`` of text vectors ``x``, summing to 1; noisy only in training mode.

        With ``index`` (integer ``(B, n)``), the weights of rows ``x[index]`` (``x: (U, text_dim)``): the logits
        are computed once per row of ``x`` and gathered; the noise is drawn for the ``(B, n)`` positions.
        """

        def logits_of(weight: torch.Tensor) -> torch.Tensor:
            logits = x @ weight
            return logits if index is None else F.embedding(index, logits)

        logits = logits_of(self.w_gate)
        if self.training:
            noise_std = F.softplus(logits_of(self.w_noise)) + self.noise_epsilon
            logits = logits + torch.randn_like(logits) * noise_std
        return torch.softmax(logits, dim=-1)

    def chosen_backend(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> str:
        """The backend :meth:`forward_items` dispatches a batch of ``batch`` sequences to (``"reference"`` in
        reference mode, which runs the eager formulas)."""
        if self.reference:
            return "reference"
        weight = self.experts[0].lin.weight
        sizes = (("B", batch), ("n", self.experts[0].bias.shape[1]), ("D", weight.shape[1]), ("H", weight.shape[0]),
                 ("E", len(self.experts)))
        return chosen_backend(self.op_name, self.backend, device, dtype, sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x)
        out = gates[..., 0:1] * self.experts[0](x)
        for k in range(1, len(self.experts)):
            out = out + gates[..., k : k + 1] * self.experts[k](x)
        return out

    def forward_items(self, items: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``forward(table[items])`` for item ids ``items`` ``(B, n)`` and text vectors ``table`` ``(V, text_dim)``.

        By default: the op ``moe_modulation`` (same distribution, its own dropout masks). With ``reference=True``:
        without active dropout (eval mode, or ``dropout == 0``) each distinct item is projected once: with
        ``u`` the item at ``(b, j)``, ``T[b, j] = sum_k g_k (lin_k(x_u) - lin_k(s_{k,j}))`` where ``lin_k(x_u)``
        is computed per distinct item, ``lin_k(s_{k,j})`` per position, and the gate logits per distinct item
        (training noise is still drawn per position). With active dropout (training, ``dropout > 0``; the
        dropout mask is per position) it is :meth:`forward` of the gathered ``(B, n, text_dim)`` input.
        """
        if items.dim() != 2 or (self.experts[0].bias.shape[1] not in (1, items.shape[1])):
            raise ValueError(
                f"MoEModulation.forward_items: items must be (B, n) with n = n_positions="
                f"{self.experts[0].bias.shape[1]}, got {tuple(items.shape)}"
            )
        if table.dim() != 2 or table.shape[1] != self.w_gate.shape[0]:
            raise ValueError(
                f"MoEModulation.forward_items: table must be (n_items, {self.w_gate.shape[0]}), "
                f"got {tuple(table.shape)}"
            )
        if not self.reference:
            return moe_modulation(
                items, table, self.w_gate, self.w_noise, torch.stack([e.lin.weight for e in self.experts]),
                torch.cat([e.bias for e in self.experts]), self.experts[0].dropout.p, self.training,
                backend=self.backend,
            )
        if self.training and self.experts[0].dropout.p > 0:
            return self(F.embedding(items, table))
        unique, index = torch.unique(items, return_inverse=True)
        x = F.embedding(unique, table)
        gates = self.gates(x, index)
        positional = torch.stack([expert.lin(expert.bias[0]) for expert in self.experts], dim=1)  # (n | 1, E, d)
        out = -torch.einsum("bnk,nkd->bnd", gates, positional.expand(items.shape[1], -1, -1))
        for k, expert in enumerate(self.experts):
            out = out + gates[..., k : k + 1] * F.embedding(index, expert.lin(x))
        return out
