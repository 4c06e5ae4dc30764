"""TSSR: mask, per-position targets, InfoNCE, gate, the three loss terms, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tedrec_fast.models import TSSR, build_model
from tedrec_fast.models.tssr import IGNORE_INDEX, gated_fusion, info_nce, next_item_targets, prefix_mask

N_ITEMS, L, D, TEXT_DIM = 13, 6, 8, 5


def _model(**kwargs) -> TSSR:
    text = torch.randn(N_ITEMS, TEXT_DIM)
    return TSSR(N_ITEMS, text, max_seq_length=L, hidden_size=D, inner_size=16, **kwargs)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([6, 3, 1, 4])
    seq = torch.randint(1, N_ITEMS, (4, L))
    seq[torch.arange(L).view(1, -1) >= lengths.view(-1, 1)] = 0
    return seq, lengths, torch.randint(1, N_ITEMS, (4,))


def test_prefix_mask_by_hand():
    visible = prefix_mask(torch.tensor([2, 1]), 3) == 0
    assert visible[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # len 1: padded queries see the valid key 0 and themselves, never a later or another padded position
    assert visible[1, 0].tolist() == [[True, False, False], [True, True, False], [True, False, True]]
    assert (prefix_mask(torch.tensor([1]), 2)[~(prefix_mask(torch.tensor([1]), 2) == 0)] == -10000.0).all()


def test_next_item_targets_by_hand():
    seq = torch.tensor([[5, 6, 7, 0], [3, 0, 0, 0], [1, 2, 3, 4]])
    got = next_item_targets(seq, torch.tensor([3, 1, 4]), torch.tensor([8, 9, 10]))
    x = IGNORE_INDEX
    assert got.tolist() == [[6, 7, 8, x], [9, x, x, x], [2, 3, 4, 10]]


def test_info_nce_one_negative_closed_form():
    q, k, tau = torch.randn(2, 4), torch.randn(2, 4), 0.2
    s = F.cosine_similarity(q.unsqueeze(1), k.unsqueeze(0), dim=-1)
    rows = [-math.log(math.exp(s[b, b] / tau) / (math.exp(s[b, b] / tau) + math.exp(s[b, 1 - b] / tau)))
            for b in range(2)]
    assert info_nce(q, k, tau).item() == pytest.approx(sum(rows) / 2, rel=1e-5)
    # an invalid third sequence is neither a row nor a negative
    q3, k3 = torch.cat([q, torch.randn(1, 4)]), torch.cat([k, torch.randn(1, 4)])
    valid = torch.tensor([True, True, False])
    assert info_nce(q3, k3, tau, valid).item() == pytest.approx(sum(rows) / 2, rel=1e-5)


def test_gate_formula():
    gate = nn.Linear(4, 2)
    with torch.no_grad():
        gate.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]))
        gate.bias.copy_(torch.tensor([0.5, -1.0]))
    f_id, f_con = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    s0, s1 = 1 / (1 + math.exp(-(1.0 + 0.5))), 1 / (1 + math.exp(-(2 * -1.0 - 1.0)))
    expected = [s0 * 1.0 + (1 - s0) * 3.0, s1 * 2.0 + (1 - s1) * -1.0]
    assert gated_fusion(f_id, f_con, gate)[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_padding_never_reaches_valid_positions():
    model = _model().eval()
    seq, lengths, target = _batch()
    noisy = seq.clone()
    after = torch.arange(L).view(1, -1) >= lengths.view(-1, 1)
    noisy[after] = torch.randint(1, N_ITEMS, (int(after.sum()),))
    with torch.no_grad():
        a, b = model.encode(seq, lengths), model.encode(noisy, lengths)
        for key in a:
            assert torch.allclose(a[key][~after], b[key][~after], atol=1e-6), key
        assert torch.allclose(model.full_sort_scores(seq, lengths), model.full_sort_scores(noisy, lengths), atol=1e-6)
        assert model.calculate_loss(seq, lengths, target).item() == pytest.approx(
            model.calculate_loss(noisy, lengths, target).item(), rel=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_future_items_never_change_earlier_outputs(k):
    model = _model().eval()
    seq = torch.randint(1, N_ITEMS, (3, L))
    lengths = torch.full((3,), L)
    changed = seq.clone()
    changed[:, k] = changed[:, k] % (N_ITEMS - 1) + 1
    with torch.no_grad():
        a, b = model.encode(seq, lengths), model.encode(changed, lengths)
    for key in a:
        assert torch.allclose(a[key][:, :k], b[key][:, :k], atol=1e-6), key
        assert not torch.allclose(a[key][:, k], b[key][:, k]), key


def test_loss_terms_by_hand():
    model = _model(user_weight=0.5, item_weight=2.0).eval()
    seq, lengths, target = _batch()
    with torch.no_grad():
        terms = model.losses(seq, lengths, target)
        states = model.encode(seq, lengths)
        items = model.item_embedding.weight + model.content_proj(model.text_embeddings)
        full = torch.cat([seq, torch.zeros(4, 1, dtype=torch.long)], 1)
        full[torch.arange(4), lengths] = target
        ce = [F.cross_entropy(states["fused"][b, t] @ items.t(), full[b, t + 1]) for b in range(4)
              for t in range(int(lengths[b]))]
        assert terms["ce"].item() == pytest.approx(torch.stack(ce).mean().item(), rel=1e-5)
        pooled = {k: torch.stack([states[k][b, :lengths[b]].mean(0) for b in range(4)]) for k in ("id", "content")}
        user = 0.5 * (info_nce(pooled["id"], pooled["content"], 0.2) + info_nce(pooled["content"], pooled["id"], 0.2))
        assert terms["user"].item() == pytest.approx(user.item(), rel=1e-5)
        per_row = []
        for t in range(L):
            rows = [b for b in range(4) if t < lengths[b]]
            nxt = full[rows, t + 1]
            for own, other in (("id", model.content_embedding(nxt)), ("content", model.item_embedding(nxt))):
                sims = F.normalize(states[own][rows, t], dim=-1) @ F.normalize(other, dim=-1).t() / 0.2
                per_row.append(F.cross_entropy(sims, torch.arange(len(rows)), reduction="none"))
        # each direction averages over the valid (row, step) pairs; the two directions are averaged
        n_valid = int(lengths.sum())
        item = sum(r.sum() for r in per_row) / (2 * n_valid)
        assert terms["item"].item() == pytest.approx(item.item(), rel=1e-5)
        total = model.calculate_loss(seq, lengths, target)
    assert total.item() == pytest.approx((terms["ce"] + 0.5 * terms["user"] + 2.0 * terms["item"]).item(), rel=1e-6)


def test_gradients_reach_every_parameter():
    model = _model().train()
    model.calculate_loss(*_batch()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert not model.text_embeddings.requires_grad


def test_scores_and_registry():
    text = torch.randn(N_ITEMS, TEXT_DIM)
    model = build_model("TSSR", N_ITEMS, L, text, hidden_size=D, inner_size=16)
    assert isinstance(model, TSSR) and model.text_embeddings[0].abs().sum() == 0
    seq, lengths, _ = _batch()
    assert model.full_sort_scores(seq, lengths).shape == (4, N_ITEMS)
    with pytest.raises(ValueError, match="text_embeddings"):
        build_model("tssr", N_ITEMS, L, None)


@pytest.mark.parametrize("kwargs, match", [
    ({"text_embeddings": torch.randn(3, 4)}, "text_embeddings"),
    ({"contrast_temperature": 0.0}, "contrast_temperature"),
    ({"user_weight": -1.0}, "user_weight"),
    ({"n_cross_layers": 0}, "n_cross_layers"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"n_items": N_ITEMS, "text_embeddings": torch.randn(N_ITEMS, TEXT_DIM), **kwargs}
    with pytest.raises(ValueError, match=match):
        TSSR(**args)


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match="item_seq"):
        model(torch.ones(2, L + 1, dtype=torch.long), torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="item_seq_len"):
        model(torch.ones(2, L, dtype=torch.long), torch.ones(3, dtype=torch.long))
