"""The full-catalog cross-entropy: fused backends (Triton, torch-chunked) against the float64 reference.

Without a GPU the Triton kernels run on CPU tensors under the interpreter (see conftest.py); with one,
the same tests run on the device.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tedrec_fast import full_catalog_cross_entropy
from tedrec_fast.kernels import full_catalog_ce as kernels
from tedrec_fast.ops.full_catalog_ce import op
from tedrec_fast.ops.full_catalog_ce import triton as host
from tedrec_fast.ops.full_catalog_ce.reference import full_catalog_cross_entropy_reference
from tests.tolerances import FULL_CATALOG_CE_BACKWARD, FULL_CATALOG_CE_FORWARD

FUSED = ("triton", "torch-chunked")


def make_inputs(B: int, V: int, d: int, dtype: torch.dtype, device: str, *, seed: int = 0, ignored: int = 1,
                zero_rows: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, an item table whose first ``zero_rows`` rows are zero (padding), targets with ``ignored``
    rows set to -100. Scaled so cosine logits / 0.07 and raw dot products both stay O(10)."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(B, d, generator=gen, dtype=torch.float64)
    items = torch.randn(V, d, generator=gen, dtype=torch.float64) * d**-0.5
    items[: min(zero_rows, V)] = 0
    targets = torch.randint(0, V, (B,), generator=gen)
    targets[: min(ignored, B)] = -100
    return query.to(dtype=dtype, device=device), items.to(dtype=dtype, device=device), targets.to(device)


def _reference(query, items, targets, grad, **kw):
    """Per-row float64 reference loss and gradients from the (already rounded) inputs."""
    q = query.detach().double().cpu().requires_grad_()
    c = items.detach().double().cpu().requires_grad_()
    loss = full_catalog_cross_entropy_reference(q, c, targets.cpu(), reduction="none", **kw)
    d_q, d_c = torch.autograd.grad(loss, (q, c), grad.double().cpu())
    return loss.detach(), d_q, d_c


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: tuple[float, float], what: str) -> None:
    atol, rtol = tol
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double().cpu(), expected, atol=atol * scale, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def check(backend: str, B: int, V: int, d: int, dtype: torch.dtype, device: str, *, normalize: bool = True,
          seed: int = 0, **inputs_kw) -> None:
    query, items, targets = make_inputs(B, V, d, dtype, device, seed=seed, **inputs_kw)
    temperature = 0.07 if normalize else 1.0
    kw = dict(temperature=temperature, normalize=normalize)
    grad = torch.rand(B, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).to(device)
    want_loss, want_dq, want_dc = _reference(query, items, targets, grad, **kw)

    q = query.clone().requires_grad_()
    c = items.clone().requires_grad_()
    loss = full_catalog_cross_entropy(q, c, targets, reduction="none", backend=backend, **kw)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and loss.shape == (B,)
    loss.backward(grad.to(loss.dtype))
    _assert_close(loss, want_loss, FULL_CATALOG_CE_FORWARD[dtype], "loss")
    _assert_close(q.grad, want_dq, FULL_CATALOG_CE_BACKWARD[dtype], "d_query")
    assert c.grad.dtype == dtype and q.grad.dtype == dtype
    # zero (padding) rows get gradients ~1/eps: compare them on their own scale
    zero = (items.double().cpu().abs().sum(1) == 0)
    _assert_close(c.grad[~zero.to(device)], want_dc[~zero], FULL_CATALOG_CE_BACKWARD[dtype], "d_item_weight")
    if dtype in (torch.float32, torch.float64):  # 1e12 * O(1) overflows fp16 / is coarse in bf16
        _assert_close(c.grad[zero.to(device)], want_dc[zero], FULL_CATALOG_CE_BACKWARD[dtype], "d_item_weight[pad]")


# --------------------------------------------------------------------------------------------
# Shapes, normalisation, dtypes
# --------------------------------------------------------------------------------------------
SHAPES = [  # (B, |V|, d): odd sizes, a single item, a single query, empty batch, d past one k-chunk
    (0, 17, 7), (1, 1, 1), (3, 2, 7), (3, 17, 64), (37, 17, 1), (37, 1000, 7), (1, 17, 300), (37, 2, 300),
]


@pytest.mark.parametrize("normalize", [True, False], ids=["cosine", "dot"])
@pytest.mark.parametrize(("B", "V", "d"), SHAPES)
@pytest.mark.parametrize("backend", FUSED)
def test_float32_matches_reference(backend: str, B: int, V: int, d: int, normalize: bool, device: str) -> None:
    check(backend, B, V, d, torch.float32, device, normalize=normalize, seed=B + V + d)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize(("B", "V", "d"), [(3, 17, 7), (37, 100, 64), (5, 200, 300)])
@pytest.mark.parametrize("backend", FUSED)
def test_other_dtypes_match_reference(backend: str, B: int, V: int, d: int, dtype: torch.dtype, device: str) -> None:
    # a padding row's gradient (~1e12) overflows float16: covered in float32/float64
    check(backend, B, V, d, dtype, device, seed=V + d, zero_rows=int(dtype != torch.float16))


def test_chunked_with_many_chunks(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setattr(op, "CHUNK_ELEMENTS", 37 * 7)  # 7 items per chunk, last chunk partial
    check("torch-chunked", 37, 100, 9, torch.float32, device)
    check("torch-chunked", 37, 100, 9, torch.float64, device, normalize=False, ignored=5)


@pytest.mark.parametrize("backend", FUSED)
def test_every_item_zero_gives_uniform_softmax(backend: str, device: str) -> None:
    query, items, targets = make_inputs(4, 9, 5, torch.float32, device, zero_rows=9, ignored=0)
    loss = full_catalog_cross_entropy(query, items, targets, reduction="none", backend=backend)
    torch.testing.assert_close(loss.cpu(), torch.full((4,), torch.log(torch.tensor(9.0)).item()))


@pytest.mark.parametrize("backend", FUSED)
def test_zero_query_row(backend: str, device: str) -> None:
    query, items, targets = make_inputs(3, 11, 6, torch.float64, device, zero_rows=0, ignored=0)
    query[1] = 0
    check_q = query.clone().requires_grad_()
    loss = full_catalog_cross_entropy(check_q, items, targets, reduction="sum", backend=backend)
    loss.backward()
    q_ref = query.detach().cpu().clone().requires_grad_()
    ref = full_catalog_cross_entropy_reference(q_ref, items.cpu(), targets.cpu(), reduction="sum")
    ref.backward()
    torch.testing.assert_close(loss.cpu(), ref)
    torch.testing.assert_close(check_q.grad.cpu(), q_ref.grad, rtol=1e-9, atol=1e-9 * q_ref.grad.abs().max().item())


# --------------------------------------------------------------------------------------------
# Reductions and ignore_index, exactly as F.cross_entropy
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignored", [0, 2, 5], ids=["none-ignored", "some-ignored", "all-ignored"])
@pytest.mark.parametrize("backend", [*FUSED, "torch"])
def test_reductions_match_f_cross_entropy(backend: str, reduction: str, ignored: int, device: str) -> None:
    query, items, targets = make_inputs(5, 13, 8, torch.float64, device, ignored=ignored)
    q = query.clone().requires_grad_()
    got = full_catalog_cross_entropy(q, items, targets, reduction=reduction, backend=backend)
    q_ref = query.cpu().clone().requires_grad_()
    logits = F.normalize(q_ref, dim=-1) @ F.normalize(items.cpu(), dim=-1).t() / 0.07
    want = F.cross_entropy(logits, targets.cpu(), reduction=reduction)
    torch.testing.assert_close(got.cpu(), want, equal_nan=True)
    if ignored < 5:
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(q.grad.cpu(), q_ref.grad)
    else:
        assert reduction != "mean" or got.isnan()  # F.cross_entropy: 0 / 0


@pytest.mark.parametrize("backend", FUSED)
def test_ignore_index_inside_the_catalog(backend: str, device: str) -> None:
    query, items, targets = make_inputs(6, 10, 4, torch.float64, device, ignored=0)
    targets[:3] = 0  # ignore the padding item as a target
    got = full_catalog_cross_entropy(query, items, targets, ignore_index=0, backend=backend)
    want = full_catalog_cross_entropy_reference(query.cpu(), items.cpu(), targets.cpu(), ignore_index=0)
    torch.testing.assert_close(got.cpu(), want)


# --------------------------------------------------------------------------------------------
# Kernels directly: poisoned outputs, strides, determinism, float64 gradcheck
# --------------------------------------------------------------------------------------------
def _scales(query, items, normalize=True):
    return op._row_scales(query, 0.07, normalize), op._row_scales(items, 1.0, normalize)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kernels_overwrite_poisoned_outputs(dtype: torch.dtype, device: str) -> None:
    query, items, targets = make_inputs(37, 70, 40, dtype, device)
    (qs, qpi), (cs, cpi) = _scales(query, items)
    loss = torch.full((37,), float("nan"), device=device)
    lse = torch.full((37,), float("nan"), device=device)
    host.full_catalog_ce_forward(query, items, targets, qs, cs, -100, loss=loss, lse=lse)
    grad = torch.rand(37, device=device)
    want_loss, want_dq, want_dc = _reference(query, items, targets, grad)
    _assert_close(loss, want_loss, FULL_CATALOG_CE_FORWARD[dtype], "loss")
    assert lse.isfinite().all()
    d_q = torch.full((37, 40), float("nan"), dtype=dtype, device=device)
    d_c = torch.full((70, 40), float("nan"), dtype=dtype, device=device)
    got = host.full_catalog_ce_backward(grad, query, items, targets, lse, qs, cs, qpi, cpi, -100,
                                           d_query=d_q, d_item=d_c)
    assert got[0] is d_q and got[1] is d_c
    _assert_close(d_q, want_dq, FULL_CATALOG_CE_BACKWARD[dtype], "d_query")
    _assert_close(d_c[1:], want_dc[1:], FULL_CATALOG_CE_BACKWARD[dtype], "d_item_weight")
    assert d_c[0].isfinite().all()


@pytest.mark.parametrize("backend", FUSED)
def test_non_contiguous_inputs(backend: str, device: str) -> None:
    query, items, targets = make_inputs(7, 30, 19, torch.float32, device, zero_rows=0)
    q_nc = torch.zeros(19, 7, device=device).t()
    q_nc.copy_(query)
    c_nc = torch.zeros(30, 40, device=device)[:, 1:20]
    c_nc.copy_(items)
    t_nc = torch.zeros(14, dtype=torch.long, device=device)[::2]
    t_nc.copy_(targets)
    assert not (q_nc.is_contiguous() or c_nc.is_contiguous() or t_nc.is_contiguous())
    args = [x.clone().requires_grad_() for x in (q_nc, c_nc)]
    got = full_catalog_cross_entropy(*args, t_nc, reduction="sum", backend=backend)
    got.backward()
    ref = [x.clone().requires_grad_() for x in (query, items)]
    want = full_catalog_cross_entropy(*ref, targets, reduction="sum", backend=backend)
    want.backward()
    torch.testing.assert_close(got, want)
    for a, b in zip(args, ref):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("backend", FUSED)
def test_backward_is_deterministic(backend: str, device: str) -> None:
    query, items, targets = make_inputs(70, 150, 40, torch.float32, device)
    results = []
    for _ in range(2):
        q, c = query.clone().requires_grad_(), items.clone().requires_grad_()
        loss = full_catalog_cross_entropy(q, c, targets, backend=backend)
        loss.backward()
        results.append((loss, q.grad, c.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# Item ranges: forward splits and backward chunks, their partials and their combination
# --------------------------------------------------------------------------------------------
RANGES_B, RANGES_V, RANGES_D = 70, 64 * 5 + 13, 40  # fp32: 3 query tiles, 6 item tiles, both last ones short


def _ranges_inputs(targets: str, device: str):
    """Inputs over 6 item tiles; ``targets``: "every-split" puts a target in every item tile (so in every
    range of any layout), "empty-split" none in items [128, 256) (the middle of three ranges)."""
    query, items, tgt = make_inputs(RANGES_B, RANGES_V, RANGES_D, torch.float32, device)
    tgt = tgt.cpu()
    if targets == "every-split":
        tgt[1:7] = torch.tensor([0, 64 + 5, 128 + 9, 192, 256 + 63, RANGES_V - 1])
    else:
        keep = torch.cat([torch.arange(0, 128), torch.arange(256, RANGES_V)])
        tgt[1:] = keep[torch.randint(0, len(keep), (RANGES_B - 1,), generator=torch.Generator().manual_seed(1))]
    return query, items, tgt.to(device)


def poison_torch_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``torch.empty`` return NaN-filled floating-point tensors (scratch the kernels must write first)
    until ``monkeypatch.undo()``."""
    empty = torch.empty

    def poisoned(*args, **kwargs):
        out = empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", poisoned)


