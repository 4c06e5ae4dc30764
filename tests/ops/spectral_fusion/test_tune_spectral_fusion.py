"""The spectral-fusion kernels' launch overrides and their tuning sweep (bench/tune_spectral_fusion.py).

Without a GPU the Triton kernels run under the interpreter and the CUDA C++ kernels on the CPU emulator
(conftest.py), at small odd shapes: the Triton ``config`` override, the CUDA ``dc`` override and the
``TEDREC_ROWS`` = 8 variant against the float64 reference; then the sweep's pure parts (variants, the best
of them) and the sweep itself end to end on CPU with a stand-in timer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest
import torch
import triton

import bench.tune_spectral_fusion as tune
from tedrec_fast.cuda import nvrtc
from tedrec_fast.cuda.emulator import load_emulator
from tedrec_fast.cuda.loaders import EmulatorLoader, Loader
from tedrec_fast.cuda.sources import assemble
from tedrec_fast.kernels.spectral_fusion import KernelConfig, kernel_config, validate_config
from tedrec_fast.ops.spectral_fusion import cuda as host
from tedrec_fast.ops.spectral_fusion import triton as triton_host
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tests.conftest import DEVICE
from tests.ops.spectral_fusion.cases import assert_close_scaled, reference_with_grads
from tests.tolerances import BACKWARD, FORWARD

GRAD_NAMES = ("d_item", "d_text", "d_complex_weight", "d_item_gate_weight", "d_item_gate_bias",
              "d_fusion_gate_weight", "d_fusion_gate_bias")
ROWS8 = {"TEDREC_ROWS": 8}


def _check(forward: Callable, backward: Callable, B: int, n: int, d: int, dtype: torch.dtype = torch.float32) -> None:
    """``forward`` and ``backward`` (the kernel launchers' signatures) against the float64 reference, with
    every output they write starting as NaN."""
    inputs = random_inputs(B, n, d, dtype, DEVICE, seed=B + n + d)
    grad = torch.randn(B, n, d, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
    expected, expected_grads = reference_with_grads(inputs, grad)
    out = torch.full((B, n, d), float("nan"), dtype=dtype, device=DEVICE)
    assert forward(*inputs, out=out) is out
    assert_close_scaled(out, expected, FORWARD[dtype], "V")
    d_item, d_text = (torch.full((B, n, d), float("nan"), dtype=dtype, device=DEVICE) for _ in range(2))
    grads = backward(grad, *inputs, d_item=d_item, d_text=d_text)
    assert grads[0] is d_item and grads[1] is d_text
    for name, got, want, x in zip(GRAD_NAMES, grads, expected_grads, inputs):
        assert got.shape == x.shape and got.dtype == x.dtype, name
        assert_close_scaled(got, want, BACKWARD[dtype], name)


# --------------------------------------------------------------------------------------------
# Triton: the config override
# --------------------------------------------------------------------------------------------
OVERRIDES = [
    # three chunks of 16 channels (two passes, a short last chunk), 2 warps, 4 warps backward
    (2, 7, 37, KernelConfig(BLOCK_N=16, BLOCK_K=16, BLOCK_D=16, num_warps=2, BLOCK_D_BWD=16, num_warps_bwd=4)),
    # two frequency blocks of 32 at BLOCK_N = 32, one pass of 64 channels forward, 32-channel chunks backward
    (1, 20, 40, KernelConfig(BLOCK_N=32, BLOCK_K=32, BLOCK_D=64, num_warps=8, BLOCK_D_BWD=32, num_warps_bwd=4)),
    # a padded length wider than the default (64 for n = 9)
    (2, 9, 20, KernelConfig(BLOCK_N=64, BLOCK_K=16, BLOCK_D=32, num_warps=4, BLOCK_D_BWD=16, num_warps_bwd=8)),
    # the stacked kernels: frequency blocks of 8 at BLOCK_N = 16 (odd n: 7 frequencies, one block), 32-channel
    # chunks, two passes
    (3, 13, 70, KernelConfig(BLOCK_N=16, BLOCK_K=8, BLOCK_D=32, num_warps=4, BLOCK_D_BWD=16, num_warps_bwd=2,
                             stacked=True)),
    # stacked, blocks of 8 at BLOCK_N = 128 (odd n: 49 frequencies, seven blocks, the last one frequency wide)
    (2, 97, 19, KernelConfig(BLOCK_N=128, BLOCK_K=8, BLOCK_D=16, num_warps=8, BLOCK_D_BWD=16, num_warps_bwd=8,
                             stacked=True)),
    # stacked, blocks of 16 at BLOCK_N = 32, one pass of 32 channels, 16-channel chunks backward
    (2, 21, 30, KernelConfig(BLOCK_N=32, BLOCK_K=16, BLOCK_D=32, num_warps=4, BLOCK_D_BWD=16, num_warps_bwd=4,
                             stacked=True)),
    # the split kernels at TedRec's padded length (the default there is stacked)
    (2, 50, 40, KernelConfig(BLOCK_N=64, BLOCK_K=16, BLOCK_D=16, num_warps=4, BLOCK_D_BWD=16, num_warps_bwd=8)),
]


@pytest.mark.parametrize(("B", "n", "d", "config"), OVERRIDES, ids=[f"n{n}-d{d}" for _, n, d, _ in OVERRIDES])
def test_triton_config_override_matches_reference(B: int, n: int, d: int, config: KernelConfig) -> None:
    assert config != kernel_config(n)
    _check(partial(triton_host.spectral_fusion_forward, config=config),
           partial(triton_host.spectral_fusion_backward, config=config), B, n, d)


def test_triton_default_config_is_the_same_launch() -> None:
    inputs = random_inputs(2, 5, 9, torch.float32, DEVICE)
    grad = torch.randn(2, 5, 9, device=DEVICE)
    explicit = kernel_config(5)
    assert torch.equal(triton_host.spectral_fusion_forward(*inputs),
                       triton_host.spectral_fusion_forward(*inputs, config=explicit))
    for a, b in zip(triton_host.spectral_fusion_backward(grad, *inputs),
                    triton_host.spectral_fusion_backward(grad, *inputs, config=explicit)):
        assert torch.equal(a, b)


def test_stacked_config_takes_frequency_blocks_of_8() -> None:
    config = dataclasses.replace(kernel_config(50), BLOCK_K=8)
    assert config.stacked
    validate_config(config, 50)
    with pytest.raises(ValueError, match="config.BLOCK_K must be a power of two >= 8"):
        validate_config(dataclasses.replace(config, BLOCK_K=4), 50)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("BLOCK_N", 16, "config.BLOCK_N must be >= n = 20"),
    ("BLOCK_N", 48, "config.BLOCK_N must be a power of two >= 16"),
    ("BLOCK_K", 8, "config.BLOCK_K must be a power of two >= 16"),  # the split kernels (n = 20)
    ("stacked", 1, "config.stacked must be a bool"),
    ("BLOCK_D", 24, "config.BLOCK_D must be a power of two >= 16"),
    ("BLOCK_D_BWD", 0, "config.BLOCK_D_BWD must be a power of two >= 16"),
    ("num_warps", 3, "config.num_warps must be a power of two >= 1"),
    ("num_warps_bwd", 0, "config.num_warps_bwd must be a power of two >= 1"),
])
def test_bad_triton_config_raises_naming_the_argument(field: str, value: int, message: str) -> None:
    inputs = random_inputs(1, 20, 3, torch.float32, DEVICE)
    config = dataclasses.replace(kernel_config(20), **{field: value})
    with pytest.raises(ValueError, match=message):
        triton_host.spectral_fusion_forward(*inputs, config=config)
    with pytest.raises(ValueError, match=message):
        triton_host.spectral_fusion_backward(inputs[0], *inputs, config=config)
    with pytest.raises(TypeError, match="config must be a KernelConfig"):
        validate_config((32, 16, 16, 4, 16, 4), 20)


# --------------------------------------------------------------------------------------------
# CUDA C++: the chunk-width override and the TEDREC_ROWS = 8 variant (emulator)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def emulator() -> Callable[..., Loader]:
    if DEVICE != "cpu":
        pytest.skip("the emulator runs CPU tensors; "
                    "tests/ops/spectral_fusion/test_spectral_fusion_gpu.py covers the GPU")
    loader = EmulatorLoader()
    if (reason := loader.unavailable()) is not None:
        pytest.skip(reason)
    return EmulatorLoader


#: (rows, B, n, d, dc): odd n and d; n = 7 < 8 rows (one tile, wrapping), n = 129 (chunks of 16 by
#: default), chunk widths other than the default (dc None); rows 4 at the default: test_spectral_fusion_cuda.py
CUDA_CASES = [(8, 2, 7, 5, None), (8, 3, 50, 17, None), (8, 2, 129, 3, None), (8, 1, 13, 33, 8), (4, 1, 13, 33, 8),
              (8, 1, 30, 20, 16), (4, 1, 30, 20, 16)]


@pytest.mark.parametrize(("rows", "B", "n", "d", "dc"), CUDA_CASES,
                         ids=[f"rows{r}-n{n}-d{d}-dc{dc}" for r, _, n, d, dc in CUDA_CASES])
def test_cuda_variant_matches_reference(emulator: Callable[..., Loader], rows: int, B: int, n: int, d: int,
                                        dc: int | None) -> None:
    loader = emulator(ROWS8 if rows == 8 else None)
    _check(partial(host.spectral_fusion_forward_cuda, loader, dc=dc),
           partial(host.spectral_fusion_backward_cuda, loader, dc=dc), B, n, d)


def test_cuda_variant_is_its_own_build(emulator: Callable[..., Loader]) -> None:
    assert emulator(ROWS8).defines == (("TEDREC_ROWS", 8),) and emulator().defines == ()
    assert load_emulator((("TEDREC_ROWS", 8),)).path != load_emulator().path


def test_cuda_variant_compiles_with_nvrtc() -> None:
    if (reason := nvrtc.compiler_unavailable()) is not None:
        pytest.skip(f"NVRTC cannot be loaded here: {reason}")
    source = nvrtc.define_lines((("TEDREC_ROWS", 8),)) + assemble(nvrtc.ENTRY)
    assert source.startswith("#define TEDREC_ROWS 8\n")
    assert b"tedrec_fusion_backward_main_f32" in nvrtc.compile_cubin(source, "sm_90")


class _NoLaunch(Loader):
    def launch(self, *args: object) -> None:
        raise AssertionError("launched despite a bad dc")


@pytest.mark.parametrize(("n", "dc", "message"), [
    (50, 2, r"dc must be one of \(4, 8, 16, 32\), got 2"),
    (50, 12, "dc must be one of"),
    (50, 64, "dc must be one of"),
    (512, 32, "dc = 32 needs 403456 bytes of shared memory at n = 512"),
])
def test_bad_dc_raises_naming_the_argument(n: int, dc: int, message: str) -> None:
    inputs = random_inputs(1, n, 2, torch.float32, DEVICE)
    with pytest.raises(ValueError, match=message):
        host.spectral_fusion_forward_cuda(_NoLaunch(), *inputs, dc=dc)
    with pytest.raises(ValueError, match=message):
        host.spectral_fusion_backward_cuda(_NoLaunch(), inputs[0], *inputs, dc=dc)


# --------------------------------------------------------------------------------------------
# The sweep: variants and the best of them
# --------------------------------------------------------------------------------------------
def _groups(planned: list[tune.Variant]) -> dict[tuple, list[tune.Variant]]:
    groups: dict[tuple, list[tune.Variant]] = {}
    for v in planned:
        groups.setdefault((v.kind, v.direction, v.dtype, v.precision), []).append(v)
    return groups


def test_shapes_in_priority_order() -> None:
    assert [(s.B, s.n, s.d) for s in tune.SHAPES] == [(2048, 50, 300), (2048, 100, 300), (2048, 200, 300),
                                                      (2048, 50, 64), (2048, 50, 512)]


@pytest.mark.parametrize("shape", tune.SHAPES + (tune.Shape(4, 9, 20),), ids=str)
def test_variants_are_valid_default_first_and_complete(shape: tune.Shape) -> None:
    planned = tune.variants(shape)
    groups = _groups(planned)
    modes = [(dtype, precision) for dtype, precision in tune.MODES]
    assert modes == [("float32", "highest"), ("bfloat16", None), ("float32", "high")]
    assert list(groups) == [(kind, direction, dtype, precision if kind == "triton" else None)
                            for dtype, precision in modes for kind in ("triton", "cuda")
                            for direction in ("fwd", "bwd") if kind == "triton" or precision != "high"]
    default = kernel_config(shape.n)
    block_ks = (2 if default.BLOCK_N >= 32 else 1) + default.stacked  # 16 (32) (8)
    sizes = {("triton", "fwd"): 9 * block_ks, ("triton", "bwd"): 4, ("cuda", "fwd"): 6,
             ("cuda", "bwd"): 6}
    for (kind, direction, _, _), group in groups.items():
        assert len(group) == sizes[kind, direction] and len({v.knobs for v in group}) == len(group)
        assert group[0].default and not any(v.default for v in group[1:])
        knobs = dict(group[0].knobs)
        if kind == "cuda":
            assert knobs == {"rows": 4, "dc": host.chunk_width(shape.n)}
        else:
            assert tune.triton_config(group[0], shape.n) == kernel_config(shape.n)
        changes = [sum(dict(v.knobs)[k] != knobs[k] for k in knobs) for v in group[1:]]
        assert changes == sorted(changes) and changes[0] == 1  # one-knob changes first
        for v in group:
            if kind == "triton":
                validate_config(tune.triton_config(v, shape.n), shape.n)
            else:
                host.check_chunk_width(shape.n, dict(v.knobs)["dc"])
    assert len(tune.variants(shape, max_per_group=2)) == 2 * len(groups)


def _record(variant: str, ms: float | None, ok: bool = True, default: bool = False, direction: str = "fwd") -> dict:
    return {"kind": "triton", "direction": direction, "dtype": "float32", "precision": "highest", "B": 2048,
            "n": 50, "d": 300, "variant": variant, "knobs": {"v": variant}, "default": default, "ok": ok,
            "ms": ms, "speedup_vs_reference": 1.0}


def test_best_is_the_fastest_correct_variant() -> None:
    records = [
        _record("default", 2.0, default=True), _record("faster", 1.5), _record("wrong", 1.0, ok=False),
        _record("failed", None),
        # backward: the default failed; a tie keeps the earlier record
        _record("default", None, ok=False, default=True, direction="bwd"), _record("a", 3.0, direction="bwd"),
        _record("b", 3.0, direction="bwd"),
    ]
    records.append({**_record("only-wrong", 1.0, ok=False), "dtype": "bfloat16"})
    table = {row["direction"] + row["dtype"]: row for row in tune.best(records)}
    assert set(table) == {"fwdfloat32", "bwdfloat32"}  # bf16 has no correct variant
    fwd, bwd = table["fwdfloat32"], table["bwdfloat32"]
    assert (fwd["variant"], fwd["ms"], fwd["default_ms"], fwd["default_ok"], fwd["lead_over_default"]) == (
        "faster", 1.5, 2.0, True, 1.333)
    assert (bwd["variant"], bwd["default_ms"], bwd["lead_over_default"]) == ("a", None, None)
    tie = tune.best([_record("default", 1.0, default=True), _record("same", 1.0)])
    assert tie[0]["variant"] == "default" and tie[0]["lead_over_default"] == 1.0


def test_rel_err_and_tolerance() -> None:
    want = (torch.tensor([2.0, -4.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
    assert tune.rel_err((torch.tensor([2.0, -4.2]), torch.tensor([1.0])), want) == pytest.approx(0.05)
    assert math.isnan(tune.rel_err((torch.tensor([1.0]), torch.tensor([2.0, float("nan")])), want[::-1]))
    fwd32 = tune.Variant("triton", "fwd", "float32", "highest", ())
    assert tune.tolerance(fwd32) == FORWARD[torch.float32][0]
    assert tune.tolerance(dataclasses.replace(fwd32, direction="bwd", dtype="bfloat16")) == BACKWARD[torch.bfloat16][0]
    assert tune.tolerance(dataclasses.replace(fwd32, precision="high")) == 5e-3


def test_swept_eight_warp_kernels_compile_for_sm90() -> None:
    """The 8-warp Triton variants at TedRec's shape (incl. BLOCK_D 64 and BLOCK_K 32), compiled for sm_90
    without a GPU: a GPU-only compile error in them fails here. (All 31 take minutes.) Their spills are
    reported, not asserted: they depend on the Triton version's register allocation (the BLOCK_D 64 variant
    spills nothing under Triton 3.6.0, 8 bytes under 3.8.0); tests/kernels/test_aot_compile.py asserts on the
    configurations the dispatcher launches."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "bench.tune_spectral_fusion", "--aot", "--modes", "float32-highest",
                             "--only", "w8"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 9 + 2 and all(r["registers"] > 0 for r in records)
    assert any("64x16x64 w8" in r["kernel"] for r in records)
    for r in records:
        print(f"Triton {triton.__version__} sm_90 {r['kernel']}: {r['registers']} registers, "
              f"{r['spill_store_bytes']} B spill stores")


