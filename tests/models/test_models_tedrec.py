"""TedRec: shapes, masking, the published forward and loss by hand, ablations, RNG, gradients, loading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tedrec_fast.models import TedRec, build_model, load_public_tedrec_state_dict
from tedrec_fast.models.fusion import AblatedSpectralFusion
from tedrec_fast.models.public import PUBLIC_TO_TEDREC_RENAMES
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference

N_ITEMS, N, D, TEXT_DIM = 23, 8, 12, 16
VARIANTS = ["tedrec", "tedrec-wo-mm", "tedrec-wo-ag", "tedrec-wo-if", "tedrec-wo-tf"]


def make(name: str = "tedrec", seed: int = 0, **overrides: object) -> TedRec:
    torch.manual_seed(seed)
    text = torch.randn(N_ITEMS, TEXT_DIM)
    kwargs = {"hidden_size": D, "inner_size": 20, "fusion_backend": "torch", **overrides}
    return build_model(name, N_ITEMS, N, text, **kwargs)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([N, 5, 1, 3])
    seq = torch.randint(1, N_ITEMS, (4, N), generator=g)
    seq[torch.arange(N) >= lengths[:, None]] = 0
    return seq, lengths, torch.randint(1, N_ITEMS, (4,), generator=g)


def reference_forward(model: TedRec, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The published eval-mode forward written out from docs/DESIGN.md section 1 with the model's parameters."""
    x = model.text_embeddings[seq]
    moe = model.moe_adaptor
    gates = torch.softmax(x @ moe.w_gate, dim=-1)
    text = sum(gates[..., k : k + 1] * ((x - ex.bias) @ ex.lin.weight.t()) for k, ex in enumerate(moe.experts))
    fu = model.fusion
    h = spectral_fusion_reference(
        model.item_embedding(seq),
        text,
        fu.complex_weight,
        fu.item_gating.weight,
        fu.item_gating.bias,
        fu.fusion_gating.weight,
        fu.fusion_gating.bias,
    )
    h = F.layer_norm(h + model.position_embedding.weight, (D,), model.LayerNorm.weight, model.LayerNorm.bias, 1e-12)
    visible = torch.ones(N, N).tril().bool() & (seq != 0)[:, None, :]
    mask = torch.where(visible, 0.0, -10000.0)[:, None]  # (B, 1, N, N)
    for layer in model.trm_encoder.layer:
        att = layer.multi_head_attention
        heads = att.n_heads

        q, k, v = (t.view(4, N, heads, D // heads).transpose(1, 2) for t in (att.query(h), att.key(h), att.value(h)))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // heads) + mask
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(4, N, D)
        h = att.LayerNorm(att.dense(ctx) + h)
        ff = layer.feed_forward
        h = ff.LayerNorm(ff.dense_2(0.5 * ff.dense_1(h) * (1 + torch.erf(ff.dense_1(h) / math.sqrt(2)))) + h)
    return h[torch.arange(4), lengths - 1]


def test_shapes_and_text_buffer() -> None:
    model = make()
    seq, lengths, target = batch()
    assert model(seq, lengths).shape == (4, D)
    assert model.full_sort_scores(seq, lengths).shape == (4, N_ITEMS)
    assert model.calculate_loss(seq, lengths, target).shape == ()
    assert torch.equal(model.text_embeddings[0], torch.zeros(TEXT_DIM))
    assert not model.text_embeddings.requires_grad
    assert model.moe_adaptor.experts[0].bias.shape == (1, N, TEXT_DIM)
    assert len(model.moe_adaptor.experts) == 8


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_seq_length"):
        make()(torch.ones(2, N - 1, dtype=torch.long), torch.tensor([1, 1]))


@pytest.mark.parametrize("reference", [True, False])
def test_forward_matches_published_formulas(reference: bool) -> None:
    model = make(reference=reference).eval()
    seq, lengths, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(seq, lengths), reference_forward(model, seq, lengths), atol=1e-5, rtol=1e-5)


def test_loss_is_cosine_cross_entropy_by_hand() -> None:
    model = make().eval()
    seq, lengths, target = batch()
    with torch.no_grad():
        rep = model(seq, lengths)
        items = model.item_embedding.weight
        cos = torch.stack([torch.stack([F.cosine_similarity(r, it, dim=0) for it in items]) for r in rep])
        logits = cos / 0.07
        by_hand = (torch.logsumexp(logits, dim=1) - logits[torch.arange(4), target]).mean()
        torch.testing.assert_close(model.calculate_loss(seq, lengths, target), by_hand, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.full_sort_scores(seq, lengths), cos, atol=1e-6, rtol=1e-5)


def test_encoder_ignores_future_and_padded_positions() -> None:
    model = make().eval()
    seq, lengths, _ = batch()
    with torch.no_grad():
        emb = model.embed_sequence(seq)
        base = model.encode(emb, seq)[torch.arange(4), lengths - 1]
        after = torch.arange(N)[None, :, None] >= lengths[:, None, None]
        noisy = torch.where(after, torch.randn_like(emb) * 10, emb)
        torch.testing.assert_close(model.encode(noisy, seq)[torch.arange(4), lengths - 1], base)


def test_padding_items_never_change_output_without_sequence_mixing() -> None:
    # With neither the item filter nor the spectral fusion, every step before the encoder is per position.
    model = make(use_item_filter=False, use_spectral_fusion=False).eval()
    seq, lengths, _ = batch()
    perturbed = seq.clone()
    perturbed[torch.arange(N) >= lengths[:, None]] = 7
    with torch.no_grad():
        torch.testing.assert_close(model(perturbed, lengths), model(seq, lengths))


def test_published_fusion_mixes_padded_positions() -> None:
    # As published, the circular fusion sees every position: padded items are part of the input.
    model = make().eval()
    seq, lengths, _ = batch()
    perturbed = seq.clone()
    perturbed[1, lengths[1] :] = 7
    with torch.no_grad():
        assert not torch.allclose(model(perturbed, lengths)[1], model(seq, lengths)[1])


@pytest.mark.parametrize("name", VARIANTS[1:])
def test_ablations_change_the_forward(name: str) -> None:
    seq, lengths, _ = batch()
    full, ablated = make("tedrec").eval(), make(name).eval()
    for expert in full.moe_adaptor.experts:  # modulation tables start at 0: give them values to lose
        expert.bias.data.normal_()
    shapes = {k: v.shape for k, v in ablated.state_dict().items()}
    shared = {k: v for k, v in full.state_dict().items() if shapes.get(k) == v.shape}
    ablated.load_state_dict(shared, strict=False)  # same shared weights: only the flag differs
    with torch.no_grad():
        assert not torch.allclose(full(seq, lengths), ablated(seq, lengths), atol=1e-4)


def test_ablation_parameters() -> None:
    assert make("tedrec-wo-mm").moe_adaptor.experts[0].bias.shape == (1, 1, TEXT_DIM)
    names = {n for n, _ in make("tedrec-wo-if").named_parameters()}
    assert "fusion.complex_weight" not in names and "fusion.item_gating.weight" in names
    names = {n for n, _ in make("tedrec-wo-ag").named_parameters()}
    assert "fusion.item_gating.weight" not in names and "fusion.complex_weight" in names


def test_ablated_fusion_formulas() -> None:
    torch.manual_seed(3)
    e, t = torch.randn(2, N, D), torch.randn(2, N, D)
    full = AblatedSpectralFusion(N, D)
    args = (full.complex_weight, full.item_gating.weight, full.item_gating.bias)
    args += (full.fusion_gating.weight, full.fusion_gating.bias)
    torch.testing.assert_close(full(e, t), spectral_fusion_reference(e, t, *args))

    def ortho(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=1, norm="ortho")

    e2 = torch.fft.irfft(ortho(e) * torch.view_as_complex(full.complex_weight), n=N, dim=1, norm="ortho")
    f = torch.fft.irfft(ortho(t) * ortho(e), n=N, dim=1, norm="ortho")
    no_gates = AblatedSpectralFusion(N, D, use_gates=False)
    no_gates.complex_weight.data.copy_(full.complex_weight)
    torch.testing.assert_close(no_gates(e, t), e2 + f)
    no_filter = AblatedSpectralFusion(N, D, use_item_filter=False, use_gates=False)
    torch.testing.assert_close(no_filter(e, t), e + f)
    time_product = AblatedSpectralFusion(N, D, use_spectral_fusion=False, use_gates=False)
    time_product.complex_weight.data.copy_(full.complex_weight)
    torch.testing.assert_close(time_product(e, t), e2 + t * e)


@pytest.mark.parametrize("reference", [True, False])
def test_seeded_construction_and_training_step_are_deterministic(reference: bool) -> None:
    seq, lengths, target = batch()
    losses = []
    for _ in range(2):
        model = make(seed=5, reference=reference).train()
        torch.manual_seed(11)
        losses.append(model.calculate_loss(seq, lengths, target))
    assert torch.equal(losses[0], losses[1])
    a, b = make(seed=5).state_dict(), make(seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_noise_and_dropout_only_in_training() -> None:
    model = make()
    seq, lengths, _ = batch()
    x = model.text_embeddings[seq]
    model.train()
    assert not torch.equal(model.moe_adaptor.gates(x), model.moe_adaptor.gates(x))
    assert not torch.equal(model(seq, lengths), model(seq, lengths))
    model.eval()
    torch.testing.assert_close(model.moe_adaptor.gates(x), torch.full((4, N, 8), 1 / 8))  # w_gate init 0
    with torch.no_grad():
        assert torch.equal(model(seq, lengths), model(seq, lengths))


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = make(name).train()
    seq, lengths, target = batch()
    model.calculate_loss(seq, lengths, target).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def to_public_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    back = {new: old for old, new in PUBLIC_TO_TEDREC_RENAMES.items()}
    return {back.get(k, k): v.clone() for k, v in state.items()}


def test_public_state_dict_loads() -> None:
    source, target = make(seed=1, reference=True).eval(), make(seed=2, reference=True).eval()
    public = to_public_names(source.state_dict())
    assert {"complex_weight", "item_gating.weight", "plm_embedding.weight", "moe_adaptor.w_gate"} <= set(public)
    assert "trm_encoder.layer.1.multi_head_attention.query.weight" in public
    assert "trm_encoder.layer.0.feed_forward.dense_1.bias" in public
    missing, unexpected = load_public_tedrec_state_dict(target, {"state_dict": public, "epoch": 3})
    assert missing == [] and unexpected == []
    seq, lengths, _ = batch()
    with torch.no_grad():
        assert torch.equal(source(seq, lengths), target(seq, lengths))


def test_public_state_dict_partial_and_mismatched() -> None:
    public = to_public_names(make().state_dict())
    public["extra.weight"] = torch.zeros(1)
    missing, unexpected = load_public_tedrec_state_dict(make("tedrec-wo-if"), public)
    assert missing == [] and sorted(unexpected) == ["complex_weight", "extra.weight"]
    del public["LayerNorm.bias"]
    missing, _ = load_public_tedrec_state_dict(make(), public)
    assert missing == ["LayerNorm.bias"]
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_public_tedrec_state_dict(make(hidden_size=2 * D), public)


def test_build_model_errors() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("bert4rec", N_ITEMS, N, None)
    with pytest.raises(ValueError, match="text_embeddings"):
        build_model("tedrec", N_ITEMS, N, None)
    with pytest.raises(ValueError, match="text_embeddings must be"):
        TedRec(N_ITEMS, torch.zeros(N_ITEMS - 1, 4))


def test_torch_compile_matches_eager() -> None:
    model = make(n_layers=1).eval()
    seq, lengths, target = batch()
    compiled = torch.compile(model.calculate_loss)
    with torch.no_grad():
        torch.testing.assert_close(compiled(seq, lengths, target), model.calculate_loss(seq, lengths, target))


@pytest.mark.parametrize("name", VARIANTS)
def test_fast_path_equals_reference_mode_without_dropout(name: str) -> None:
    """With every dropout off, the fast path (MoE op, last layer at the last position) equals reference mode in
    training (the gate noise is drawn first in both), loss and gradients."""
    seq, lengths, target = batch()
    zero = {"hidden_dropout": 0.0, "attn_dropout": 0.0, "adaptor_dropout": 0.0}
    grads = []
    for reference in (True, False):
        model = make(name, seed=3, reference=reference, **zero).double().train()
        with torch.no_grad():
            for expert in model.moe_adaptor.experts:
                expert.bias.normal_()
            model.moe_adaptor.w_gate.normal_()
            model.moe_adaptor.w_noise.normal_()
        torch.manual_seed(4)
        loss = model.calculate_loss(seq, lengths, target)
        loss.backward()
        grads.append((loss.detach(), {k: p.grad for k, p in model.named_parameters()}))
    tol = 1e-10 if name in ("tedrec", "tedrec-wo-mm") else 1e-5  # the ablated fusion computes its FFTs in float32
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=tol, rtol=tol)
    for key, expected in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][key], expected, atol=tol, rtol=10 * tol,
                                   msg=lambda m, key=key: f"{key}: {m}")


def test_reference_mode_draws_the_public_models_masks() -> None:
    """Reference mode's training forward is the eager per-expert formula with nn.Dropout masks in expert order."""
    model = make(reference=True).train()
    seq, _, _ = batch()
    moe = model.moe_adaptor
    torch.manual_seed(9)
    out = moe.forward_items(seq, model.text_embeddings)
    torch.manual_seed(9)
    x = model.text_embeddings[seq]
    gates = moe.gates(x)
    expected = sum(gates[..., k : k + 1] * ex(x) for k, ex in enumerate(moe.experts))
    assert torch.equal(out, expected)


def test_fast_training_uses_the_op_with_reproducible_masks() -> None:
    model = make().train()
    seq, _, _ = batch()
    outs = []
    for _ in range(2):
        torch.manual_seed(9)
        outs.append(model.moe_adaptor.forward_items(seq, model.text_embeddings))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], model.moe_adaptor.forward_items(seq, model.text_embeddings))
