"""MoE adaptor fast path (each distinct item projected once) equals the per-position path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tedrec_fast.models import build_model
from tedrec_fast.models.moe import MoEModulation

N_ITEMS, N, TEXT_DIM, D = 30, 6, 16, 12


def make_moe(dropout: float, n_positions: int, dtype: torch.dtype = torch.float32,
             reference: bool = False) -> MoEModulation:
    moe = MoEModulation(8, TEXT_DIM, D, dropout, n_positions, reference=reference).to(dtype)
    with torch.no_grad():  # non-zero modulation tables and gates (they are initialised at 0)
        for expert in moe.experts:
            expert.bias.normal_()
        moe.w_gate.normal_()
        moe.w_noise.normal_()
    return moe


def items_and_table(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    items = torch.randint(0, N_ITEMS, (5, N))
    items[0] = items[1, 0]  # repeated items within and across sequences
    return items, torch.randn(N_ITEMS, TEXT_DIM, dtype=dtype)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("n_positions", [N, 1])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_eval_equals_per_position_path(n_positions, dtype, tol, reference):
    moe = make_moe(0.2, n_positions, dtype, reference).eval()
    items, table = items_and_table(dtype)
    expected = moe(F.embedding(items, table))
    torch.testing.assert_close(moe.forward_items(items, table), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("reference", [False, True])
def test_training_without_dropout_equals_per_position_path_with_gradients(reference):
    moe = make_moe(0.0, N, reference=reference).train()
    items, table = items_and_table()
    outputs, grads = [], []
    for path in (lambda: moe(F.embedding(items, table)), lambda: moe.forward_items(items, table)):
        moe.zero_grad()
        torch.manual_seed(7)  # same gate noise
        out = path()
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in moe.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-6, rtol=1e-6)
    for fast, slow in zip(*grads[::-1]):
        torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)


def test_reference_training_with_dropout_keeps_per_position_dropout():
    moe = make_moe(0.2, N, reference=True).train()
    items, table = items_and_table()
    torch.manual_seed(3)
    expected = moe(F.embedding(items, table))
    torch.manual_seed(3)
    assert torch.equal(moe.forward_items(items, table), expected)


@pytest.mark.parametrize("name", ["tedrec", "tedrec-wo-mm"])
def test_tedrec_embeddings_use_fast_path_exactly(name):
    model = build_model(name, N_ITEMS, N, torch.randn(N_ITEMS, TEXT_DIM), hidden_size=D, inner_size=20,
                        fusion_backend="torch", adaptor_dropout=0.0).eval()
    with torch.no_grad():
        for expert in model.moe_adaptor.experts:
            expert.bias.normal_()
        model.moe_adaptor.w_gate.normal_()
    items, _ = items_and_table()
    text = model.moe_adaptor(F.embedding(items, model.text_embeddings))
    expected = model.fusion(model.item_embedding(items), text)
    torch.testing.assert_close(model.embed_sequence(items), expected, atol=1e-6, rtol=1e-6)


def test_bad_arguments():
    moe = make_moe(0.0, N)
    _, table = items_and_table()
    with pytest.raises(ValueError, match="items"):
        moe.forward_items(torch.zeros(2, N + 1, dtype=torch.long), table)
    with pytest.raises(ValueError, match="table"):
        moe.forward_items(torch.zeros(2, N, dtype=torch.long), table[:, :3])
