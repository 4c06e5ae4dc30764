"""TedRec's MoE modulation of frozen text embeddings (paper section 3.1.1, DESIGN.md section 1 step 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
    unless ``n_positions == 1``.
    """

    noise_epsilon = 1e-2

    def __init__(self, n_experts: int, text_dim: int, hidden_size: int, dropout: float, n_positions: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            ModulationExpert(text_dim, hidden_size, dropout, n_positions) for _ in range(n_experts)
        )
        self.w_gate = nn.Parameter(torch.zeros(text_dim, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(text_dim, n_experts))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Expert weights ``(B, n, n_experts)``, summing to 1; noisy only in training mode."""
        logits = x @ self.w_gate
        if self.training:
            noise_std = F.softplus(x @ self.w_noise) + self.noise_epsilon
            logits = logits + torch.randn_like(logits) * noise_std
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x)
        out = gates[..., 0:1] * self.experts[0](x)
        for k in range(1, len(self.experts)):
            out = out + gates[..., k : k + 1] * self.experts[k](x)
        return out
