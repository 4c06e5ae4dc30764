"""SASRec baseline and the shared Transformer: shapes, causal + padding mask, loss, gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tedrec_fast.models import SASRec, build_model
from tedrec_fast.models.transformer import causal_padding_mask, gather_last

N_ITEMS, N = 31, 10


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([N, 4, 1, 7, 2])
    seq = torch.randint(1, N_ITEMS, (5, N), generator=g)
    seq[torch.arange(N) >= lengths[:, None]] = 0
    return seq, lengths, torch.randint(1, N_ITEMS, (5,), generator=g)


def test_defaults_and_shapes() -> None:
    model = build_model("SASRec", N_ITEMS, N, torch.zeros(3, 3))  # text embeddings are ignored
    assert isinstance(model, SASRec) and model.item_embedding.weight.shape == (N_ITEMS, 64)
    assert len(model.trm_encoder.layer) == 2 and model.trm_encoder.layer[0].feed_forward.dense_1.out_features == 256
    seq, lengths, target = batch()
    assert model(seq, lengths).shape == (5, 64)
    assert model(seq[:, :6].clamp(max=1), torch.ones(5, dtype=torch.long)).shape == (5, 64)  # shorter L is fine
    assert model.full_sort_scores(seq, lengths).shape == (5, N_ITEMS)


def test_mask_values() -> None:
    seq = torch.tensor([[3, 4, 0]])
    expected = torch.tensor([[0.0, -1e4, -1e4], [0.0, 0.0, -1e4], [0.0, 0.0, -1e4]])
    torch.testing.assert_close(causal_padding_mask(seq)[0, 0], expected)
    hidden = torch.arange(12.0).view(2, 3, 2)
    torch.testing.assert_close(gather_last(hidden, torch.tensor([1, 3])), torch.tensor([[0.0, 1.0], [10.0, 11.0]]))


def test_future_and_padded_items_never_change_the_representation() -> None:
    model = SASRec(N_ITEMS, N, hidden_size=16).eval()
    seq, lengths, _ = batch()
    perturbed = seq.clone()
    after = torch.arange(N) >= lengths[:, None]
    perturbed[after] = torch.randint(1, N_ITEMS, (int(after.sum()),))
    with torch.no_grad():
        torch.testing.assert_close(model(perturbed, lengths), model(seq, lengths))
        # ... and a changed last valid item does change it
        perturbed[torch.arange(5), lengths - 1] = (seq[torch.arange(5), lengths - 1] % (N_ITEMS - 1)) + 1
        assert not torch.allclose(model(perturbed, lengths), model(seq, lengths))


def test_loss_is_dot_product_cross_entropy() -> None:
    model = SASRec(N_ITEMS, N, hidden_size=16).eval()
    seq, lengths, target = batch()
    with torch.no_grad():
        logits = model(seq, lengths) @ model.item_embedding.weight.t()
        torch.testing.assert_close(model.full_sort_scores(seq, lengths), logits)
        torch.testing.assert_close(model.calculate_loss(seq, lengths, target), F.cross_entropy(logits, target))


def test_gradients_and_determinism() -> None:
    seq, lengths, target = batch()
    losses = []
    for _ in range(2):
        torch.manual_seed(4)
        model = SASRec(N_ITEMS, N, hidden_size=16).train()
        loss = model.calculate_loss(seq, lengths, target)
        losses.append(loss)
    loss.backward()
    assert torch.equal(losses[0], losses[1])
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_init_follows_recbole() -> None:
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, N, hidden_size=64)
    assert abs(model.item_embedding.weight.std().item() - 0.02) < 0.003
    att = model.trm_encoder.layer[0].multi_head_attention
    assert torch.equal(att.query.bias, torch.zeros(64)) and torch.equal(att.LayerNorm.weight, torch.ones(64))
    assert model.LayerNorm.eps == 1e-12
