"""FMLP-Rec on the spectral-filter op."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tedrec_fast.models import FMLPRec, build_model
from tedrec_fast.ops.spectral_filter.reference import spectral_filter_reference


def _batch(n_items: int = 30, B: int = 4, n: int = 8):
    lengths = torch.tensor([1, 3, 8, 5])[:B]
    seq = torch.randint(1, n_items, (B, n))
    seq[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    return seq, lengths, torch.randint(1, n_items, (B,))


def test_forward_matches_the_published_formula() -> None:
    model = FMLPRec(30, max_seq_length=8, hidden_size=16, n_layers=2, inner_size=32).eval()
    seq, lengths, _ = _batch()
    hidden = model.LayerNorm(model.item_embedding(seq) + model.position_embedding.weight[None])
    for block in model.blocks:
        filtered = spectral_filter_reference(hidden, block.filter.complex_weight)
        hidden = block.LayerNorm(hidden + filtered)
        ff = block.feed_forward
        hidden = ff.LayerNorm(ff.dense_2(F.gelu(ff.dense_1(hidden))) + hidden)
    expected = hidden[torch.arange(4), lengths - 1]
    torch.testing.assert_close(model(seq, lengths), expected, atol=1e-5, rtol=1e-5)


def test_loss_is_dot_product_cross_entropy_and_gradients_flow() -> None:
    model = build_model("fmlprec", 30, 8, hidden_size=16, inner_size=32)
    assert isinstance(model, FMLPRec)
    seq, lengths, target = _batch()
    torch.manual_seed(1)
    loss = model.calculate_loss(seq, lengths, target)
    torch.manual_seed(1)
    logits = model(seq, lengths) @ model.item_embedding.weight.t()
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.full_sort_scores(seq, lengths).shape == (4, 30)


def test_triton_filter_backend_matches_torch(device: str) -> None:
    torch_model = FMLPRec(30, 8, hidden_size=16, inner_size=32, filter_backend="torch").eval()
    triton_model = FMLPRec(30, 8, hidden_size=16, inner_size=32, filter_backend="triton").eval()
    triton_model.load_state_dict(torch_model.state_dict())
    seq, lengths, _ = _batch()
    expected = torch_model(seq, lengths)
    torch.testing.assert_close(triton_model.to(device)(seq.to(device), lengths.to(device)).cpu(), expected,
                               atol=1e-5, rtol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="n_items"):
        FMLPRec(1)
    with pytest.raises(ValueError, match=r"item_seq must be \(B, 8\)"):
        FMLPRec(30, 8, hidden_size=16)(torch.ones(2, 7, dtype=torch.long), torch.ones(2, dtype=torch.long))