def test_aot_compiles_each_swept_kernel_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tedrec_fast.kernels import aot

    def listed(specs, dtype, arch=90, only=""):
        yield from ({"kernel": s["name"], "precision": s["constexprs"]["PRECISION"]} for s in specs)

    monkeypatch.setattr(aot, "compile_each", listed)
    names = [r["kernel"] for r in tune.compile_variants([("float32", "highest")])]
    assert len(names) == len(set(names)) == 27 + 4  # d = 300 > every BLOCK_D: the forward runs two passes
    assert sum("forward, two passes" in name for name in names) == 27
    assert "spectral_fusion backward 64x8x16 w4" in names and "spectral_fusion backward 64x32x32 w8" not in names
    assert {r["precision"] for r in tune.compile_variants([("float32", "high")])} == {"tf32"}


# --------------------------------------------------------------------------------------------
# The sweep end to end on CPU
# --------------------------------------------------------------------------------------------
def _fake_timer(step: Callable[[], object]) -> float:
    step()
    return 1.0


@pytest.fixture
def cpu_only(emulator: Callable[..., Loader], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune, "run_header", lambda device: {"device": "CPU (test)", "date": "2026-01-01"})


def test_sweep_writes_records_and_best(cpu_only: None, tmp_path, capsys) -> None:
    shape = tune.Shape(1, 7, 20)
    path = tune.run(tmp_path, 600.0, shapes=[shape], device="cpu", timer=_fake_timer, max_per_group=2)
    assert path == tmp_path / "2026-01-01_cpu-test_tune_spectral_fusion.json"
    document = json.loads(path.read_text())
    records = document["records"]
    assert len(records) == len(tune.variants(shape, max_per_group=2)) == 20
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == records
    for r in records:
        assert r["error"] is None and r["ok"], r
        assert r["rel_err"] < r["tol"] and r["ms"] == 1.0
        assert r["speedup_vs_default"] == r["speedup_vs_reference"] == 1.0
    assert {r["variant"] for r in records if r["kind"] == "cuda" and not r["default"]} == {"rows8-dc32"}
    assert len(document["best"]) == 10 and document["progress"][0]["measured"] == 20


