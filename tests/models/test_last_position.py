"""The last Transformer layer computed only at each sequence's last position equals the full computation."""

from __future__ import annotations

import pytest
import torch

from tedrec_fast.models import build_model
from tedrec_fast.models.transformer import (
    PACK_SIZES,
    PackedTokens,
    TransformerEncoder,
    causal_padding_mask,
    gather_last,
)

N_ITEMS, N = 31, 9


def sequences(batch: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, N + 1, (batch,), generator=g)
    lengths[0] = N
    seq = torch.randint(1, N_ITEMS, (batch, N), generator=g)
    seq[torch.arange(N) >= lengths[:, None]] = 0
    return seq, lengths


@pytest.mark.parametrize("skip_padding", [False, True])
@pytest.mark.parametrize("n_layers, n_heads, d", [(1, 1, 8), (2, 2, 12), (3, 3, 15)])
def test_encoder_forward_last_equals_gathered_forward(n_layers: int, n_heads: int, d: int,
                                                      skip_padding: bool) -> None:
    torch.manual_seed(n_layers)
    encoder = TransformerEncoder(n_layers, n_heads, d, 2 * d + 1).double().eval()
    seq, lengths = sequences()
    seq[3, 0] = 0  # a padding item before real ones: a masked key, skipped like the trailing padding
    assert len(PackedTokens(seq != 0, lengths - 1).index) > int((seq != 0).sum())  # and a padded row packed
    x = torch.randn(len(seq), N, d, dtype=torch.float64, requires_grad=True)
    mask = causal_padding_mask(seq, torch.float64)
    full = gather_last(encoder(x, mask), lengths)
    fast = encoder.forward_last(x, mask, lengths - 1, real=(seq != 0) if skip_padding else None)
    torch.testing.assert_close(fast, full, atol=1e-12, rtol=1e-12)
    weight = torch.randn_like(full)
    grads_full = torch.autograd.grad((full * weight).sum(), [x, *encoder.parameters()])
    grads_fast = torch.autograd.grad((fast * weight).sum(), [x, *encoder.parameters()])
    for a, b in zip(grads_fast, grads_full):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", ["sasrec", "tedrec", "tedrec-wo-mm", "unisrec", "fmlprec"])
def test_models_fast_forward_equals_reference(name: str) -> None:
    text = torch.randn(N_ITEMS, 16)
    models = []
    for reference in (True, False):
        torch.manual_seed(0)
        kwargs = {"hidden_size": 12, "inner_size": 20}
        if name.startswith("tedrec"):
            kwargs.update(fusion_backend="torch", reference=reference)
        elif name in ("sasrec", "fmlprec"):
            kwargs["reference"] = reference
        if name == "fmlprec":
            kwargs.update(filter_backend="torch")
        model = build_model(name, N_ITEMS, N, text, **kwargs).eval()
        if name == "unisrec":
            model.reference = reference
        models.append(model)
    seq, lengths = sequences()
    target = torch.randint(1, N_ITEMS, (len(seq),))
    with torch.no_grad():
        torch.testing.assert_close(models[1](seq, lengths), models[0](seq, lengths), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(models[1].calculate_loss(seq, lengths, target),
                                   models[0].calculate_loss(seq, lengths, target), atol=1e-5, rtol=1e-5)


def test_reference_must_be_bool() -> None:
    with pytest.raises(TypeError, match="reference"):
        build_model("sasrec", N_ITEMS, N, reference="yes")


def test_packed_tokens_round_trip_and_rows() -> None:
    seq, lengths = sequences()
    real = seq != 0
    real[1, lengths[1] - 1] = False  # a last position is kept even where ``real`` drops it
    tokens = PackedTokens(real, lengths - 1)
    x = torch.randn(len(seq), N, 4)
    packed = tokens.pack(x)
    kept = real.clone()
    kept[1, lengths[1] - 1] = True
    unpacked = tokens.unpack(packed)
    packed_positions = torch.zeros(kept.numel(), dtype=torch.bool)
    packed_positions[tokens.index] = True
    assert packed_positions[kept.reshape(-1)].all() and packed.shape == (len(tokens.index), 4)
    torch.testing.assert_close(unpacked, torch.where(packed_positions.view_as(kept)[..., None], x, 0.0),
                               atol=0, rtol=0)
    torch.testing.assert_close(packed[tokens.rows(lengths - 1)], gather_last(x, lengths), atol=0, rtol=0)


@pytest.mark.parametrize("seed", range(20))
def test_packed_tokens_take_few_sizes(seed: int) -> None:
    """N is rounded up to a multiple of B * L / PACK_SIZES (or is B * L) by the first positions not kept."""
    g = torch.Generator().manual_seed(seed)
    B, L = int(torch.randint(1, 40, (), generator=g)), int(torch.randint(1, 60, (), generator=g))
    real = torch.rand(B, L, generator=g) < torch.rand((), generator=g)
    last = torch.randint(0, L, (B,), generator=g)
    tokens = PackedTokens(real, last)
    kept = real.clone()
    kept[torch.arange(B), last] = True
    step = -(-B * L // PACK_SIZES)
    n = len(tokens.index)
    assert n % step == 0 or n == B * L
    assert n - int(kept.sum()) < step
    flat = kept.reshape(-1)
    extra = sorted(set(tokens.index.tolist()) - set(flat.nonzero()[:, 0].tolist()))
    assert extra == (~flat).nonzero()[: len(extra), 0].tolist()
    assert torch.equal(tokens.index, tokens.index.sort().values)


@pytest.mark.parametrize("name", ["sasrec", "fmlprec"])
def test_training_gradients_equal_without_dropout(name: str) -> None:
    grads = []
    seq, lengths = sequences()
    target = torch.randint(1, N_ITEMS, (len(seq),))
    for reference in (True, False):
        torch.manual_seed(0)
        kwargs = {"filter_backend": "torch"} if name == "fmlprec" else {"attn_dropout": 0.0}
        model = build_model(name, N_ITEMS, N, hidden_size=8, inner_size=12, hidden_dropout=0.0,
                            reference=reference, **kwargs).double().train()
        model.calculate_loss(seq, lengths, target).backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for key, expected in grads[0].items():
        torch.testing.assert_close(grads[1][key], expected, atol=1e-12, rtol=1e-9)
