"""Large-catalog benchmark: the full-catalog cross-entropy and whole TedRec training steps.

On a synthetic catalog (Zipf item popularity, random text embeddings) at |V| in
:data:`CATALOG_SIZES`:

* ``"op": "full_catalog_cross_entropy"`` records: forward + backward of the fused loss against the torch
  reference (which materialises ``B x |V|`` logits) and against three GEMMs of the same shapes (the
  compute floor: logits, ``G @ C``, ``G.T @ Q``), with the extra peak memory of each.
  Where installed, the public fused linear-cross-entropy kernels (Liger-Kernel's FLCE, Apple's Cut
  Cross-Entropy) join the record (``<name>_ms``, ``<name>_peak_mem_bytes``): they support neither
  temperature nor L2-normalised operands, so their step normalises and scales copies first, as a user
  of them must (:func:`public_kernel_steps`).
* ``"op": "train_step"`` records: one optimiser step of TedRec (fused op, fused loss) at catalog size V;
  ``items_per_s`` is training sequences (one target item each) per second.

A step that runs out of GPU memory is recorded with ``"oom": true`` instead of a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tedrec_fast import full_catalog_cross_entropy

__all__ = ["CATALOG_SIZES", "CatalogCase", "zipf_items", "peak_extra_bytes", "three_gemms", "public_kernel_steps",
           "loss_record", "train_step_record"]

CATALOG_SIZES = (60_000, 1_000_000, 4_000_000, 10_000_000)
Timer = Callable[[Callable[[], None]], float]


@dataclass(frozen=True)
class CatalogCase:
    V: int
    B: int = 2048
    d: int = 300
    dtype: str = "bfloat16"


def zipf_items(n: int, n_items: int, exponent: float = 1.1, device: str = "cpu", seed: int = 0) -> torch.Tensor:
    """``n`` item ids in ``[1, n_items)`` drawn with Zipf popularity ``p(rank r) ∝ r^-exponent``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    weights = torch.arange(1, n_items, device=device, dtype=torch.float32).pow(-exponent)
    return torch.multinomial(weights, n, replacement=True, generator=gen) + 1


def peak_extra_bytes(step: Callable[[], None], device: str) -> int | None:
    """Peak device memory ``step`` allocates beyond what is allocated before it (``None`` on CPU)."""
    if device != "cuda":
        step()
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _guarded(step: Callable[[], None], timer: Timer, device: str) -> tuple[float | None, int | None]:
    """``(ms, peak extra bytes)`` of ``step``, or ``(None, None)`` if it runs out of memory."""
    try:
        peak = peak_extra_bytes(step, device)
        return timer(step), peak
    except torch.OutOfMemoryError:
        if device == "cuda":
            torch.cuda.empty_cache()
        return None, None


def three_gemms(query: torch.Tensor, items: torch.Tensor) -> Callable[[], None]:
    """A step of the reference's three products at the loss's shapes (logits, ``G @ C``, ``G^T @ Q``, with the
    logits standing in for ``G``), in the inputs' dtype: the compute floor of forward + backward."""
    query, items = query.detach(), items.detach()

    def step() -> None:
        logits = query @ items.t()
        logits @ items
        logits.t() @ query

    return step


def public_kernel_steps(query: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                        temperature: float = 0.07) -> dict[str, Callable[[], None]]:
    """Forward + backward of each installed public fused linear-cross-entropy kernel on TedRec's loss.

    The loss is ``CE(normalize(query) / temperature @ normalize(items).T)``: the kernels get the
    normalised, temperature-scaled copies (made inside the step, so their time and memory count).
    Returns ``{"liger_flce": step, "cut_cross_entropy": step}`` for those importable here.
    """
    steps: dict[str, Callable[[], None]] = {}

    def scaled() -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(query, dim=-1) / temperature, F.normalize(items, dim=-1)

    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        pass
    else:
        liger_loss = LigerFusedLinearCrossEntropyLoss()

        def liger() -> None:
            q, c = scaled()
            torch.autograd.grad(liger_loss(c, q, targets), (query, items))

        steps["liger_flce"] = liger
    try:
        from cut_cross_entropy import linear_cross_entropy
    except ImportError:
        pass
    else:

        def cce() -> None:
            q, c = scaled()
            torch.autograd.grad(linear_cross_entropy(q, c, targets), (query, items))

        steps["cut_cross_entropy"] = cce
    return steps


