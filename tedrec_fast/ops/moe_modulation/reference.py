"""The readable torch reference of TedRec's MoE modulation: today's eager formulas; this file is the spec.

For text vectors ``x`` ``(B, n, D)``, expert weights ``W_k`` ``(H, D)`` and modulation tables ``s_k``
``(P, D)`` (``P = n``: one row per position, TedRec; ``P = 1``: one row for all positions, "w/o MM")::

    g = softmax(x @ w_gate + eps * (softplus(x @ w_noise) + 1e-2))        (eps ~ N(0, 1) per position, training)
    T[b, j] = sum_k g_k(b, j) * (W_k (m_{b,j,k} * x[b, j]) / (1 - p) - W_k s_{k, j})

with keep masks ``m`` i.i.d. Bernoulli(1 - p) per (sequence, position, expert, coordinate) in training
(``nn.Dropout``), ``m = 1`` and no noise in evaluation. The gate sees ``x`` without dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["NOISE_EPSILON", "moe_modulation_reference", "expert_weights"]

#: added to the softplus of the noise logits (the public implementation's ``noise_epsilon``)
NOISE_EPSILON = 1e-2


def expert_weights(x: torch.Tensor, w_gate: torch.Tensor, w_noise: torch.Tensor, training: bool,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """Gate weights ``(..., E)`` of ``x`` ``(..., D)``; in training the logits get ``noise`` (default: drawn with
    ``torch.randn``) times ``softplus(x @ w_noise) + 1e-2``."""
    logits = x @ w_gate
    if training:
        if noise is None:
            noise = torch.randn_like(logits)
        logits = logits + noise * (F.softplus(x @ w_noise) + NOISE_EPSILON)
    return torch.softmax(logits, dim=-1)


def moe_modulation_reference(x: torch.Tensor, w_gate: torch.Tensor, w_noise: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor, p: float, training: bool, noise: torch.Tensor | None = None,
                             keep: torch.Tensor | None = None) -> torch.Tensor:
    """MoE modulation of ``x`` ``(B, n, D)`` -> ``(B, n, H)``, in the public implementation's order of operations.

    Args:
        x: text vectors ``(B, n, D)``.
        w_gate, w_noise: ``(D, E)``.
        weight: expert weights ``(E, H, D)`` (``weight[k]`` is expert ``k``'s ``Linear(D, H)`` weight).
        bias: modulation tables ``(E, P, D)``, ``P`` 1 or ``n``.
        p: dropout rate of the experts' input.
        training: gate noise and dropout on.
        noise: the gate noise ``eps`` ``(B, n, E)`` (default: drawn first, with ``torch.randn``).
        keep: boolean keep masks ``(B, n, E, D)`` used instead of ``nn.Dropout``'s (default: drawn per expert
            in expert order after the noise, exactly as the public model does).
    """
    gates = expert_weights(x, w_gate, w_noise, training, noise)
    out = None
    for k in range(weight.shape[0]):
        if keep is not None and training:
            dropped_x = x * keep[..., k, :].to(x.dtype) / (1 - p)
        else:
            dropped_x = F.dropout(x, p, training)
        expert = F.linear(dropped_x, weight[k]) - F.linear(bias[k], weight[k])
        term = gates[..., k : k + 1] * expert
        out = term if out is None else out + term
    return out