def _run_kernels(query, items, targets, grad, splits=None, chunks=None):
    (qs, qpi), (cs, cpi) = _scales(query, items)
    loss, lse = host.full_catalog_ce_forward(query, items, targets, qs, cs, -100, splits=splits)
    d_q, d_c = host.full_catalog_ce_backward(grad, query, items, targets, lse, qs, cs, qpi, cpi, -100,
                                                chunks=chunks)
    return loss, lse, d_q, d_c


def test_item_ranges_cut_whole_tiles() -> None:
    assert kernels.kernel_config(torch.float32).BLOCK_V == 64  # as _ranges_inputs assumes
    assert host._item_ranges(6, 3) == (2, 3)
    assert host._item_ranges(6, 4) == (2, 3)  # never an empty range
    assert host._item_ranges(6, 100) == (1, 6)  # never more ranges than item tiles
    assert host._item_ranges(1, 3) == (1, 1)
    assert host._item_ranges(5, 0) == (5, 1)
    assert host._item_ranges(15_625, 132) == (119, 132)  # |V| = 1M on an H100


def test_range_counts_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cfg, f32 = torch.device("cpu"), kernels.kernel_config(torch.bfloat16), torch.float32
    assert host._forward_splits(cpu, 2048, cfg) == host._backward_chunks(cpu, 2048, 300, f32) >= 2
    monkeypatch.setattr(host, "_sm_count", lambda device: 132)  # an H100 SXM
    assert host._forward_splits(cpu, 2048, cfg) == 16  # 32 query tiles x 16 splits = 3.9 programs per SM
    assert host._forward_splits(cpu, 64, cfg) == 528
    assert host._backward_chunks(cpu, 2048, 300, f32) == 132  # partials: 132 x 2.46 MB
    assert host._backward_chunks(cpu, 65_536, 300, f32) == 6  # capped at 512 MiB of partials


