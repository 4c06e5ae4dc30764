"""Public API of the spectral-fusion op: the module, bad input, dispatch, autocast, torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tedrec_fast
from tedrec_fast import FusedSpectralFusion, spectral_fusion
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference
from tests.tolerances import FORWARD


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------
def test_module_parameters_match_public_tedrec() -> None:
    module = FusedSpectralFusion(50, 300)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {
        "complex_weight": (1, 26, 300, 2),
        "item_gating.weight": (1, 300),
        "item_gating.bias": (1,),
        "fusion_gating.weight": (1, 300),
        "fusion_gating.bias": (1,),
    }
    assert abs(module.complex_weight.std().item() - 0.02) < 0.002
    assert abs(module.item_gating.weight.std().item() - 0.02) < 0.005


def test_module_loads_public_state_dict_strictly() -> None:
    public = {
        "complex_weight": torch.randn(1, 26, 300, 2) * 0.02,
        "item_gating.weight": torch.randn(1, 300),
        "item_gating.bias": torch.randn(1),
        "fusion_gating.weight": torch.randn(1, 300),
        "fusion_gating.bias": torch.randn(1),
    }
    module = FusedSpectralFusion(50, 300)
    module.load_state_dict(public, strict=True)
    assert torch.equal(module.complex_weight, public["complex_weight"])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_module_matches_reference_formula(backend: str, device: str) -> None:
    module = FusedSpectralFusion(7, 9, backend=backend).to(device)
    E, T = torch.randn(2, 7, 9, device=device), torch.randn(2, 7, 9, device=device)
    # the published formula, written with the module's own submodules
    e_spec = torch.fft.rfft(E, dim=1, norm="ortho")
    fused = torch.fft.irfft(torch.fft.rfft(T, dim=1, norm="ortho") * e_spec, n=7, dim=1, norm="ortho")
    filtered = torch.fft.irfft(e_spec * torch.view_as_complex(module.complex_weight), n=7, dim=1, norm="ortho")
    expected = 2 * (filtered * torch.sigmoid(module.item_gating(filtered)) +
                    fused * torch.sigmoid(module.fusion_gating(fused)))
    torch.testing.assert_close(module(E, T), expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 8), ValueError, "max_seq_length"),
        ((8, -1), ValueError, "hidden_size"),
        ((8.0, 4), ValueError, "max_seq_length"),
        ((True, 4), ValueError, "max_seq_length"),
    ],
)
def test_module_rejects_bad_constructor_arguments(args, error, match) -> None:
    with pytest.raises(error, match=match):
        FusedSpectralFusion(*args)


def test_module_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        FusedSpectralFusion(8, 4, backend="cutlass")


def test_module_rejects_wrong_length_and_size() -> None:
    module = FusedSpectralFusion(50, 16)
    with pytest.raises(ValueError, match="sequence length 51.*max_seq_length=50"):
        module(torch.randn(2, 51, 16), torch.randn(2, 51, 16))  # same filter size as n = 50
    with pytest.raises(ValueError, match="hidden size 8.*hidden_size=16"):
        module(torch.randn(2, 50, 8), torch.randn(2, 50, 8))


# --------------------------------------------------------------------------------------------
# Bad input to the functional form: clear errors before any launch
# --------------------------------------------------------------------------------------------
def _good():
    return list(random_inputs(2, 6, 4))


def _replace(i: int, value):
    args = _good()
    args[i] = value(args) if callable(value) else value
    return args


BAD_INPUTS = [
    ("item_emb not a tensor", _replace(0, [[1.0]]), TypeError, "item_emb must be a torch.Tensor"),
    ("text_emb integer", _replace(1, lambda a: a[1].long()), TypeError, "text_emb must be a real floating"),
    ("complex weight complex", _replace(2, lambda a: torch.view_as_complex(a[2])), TypeError, "complex_weight"),
    ("bool gate", _replace(3, lambda a: a[3] > 0), TypeError, "item_gate_weight"),
    ("rank 2", _replace(0, lambda a: a[0][0]), ValueError, r"item_emb must have shape \(B, n, d\)"),
    ("T/E mismatch", _replace(1, lambda a: a[1][:, :5]), ValueError, "text_emb must have the shape of item_emb"),
    ("filter length", _replace(2, lambda a: a[2][:, :3]), ValueError, "complex_weight must have shape"),
    ("filter size", _replace(2, lambda a: a[2][:, :, :3]), ValueError, "complex_weight must have shape"),
    ("gate size", _replace(5, lambda a: a[5][:, :3]), ValueError, "fusion_gate_weight must have shape"),
    ("bias size", _replace(4, torch.zeros(2)), ValueError, "item_gate_bias must have shape"),
    ("mixed dtype", _replace(1, lambda a: a[1].double()), TypeError, "text_emb has dtype torch.float64"),
    ("mixed device", _replace(2, lambda a: a[2].to("meta")), ValueError, "complex_weight is on meta"),
]


@pytest.mark.parametrize(("args", "error", "match"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
def test_bad_input_is_rejected(args, error, match, backend: str) -> None:
    with pytest.raises(error, match=match):
        spectral_fusion(*args, backend=backend)


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend 'cuDNN'"):
        spectral_fusion(*_good(), backend="cuDNN")
    with pytest.raises(TypeError, match="backend must be a string"):
        spectral_fusion(*_good(), backend=None)


def test_triton_backend_states_its_limits() -> None:
    with pytest.raises(ValueError, match="n=513 exceeds 512"):
        spectral_fusion(*random_inputs(1, 513, 2), backend="triton")


def test_auto_uses_the_reference_on_cpu() -> None:
    args = random_inputs(2, 5, 3)
    assert torch.equal(spectral_fusion(*args), spectral_fusion_reference(*args))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_torch_backend_returns_contiguous_v_for_non_contiguous_inputs(dtype: torch.dtype) -> None:
    plain = random_inputs(2, 7, 5, dtype)
    # E and T as (B, d, n) tensors transposed: strides (n*d, 1, n)
    item, text = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in plain[:2])
    assert not item.is_contiguous()
    out = spectral_fusion(item, text, *plain[2:], backend="torch")
    assert out.is_contiguous() and out.shape == item.shape
    torch.testing.assert_close(out, spectral_fusion_reference(*plain))


def test_backends_lists_every_backend_with_a_reason() -> None:
    table = tedrec_fast.backends()["spectral_fusion"]
    assert [b["name"] for b in table] == ["triton", "cuda", "torch"]
    for b in table:
        assert b["available"] == (b["reason"] is None)
        assert b["reason"] is None or b["reason"]


# --------------------------------------------------------------------------------------------
# Autocast and torch.compile
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_autocast_casts_inputs(backend: str, device: str) -> None:
    args = random_inputs(2, 9, 8, torch.float32, device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = spectral_fusion(*args, backend=backend)
    assert out.dtype == torch.bfloat16
    expected = spectral_fusion_reference(*(x.to(torch.bfloat16).double() for x in args))
    atol, rtol = FORWARD[torch.bfloat16]
    torch.testing.assert_close(out.double(), expected, atol=atol * 4, rtol=rtol)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_custom_ops_pass_opcheck(backend: str, device: str) -> None:
    """Fake (meta) implementations, schemas and autograd registration agree with the real kernels of
    both fused backends (the CUDA C++ kernels on the CPU emulator without a GPU)."""
    from tedrec_fast.ops.spectral_fusion.op import _spectral_fusion_backward_op, _spectral_fusion_op

    inputs = random_inputs(2, 5, 3, torch.float32, device, requires_grad=True)
    torch.library.opcheck(_spectral_fusion_op, (*inputs, backend))
    grad = torch.randn(2, 5, 3, device=device)
    torch.library.opcheck(_spectral_fusion_backward_op, (grad, *(x.detach() for x in inputs), backend))


class _TinyModel(nn.Module):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.items = nn.Linear(4, 8)
        self.text = nn.Linear(6, 8)
        self.fusion = FusedSpectralFusion(5, 8, backend=backend)
        self.out = nn.Linear(8, 3)

    def forward(self, item_features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fusion(self.items(item_features), self.text(text)))).sum(1)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_torch_compile_fullgraph_matches_eager(backend: str, device: str) -> None:
    torch._dynamo.reset()
    model = _TinyModel(backend).to(device)
    ids, text = torch.randn(4, 5, 4, device=device), torch.randn(4, 5, 6, device=device)
    eager = model(ids, text)
    eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)(ids, text)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-5)
