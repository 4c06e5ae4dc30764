"""The MoE-modulation op against its reference: every backend (torch twin, C++ core, Triton under the
interpreter), fixed noise and masks, float64 gradcheck, the masks' statistics, unbiased gradients, bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from tedrec_fast.ops.moe_modulation import core as core_module
from tedrec_fast.ops.moe_modulation import cpu as cpu_core
from tedrec_fast.ops.moe_modulation import moe_modulation, moe_modulation_reference
from tedrec_fast.ops.moe_modulation import op as op_module
from tedrec_fast.ops.moe_modulation.cpu import cpu_unavailable, dropped_mask_cpp
from tedrec_fast.ops.philox import dropped_mask, threshold

BACKENDS = ["torch", "cpp", "triton"]
#: (B, n, D, H, E, n_items, positional): odd sizes, one of everything, TedRec-like
SHAPES = [(3, 5, 13, 7, 4, 20, True), (1, 1, 1, 1, 1, 2, True), (2, 7, 33, 18, 3, 9, False),
          (4, 6, 40, 24, 8, 50, True)]


def inputs(B, n, D, H, E, V, positional, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(0, V, (B, n), generator=g)
    items[0, 0] = items[-1, -1]  # a repeated item
    table = torch.randn(V, D, generator=g, dtype=dtype)
    if V > 2:
        table[0] = 0  # TedRec's padding row: no correction, no random numbers drawn for its positions
    params = [torch.randn(D, E, generator=g, dtype=dtype), torch.randn(D, E, generator=g, dtype=dtype),
              torch.randn(E, H, D, generator=g, dtype=dtype) / math.sqrt(D),
              torch.randn(E, n if positional else 1, D, generator=g, dtype=dtype)]
    noise = torch.randn(B, n, E, generator=g, dtype=dtype)
    return items, table, [p.requires_grad_() for p in params], noise


def keep_masks(B, n, E, D, p, seed):
    rows = torch.arange(B * n)
    dropped = torch.stack([dropped_mask(rows, k, E, D, p, seed) for k in range(E)], dim=1)
    return (~dropped).view(B, n, E, D)


def poison_empty(monkeypatch):
    """Outputs the kernels allocate start as NaN, so an element a kernel forgets to write shows."""
    real = torch.empty

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", poisoned)
    monkeypatch.setattr(torch, "empty_like", lambda x, **kw: torch.full_like(x, float("nan"), **kw)
                        if x.is_floating_point() else torch.zeros_like(x, **kw))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + ("" if s[6] else "-shared"))
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_equals_reference_with_fixed_noise_and_masks(backend, shape, p, monkeypatch):
    B, n, D, H, E, V, positional = shape
    items, table, params, noise = inputs(*shape, seed=hash((shape, p)) % 1000)
    seed = 12345
    keep = keep_masks(B, n, E, D, p, seed)
    expected = moe_modulation_reference(table[items], *params, p, True, noise, keep)
    weight = torch.randn_like(expected)
    expected_grads = torch.autograd.grad((expected * weight).sum(), params)
    poison_empty(monkeypatch)
    out = moe_modulation(items, table, *params, p, True, noise, seed, backend=backend)
    grads = torch.autograd.grad((out * weight).sum(), params)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_and_float32(backend):
    items, table, params, _ = inputs(4, 6, 40, 24, 8, 50, True, dtype=torch.float32)
    expected = moe_modulation_reference(table[items], *params, 0.2, False)
    out = moe_modulation(items, table, *params, 0.2, False, backend=backend)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_gradcheck_float64(backend):
    items, table, params, noise = inputs(2, 2, 6, 3, 2, 5, True)
    fn = lambda *ps: moe_modulation(items, table, *ps, 0.25, True, noise, 99, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-7)


def test_backends_draw_the_same_masks():
    B, n, E, D, p, seed = 7, 11, 8, 45, 0.2, 2**40 + 17
    torch_mask = ~keep_masks(B, n, E, D, p, seed).view(B * n, E, D)
    assert torch.equal(dropped_mask_cpp(B * n, E, D, threshold(p), seed), torch_mask)


def test_masks_rate_and_independence():
    """Rate p; no correlation between experts, neighbouring positions and neighbouring coordinates (one draw of
    ~400k coordinates: the standard error of each statistic is ~1e-3)."""
    B, n, E, D, p = 32, 50, 8, 64, 0.2
    m = (~keep_masks(B, n, E, D, p, seed=2024)).double()
    se = math.sqrt(p * (1 - p) / m.numel())
    assert abs(m.mean().item() - p) < 5 * se

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return ((a * b).mean() / (a.std() * b.std())).item()

    assert abs(corr(m[:, :, :-1], m[:, :, 1:])) < 0.01  # experts
    assert abs(corr(m[:, :-1], m[:, 1:])) < 0.01  # positions
    assert abs(corr(m[..., :-1], m[..., 1:])) < 0.01  # coordinates
    assert abs(corr(m[:-1], m[1:])) < 0.01  # sequences
    # quads of coordinates come from one Philox call: its four lanes must not be correlated either
    assert abs(corr(m[..., 0::4], m[..., 1::4])) < 0.01 and abs(corr(m[..., 0::4], m[..., 3::4])) < 0.01


def test_seed_from_torch_generator_reproduces_and_varies():
    items, table, params, _ = inputs(3, 5, 13, 7, 4, 20, True)
    torch.manual_seed(5)
    a = moe_modulation(items, table, *params, 0.3, True)
    torch.manual_seed(5)
    b = moe_modulation(items, table, *params, 0.3, True)
    c = moe_modulation(items, table, *params, 0.3, True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gradients_unbiased_over_many_draws():
    """The mean over draws of the op's output and gradients matches the reference's (nn.Dropout masks) within
    a few standard errors; the gate noise is fixed so only the masks vary. Each call holds ``copies`` copies of
    the same sequences (independent masks per row), so one call gives the mean of ``copies`` draws."""
    items, table, params, noise = inputs(2, 3, 12, 6, 3, 8, True)
    copies, groups = 25, 16
    items, noise = items.repeat(copies, 1), noise.repeat(copies, 1, 1)

    def stats(fn):
        values = []
        for _ in range(groups):
            out = fn()
            grads = torch.autograd.grad(out.sum(), params)
            values.append(torch.cat([out.detach().view(copies, -1).mean(0), *[g.flatten() / copies for g in grads]]))
        values = torch.stack(values)
        return values.mean(0), values.std(0) / math.sqrt(groups)

    torch.manual_seed(0)
    mean_ref, se_ref = stats(lambda: moe_modulation_reference(table[items], *params, 0.3, True, noise))
    mean_op, se_op = stats(lambda: moe_modulation(items, table, *params, 0.3, True, noise, backend="cpp"))
    z = (mean_op - mean_ref).abs() / torch.sqrt(se_ref**2 + se_op**2).clamp_min(1e-12)
    assert (z < 5).all(), z.max()
    assert z.mean() < 1.2  # about E|N(0,1)| = 0.8 for unbiased estimates


def test_no_mask_sized_tensor_is_kept_for_backward():
    """Saved tensors of the autograd graph: nothing of size B * n * E * D (the masks are regenerated)."""
    B, n, D, H, E, V = 16, 10, 64, 8, 8, 20
    items, table, params, _ = inputs(B, n, D, H, E, V, True, dtype=torch.float32)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        moe_modulation(items, table, *params, 0.2, True, backend="cpp")
    assert max(sizes) < B * n * D


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"items": torch.zeros(2, 5)}, TypeError, "items must be an integer"),
    ({"items": torch.zeros(2, 5, 1, dtype=torch.long)}, ValueError, "items must have shape"),
    ({"items": torch.full((3, 5), 99)}, ValueError, r"items must lie in \[0, 20\)"),
    ({"p": 1.0}, ValueError, "p must be"),
    ({"p": True}, ValueError, "p must be"),
    ({"training": 1}, TypeError, "training must be a bool"),
    ({"seed": -1}, ValueError, "seed must be"),
    ({"noise": torch.zeros(3, 5)}, ValueError, "noise must be"),
    ({"backend": "cuda"}, ValueError, "unknown backend"),
    ({"backend": 3}, TypeError, "backend must be a string"),
    ({"bias": torch.zeros(4, 3, 13, dtype=torch.float64)}, ValueError, "bias must have shape"),
    ({"weight": torch.zeros(4, 7, 12, dtype=torch.float64)}, ValueError, "weight must have shape"),
    ({"w_gate": torch.zeros(13, 3, dtype=torch.float64)}, ValueError, "w_gate must have shape"),
    ({"table": torch.zeros(20, 13, dtype=torch.float32)}, TypeError, "dtype"),
    ({"table": torch.zeros(20, 13, dtype=torch.float64, requires_grad=True)}, ValueError, "must not require grad"),
])
def test_bad_arguments(kwargs, error, match):
    items, table, (w_gate, w_noise, weight, bias), _ = inputs(3, 5, 13, 7, 4, 20, True)
    args = dict(items=items, table=table, w_gate=w_gate, w_noise=w_noise, weight=weight, bias=bias, p=0.2,
                training=True)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        moe_modulation(**args)


def test_cpp_builds_here_and_auto_picks_it_on_cpu():
    assert cpu_unavailable() is None
    problem = op_module.Problem(torch.device("cpu"), torch.float32, ())
    assert op_module.choose_backend(op_module.BACKENDS, "auto", problem, op="t").name == "cpp"


def test_without_a_compiler_auto_falls_back_to_torch(tmp_path):
    """In a fresh process with no compiler on PATH (and an empty cache), the C++ core reports why and auto
    runs the torch backend."""
    code = ("import torch\n"
            "from tedrec_fast.ops.moe_modulation import op\n"
            "from tedrec_fast.ops.moe_modulation.cpu import cpu_unavailable\n"
            "print(cpu_unavailable())\n"
            "p = op.Problem(torch.device('cpu'), torch.float32, ())\n"
            "print(op.choose_backend(op.BACKENDS, 'auto', p, op='t').name)\n")
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TEDREC_FAST_CACHE_DIR": str(tmp_path)}
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    reason, backend = result.stdout.strip().splitlines()
    assert "not an executable" in reason and backend == "torch"


def test_autocast_computes_in_the_weights_dtype():
    items, table, params, noise = inputs(3, 5, 13, 7, 4, 20, True, dtype=torch.float32)
    expected = moe_modulation(items, table, *params, 0.2, True, noise, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe_modulation(items, table, *params, 0.2, True, noise, 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_listed_in_backends_report():
    import tedrec_fast

    rows = {row["name"]: row for row in tedrec_fast.backends()["moe_modulation"]}
    assert list(rows) == ["triton", "cpp", "torch"]
    assert rows["cpp"]["available"] and rows["torch"]["available"]


@pytest.mark.parametrize("threads", [1, 3])
def test_cpp_core_equals_torch_twin_at_more_rows_and_threads(threads):
    """Rows split across threads (3 on any machine: per-thread gradient buffers), a partial last column block,
    zero text rows: the C++ core against the torch twin of the same masks, forward and backward."""
    R, U, E, D, H, p, seed = 203, 11, 3, 45, 37, 0.3, 7
    g = torch.Generator().manual_seed(threads)
    index = torch.randint(0, U, (R,), generator=g)
    xu = torch.randn(U, D, generator=g, dtype=torch.float64)
    xu[[0, 5]] = 0
    gates = torch.rand(R, E, generator=g, dtype=torch.float64)
    P = torch.randn(U, E, H, generator=g, dtype=torch.float64)
    WT = torch.randn(E, D, H, generator=g, dtype=torch.float64)
    grad_out = torch.randn(R, H, generator=g, dtype=torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = cpu_core.forward(index, xu, gates, P, WT, 1 / (1 - p), threshold(p), seed)
        grads = cpu_core.backward(index, xu, gates, P, WT, 1 / (1 - p), threshold(p), seed, grad_out)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(out, core_module._torch_forward(index, xu, gates, P, WT, p, seed), atol=1e-12,
                               rtol=1e-10)
    for got, want in zip(grads, core_module._torch_backward(index, xu, gates, P, WT, p, seed, grad_out)):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-9)
