"""UniSRecStyle: item representation = adaptor(text) + ID, cosine / temperature CE, mask, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tedrec_fast.models import UniSRecStyle, build_model

N_ITEMS, L, D, TEXT_DIM = 11, 5, 8, 6


def _model() -> UniSRecStyle:
    return UniSRecStyle(N_ITEMS, torch.randn(N_ITEMS, TEXT_DIM), max_seq_length=L, hidden_size=D, inner_size=16,
                        n_experts=3)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([5, 2, 1])
    seq = torch.randint(1, N_ITEMS, (3, L))
    seq[torch.arange(L).view(1, -1) >= lengths.view(-1, 1)] = 0
    return seq, lengths, torch.randint(1, N_ITEMS, (3,))


def test_whitening_is_position_independent_and_defaults():
    model = UniSRecStyle(N_ITEMS, torch.randn(N_ITEMS, TEXT_DIM))
    assert all(e.bias.shape == (1, 1, TEXT_DIM) for e in model.moe_adaptor.experts)
    assert (model.hidden_size, model.temperature, len(model.moe_adaptor.experts)) == (300, 0.07, 8)
    assert model.text_embeddings[0].abs().sum() == 0


def test_sequence_input_is_the_item_representation():
    model = _model().eval()
    seq, _, _ = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_sequence(seq), model.item_representations()[seq], atol=1e-6)
        text = model.moe_adaptor(model.text_embeddings.unsqueeze(0)).squeeze(0)
        assert torch.allclose(model.item_representations(), text + model.item_embedding.weight)


def test_loss_is_cosine_softmax_with_temperature():
    model = _model().eval()
    seq, lengths, target = _batch()
    with torch.no_grad():
        seq_rep = model(seq, lengths)
        cos = F.cosine_similarity(seq_rep.unsqueeze(1), model.item_representations().unsqueeze(0), dim=-1)
        assert torch.allclose(model.full_sort_scores(seq, lengths), cos, atol=1e-6)
        expected = F.cross_entropy(cos / 0.07, target)
        assert model.calculate_loss(seq, lengths, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_items_after_len_do_not_change_scores():
    model = _model().eval()
    seq, lengths, _ = _batch()
    noisy = seq.clone()
    noisy[noisy == 0] = 7
    with torch.no_grad():
        # RecBole's mask hides item-0 keys; a right-padded position after len is never a key of len - 1 anyway
        assert torch.allclose(model.full_sort_scores(seq, lengths), model.full_sort_scores(noisy, lengths), atol=1e-6)


def test_gradients_reach_every_parameter():
    model = _model().train()
    model.calculate_loss(*_batch()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_registry_and_bad_input():
    model = build_model("unisrec", N_ITEMS, L, torch.randn(N_ITEMS, TEXT_DIM), hidden_size=D, inner_size=16)
    assert isinstance(model, UniSRecStyle)
    with pytest.raises(ValueError, match="text_embeddings"):
        build_model("unisrec", N_ITEMS, L, None)
    with pytest.raises(ValueError, match="text_embeddings"):
        UniSRecStyle(N_ITEMS, torch.randn(N_ITEMS + 1, TEXT_DIM))
    with pytest.raises(ValueError, match="temperature"):
        UniSRecStyle(N_ITEMS, torch.randn(N_ITEMS, TEXT_DIM), temperature=0)