def test_sweep_stops_at_the_budget(cpu_only: None, tmp_path) -> None:
    path = tune.run(tmp_path, 0.0, shapes=[tune.Shape(2, 7, 20), tune.Shape(1, 3, 4)], device="cpu",
                    timer=_fake_timer)
    document = json.loads(path.read_text())
    assert document["records"] == [] and [row["measured"] for row in document["progress"]] == [0, 0]


def test_failing_variant_is_recorded_not_raised(cpu_only: None) -> None:
    shape = tune.Shape(1, 5, 3)
    problem = tune.make_problem(shape, "float32", DEVICE)
    want = tune.reference_outputs(problem)
    for variant in (tune.Variant("triton", "fwd", "float32", "highest", (("BLOCK_D", 24),)),
                    tune.Variant("cuda", "bwd", "float32", None, (("rows", 4), ("dc", 2)))):
        record = tune.measure_variant(variant, shape, problem, want[variant.direction], _fake_timer)
        assert record["error"].startswith("ValueError") and not record["ok"] and record["ms"] is None


def test_precompile_runs_in_spawned_processes(cpu_only: None, capsys) -> None:
    shape = tune.Shape(2, 6, 5)
    good = tune.variants(shape)[0]
    bad = tune.Variant("triton", "fwd", "float32", "highest", (("num_warps", 3),))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        tune.precompile(pool, shape, [good, bad], time.monotonic() + 300, device="cpu")
    err = capsys.readouterr().err
    assert "precompile num_warps3: ValueError: spectral_fusion: config.num_warps" in err
    assert good.id not in err


def test_main_exits_2_without_cuda(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tune.main(["--out-dir", str(tmp_path), "--budget-s", "1"]) == 2
    assert "CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