@pytest.mark.parametrize("targets", ["every-split", "empty-split"])
@pytest.mark.parametrize("ranges", [1, 2, 3, 6])
def test_item_ranges_match_reference(ranges: int, targets: str, device: str) -> None:
    # chunks = 1: one chunk of 6 item tiles, two groups (GROUP_V = 4, then 2 ending on the short tile)
    query, items, tgt = _ranges_inputs(targets, device)
    grad = torch.rand(RANGES_B, device=device)
    want_loss, want_dq, want_dc = _reference(query, items, tgt, grad)
    loss, _, d_q, d_c = _run_kernels(query, items, tgt, grad, splits=ranges, chunks=ranges)
    tol = FULL_CATALOG_CE_BACKWARD[torch.float32]
    _assert_close(loss, want_loss, FULL_CATALOG_CE_FORWARD[torch.float32], "loss")
    _assert_close(d_q, want_dq, tol, "d_query")
    _assert_close(d_c[1:], want_dc[1:], tol, "d_item_weight")  # row 0 is the zero (padding) row


def test_item_ranges_are_bitwise_deterministic(device: str) -> None:
    query, items, tgt = _ranges_inputs("every-split", device)
    grad = torch.rand(RANGES_B, device=device)
    first, second = (_run_kernels(query, items, tgt, grad, splits=3, chunks=2) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_scratch_is_written_before_read(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    """Partials, target logits and accumulators start as NaN; an out-of-range target (unchecked under
    torch.compile) gets the lse alone as its loss."""
    query, items, tgt = _ranges_inputs("empty-split", device)
    grad = torch.rand(RANGES_B, device=device)
    want_loss, want_dq, want_dc = _reference(query, items, tgt, grad)
    poison_torch_empty(monkeypatch)
    loss, _, d_q, d_c = _run_kernels(query, items, tgt, grad, splits=3, chunks=1)
    tgt[-1] = RANGES_V + 5
    (qs, _), (cs, _) = _scales(query, items)
    bad_loss, bad_lse = host.full_catalog_ce_forward(query, items, tgt, qs, cs, -100, splits=2)
    monkeypatch.undo()
    _assert_close(loss, want_loss, FULL_CATALOG_CE_FORWARD[torch.float32], "loss")
    _assert_close(d_q, want_dq, FULL_CATALOG_CE_BACKWARD[torch.float32], "d_query")
    _assert_close(d_c[1:], want_dc[1:], FULL_CATALOG_CE_BACKWARD[torch.float32], "d_item_weight")
    assert d_c[0].isfinite().all()
    assert bad_loss[-1] == bad_lse[-1] and bad_loss.isfinite().all()


@pytest.mark.parametrize("normalize", [True, False], ids=["cosine", "dot"])
@pytest.mark.parametrize(("B", "V", "d"), [(3, 5, 4), (2, 1, 3), (4, 3, 1)])
@pytest.mark.parametrize("backend", FUSED)
def test_gradcheck_float64(backend: str, B: int, V: int, d: int, normalize: bool, device: str) -> None:
    query, items, targets = make_inputs(B, V, d, torch.float64, device, zero_rows=0)
    inputs = (query.requires_grad_(), items.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda q, c: full_catalog_cross_entropy(q, c, targets, temperature=0.5, normalize=normalize,
                                                reduction="none", backend=backend),
        inputs, atol=1e-8, rtol=1e-6,
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(B=st.integers(0, 70), V=st.integers(1, 140), d=st.integers(1, 70), normalize=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), backend=st.sampled_from(FUSED))
def test_hypothesis_shapes(B: int, V: int, d: int, normalize: bool, dtype: torch.dtype, backend: str,
                           device: str) -> None:
    check(backend, B, V, d, dtype, device, normalize=normalize, seed=B * 7 + V * 3 + d, ignored=B // 4)


def test_kernel_configs_are_valid_for_tl_dot() -> None:
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        cfg = kernels.kernel_config(dtype)
        assert cfg in kernels.all_kernel_configs()
        assert min(cfg.BLOCK_B, cfg.BLOCK_V, cfg.BLOCK_K) >= 16
        assert len(kernels.compile_specs(dtype)) == 4  # forward, combine, backward, query sum