def loss_record(case: CatalogCase, timer: Timer, device: str = "cuda", fused_backend: str = "triton") -> dict:
    """Forward + backward of the fused loss, the reference and three GEMMs at ``case``'s shape."""
    dtype = getattr(torch, case.dtype)
    query = torch.randn(case.B, case.d, device=device, dtype=dtype, requires_grad=True)
    items = torch.randn(case.V, case.d, device=device, dtype=dtype, requires_grad=True)
    targets = zipf_items(case.B, case.V, device=device)

    def loss_step(backend: str) -> Callable[[], None]:
        def step() -> None:
            loss = full_catalog_cross_entropy(query, items, targets, backend=backend)
            torch.autograd.grad(loss, (query, items))

        return step

    ms, peak = _guarded(loss_step(fused_backend), timer, device)
    ref_ms, ref_peak = _guarded(loss_step("torch"), timer, device)
    gemm_ms, _ = _guarded(three_gemms(query, items), timer, device)
    public = {}
    for name, step in public_kernel_steps(query, items, targets).items():
        public[f"{name}_ms"], public[f"{name}_peak_mem_bytes"] = _guarded(step, timer, device)
    return {
        "op": "full_catalog_cross_entropy", "backend": fused_backend, "direction": "fwd+bwd", "dtype": case.dtype,
        "B": case.B, "d": case.d, "V": case.V,
        "ms": ms, "ref_ms": ref_ms, "gemm3_ms": gemm_ms,
        "speedup": round(ref_ms / ms, 3) if ms and ref_ms else None,
        "vs_gemm3": round(ms / gemm_ms, 3) if ms and gemm_ms else None,
        "peak_mem_bytes": peak, "ref_peak_mem_bytes": ref_peak,
        "memory_frac": round(peak / ref_peak, 5) if peak is not None and ref_peak else None,
        "oom": ms is None, "ref_oom": ref_ms is None, **public,
    }


def train_step_record(V: int, timer: Timer, device: str = "cuda", B: int = 2048, n: int = 50, text_dim: int = 128,
                      bf16: bool = True, model_args: dict | None = None) -> dict:
    """One TedRec optimiser step (Adam) on a synthetic catalog of ``V`` items.

    ``text_dim`` defaults to 128 (BERT-tiny's size) so that the frozen text table of a 10M catalog
    (5 GB fp32) leaves room for the ID table, its gradient and Adam's two moments (48 GB at d = 300).
    """
    from tedrec_fast.models import TedRec

    text = torch.randn(V, text_dim)
    text[0] = 0
    try:
        model = TedRec(V, text, max_seq_length=n, **(model_args or {})).to(device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"op": "train_step", "model": "tedrec", "V": V, "B": B, "oom": True}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    lengths = torch.randint(1, n + 1, (B,), device=device)
    seq = zipf_items(B * n, V, device=device).view(B, n)
    seq[torch.arange(n, device=device)[None, :] >= lengths[:, None]] = 0
    target = zipf_items(B, V, device=device, seed=1)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model.calculate_loss(seq, lengths, target)
        loss.backward()
        optimizer.step()

    ms, peak = _guarded(step, timer, device)
    return {
        "op": "train_step", "model": "tedrec", "V": V, "B": B, "n": n, "text_dim": text_dim, "bf16": bf16,
        "ms": ms, "items_per_s": round(B / ms * 1e3, 1) if ms else None,
        "peak_mem_bytes": torch.cuda.max_memory_allocated() if device == "cuda" and ms else peak,
        "oom": ms is None,
    }
