"""The CPU emulator of the CUDA C++ kernels itself: its kernel table, launches, barriers, shuffles and errors.

The op's numerics through the emulator are tested with the op; here a few small kernels are run
directly and checked against torch, most with integer-valued data so every sum is exact in any order.
"""

from __future__ import annotations

import math

import pytest
import torch

from tedrec_fast.cuda import emulator as emulator_module
from tedrec_fast.cuda.abi import pack_args
from tedrec_fast.cuda.emulator import Emulator, emulator_unavailable, load_emulator
from tedrec_fast.ops.spectral_fusion.abi import KERNEL_SIGNATURES

pytestmark = pytest.mark.skipif(emulator_unavailable() is not None,
                                reason=f"the CUDA emulator cannot be built: {emulator_unavailable()}")

THREADS = 256


@pytest.fixture(scope="module")
def emu() -> Emulator:
    return load_emulator()


def launch(emu: Emulator, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int], smem: int,
           *args: int | float) -> None:
    emu.launch(kernel, grid, block, smem, *pack_args(kernel, args))


def integers(*shape: int) -> torch.Tensor:
    return torch.randint(-1000, 1000, shape).float()


def test_kernel_table_matches_abi(emu: Emulator) -> None:
    assert sorted(emu.kernel_names()) == sorted(KERNEL_SIGNATURES)
    for name, kinds in KERNEL_SIGNATURES.items():
        assert emu.signature(name) == kinds, name
    with pytest.raises(KeyError):
        emu.signature("tedrec_no_such_kernel")


@pytest.mark.parametrize("rows, threads", [(1001, 256), (7, 256), (100, 32)])
def test_backward_bias_sums_columns(emu: Emulator, rows: int, threads: int) -> None:
    coef = integers(rows, 4)
    db = torch.full((2,), float("nan"))
    launch(emu, "tedrec_fusion_backward_bias", (1, 1, 1), (threads, 1, 1), 2 * threads * 4,
           db.data_ptr(), coef.data_ptr(), rows)
    assert torch.equal(db, coef[:, 2:].sum(0))


def test_backward_reduce_sums_parts(emu: Emulator) -> None:
    parts, n, d = 3, 50, 9
    dh_part, dg_part = integers(parts, n, d), integers(parts, 2, d)
    dh, dg = torch.full((n, d), float("nan")), torch.full((2, d), float("nan"))
    launch(emu, "tedrec_fusion_backward_reduce", (math.ceil((n + 2) * d / THREADS), 1, 1), (THREADS, 1, 1), 0,
           dh.data_ptr(), dg.data_ptr(), dh_part.data_ptr(), dg_part.data_ptr(), parts, n, d)
    assert torch.equal(dh, dh_part.sum(0))
    assert torch.equal(dg, dg_part.sum(0))


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_filter_taps_is_irfft(emu: Emulator, n: int) -> None:
    d = 9
    cw = torch.randn(n // 2 + 1, d, 2)
    h = torch.full((n, d), float("nan"))
    launch(emu, "tedrec_filter_taps_f32", (math.ceil(n * d / THREADS), 1, 1), (THREADS, 1, 1), 0,
           h.data_ptr(), cw.data_ptr(), n, d)
    expected = torch.fft.irfft(torch.complex(cw[..., 0].double(), cw[..., 1].double()), n=n, dim=0)
    torch.testing.assert_close(h, expected.float(), rtol=1e-5, atol=1e-5)


def test_warp_shuffles_and_barriers(emu: Emulator) -> None:
    """The forward kernel reduces its gate logits with warp shuffles between block barriers."""
    B, n, d, dc = 2, 13, 20, 8  # three chunks of 8 channels, the last one partial
    item, text, h = torch.randn(B, n, d), torch.randn(B, n, d), torch.randn(n, d)
    gi_w, gi_b, gf_w, gf_b = torch.randn(d), torch.randn(1), torch.randn(d), torch.randn(1)
    out = torch.full((B, n, d), float("nan"))
    launch(emu, "tedrec_fusion_forward_f32", (B, 1, 1), (THREADS, 1, 1), (3 * n * dc + 2 * n) * 4,
           out.data_ptr(), item.data_ptr(), n * d, d, text.data_ptr(), n * d, d, h.data_ptr(),
           gi_w.data_ptr(), gi_b.data_ptr(), gf_w.data_ptr(), gf_b.data_ptr(), n, d, dc)

    def circular(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(a.double(), dim=-2) * torch.fft.rfft(b.double(), dim=-2), n=n, dim=-2)

    f, e2 = circular(text, item) / math.sqrt(n), circular(h, item)
    expected = (2 * torch.sigmoid(e2 @ gi_w.double() + gi_b.double())[..., None] * e2
                + 2 * torch.sigmoid(f @ gf_w.double() + gf_b.double())[..., None] * f)
    torch.testing.assert_close(out, expected.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel, block, smem, message", [
    ("tedrec_no_such_kernel", (256, 1, 1), 0, "unknown kernel 'tedrec_no_such_kernel'"),
    ("tedrec_fusion_backward_bias", (100, 1, 1), 800, "multiple of 32"),
    ("tedrec_fusion_backward_bias", (256, 1, 1), 232449, "232448 bytes"),
])
def test_launch_errors(emu: Emulator, kernel: str, block: tuple[int, int, int], smem: int, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        emu.launch(kernel, (1, 1, 1), block, smem, *pack_args("tedrec_fusion_backward_bias", [0, 0, 0]))


def test_writes_past_shared_memory_are_caught(emu: Emulator) -> None:
    db, coef = torch.zeros(2), integers(64, 4)
    smem = 2 * THREADS * 4 - 64  # the last 16 threads write their second partial sum past the end
    with pytest.raises(RuntimeError, match=f"block \\(0, 0, 0\\): wrote past the {smem} bytes of dynamic shared"):
        launch(emu, "tedrec_fusion_backward_bias", (1, 1, 1), (THREADS, 1, 1), smem, db.data_ptr(), coef.data_ptr(), 64)


def test_offsets_must_fit_the_signature(emu: Emulator) -> None:
    packed, offsets = pack_args("tedrec_fusion_backward_bias", [0, 0, 0])
    with pytest.raises(ValueError, match="takes 3 arguments"):
        emu.launch("tedrec_fusion_backward_bias", (1, 1, 1), (32, 1, 1), 256, packed, offsets[:2])


def test_library_is_reused_from_cache(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    before = emu.path.stat()

    def no_compile(*args: object) -> None:
        raise AssertionError("the emulator was compiled again")

    monkeypatch.setattr(emulator_module, "_compile", no_compile)
    load_emulator.cache_clear()
    try:
        again = load_emulator()
    finally:
        load_emulator.cache_clear()
    assert again.path == emu.path
    assert again.path.stat().st_mtime_ns == before.st_mtime_ns
