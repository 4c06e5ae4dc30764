"""The full-catalog cross-entropy's launch-configuration override and its tuning sweep (bench/tune_full_catalog_ce.py).

Without a GPU the kernels run under the interpreter (conftest.py) at small odd shapes, the sweep runs end
to end on CPU with a stand-in timer, and the swept kernels are compiled for sm_90 (no GPU needed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

import bench.tune_full_catalog_ce as tune
from tedrec_fast.kernels.full_catalog_ce import KernelConfig, kernel_config, validate_config
from tedrec_fast.ops.full_catalog_ce import triton as host
from tests.ops.full_catalog_ce.test_full_catalog_ce import (
    _assert_close,
    _reference,
    _scales,
    make_inputs,
    poison_torch_empty,
)
from tests.tolerances import FULL_CATALOG_CE_BACKWARD, FULL_CATALOG_CE_FORWARD

BF16, FP32 = torch.bfloat16, torch.float32


# --------------------------------------------------------------------------------------------
# The config override
# --------------------------------------------------------------------------------------------
def _poisoned_run(config: KernelConfig, dtype: torch.dtype, device: str, monkeypatch: pytest.MonkeyPatch,
                  B: int = 37, V: int = 70, d: int = 40) -> None:
    """Forward and backward with ``config`` against the float64 reference; outputs and scratch start as NaN."""
    query, items, targets = make_inputs(B, V, d, dtype, device, seed=V + d)
    (qs, qpi), (cs, cpi) = _scales(query, items)
    grad = torch.rand(B, device=device)
    want_loss, want_dq, want_dc = _reference(query, items, targets, grad)
    poison_torch_empty(monkeypatch)
    loss, lse = (torch.full((B,), float("nan"), device=device) for _ in range(2))
    host.full_catalog_ce_forward(query, items, targets, qs, cs, -100, loss=loss, lse=lse, config=config)
    d_q = torch.full((B, d), float("nan"), dtype=dtype, device=device)
    d_c = torch.full((V, d), float("nan"), dtype=dtype, device=device)
    host.full_catalog_ce_backward(grad, query, items, targets, lse, qs, cs, qpi, cpi, -100, d_query=d_q,
                                     d_item=d_c, config=config)
    monkeypatch.undo()
    _assert_close(loss, want_loss, FULL_CATALOG_CE_FORWARD[dtype], "loss")
    _assert_close(d_q, want_dq, FULL_CATALOG_CE_BACKWARD[dtype], "d_query")
    _assert_close(d_c[1:], want_dc[1:], FULL_CATALOG_CE_BACKWARD[dtype], "d_item_weight")  # row 0: padding
    assert d_c[0].isfinite().all()


#: B = 37, |V| = 70, d = 40: every tiling leaves a short last tile in each dimension
OVERRIDES = [
    KernelConfig(16, 16, 16, 1, 4),  # 5 item tiles in 3 chunks: groups of one tile, two per chunk
    KernelConfig(32, 16, 16, 3, 2, fwd_programs_per_sm=2, bwd_programs_per_sm=2),  # one short group per chunk
    KernelConfig(16, 32, 32, 2, 1),
    KernelConfig(128, 128, 32, 8, 16),  # one tile in every dimension but d
]


@pytest.mark.parametrize("dtype", [FP32, BF16], ids=str)
@pytest.mark.parametrize("config", OVERRIDES, ids=tune.variant_id)
def test_config_override_matches_reference(config: KernelConfig, dtype: torch.dtype, device: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _poisoned_run(config, dtype, device, monkeypatch)


def test_dot_16bit_is_refused_by_the_interpreter(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter computes 16-bit ``tl.dot`` wrongly: it refuses the switch; a GPU checks it."""
    config = dataclasses.replace(kernel_config(BF16), DOT_16BIT=True)
    if device == "cuda":
        _poisoned_run(config, BF16, device, monkeypatch)
        return
    query, items, targets = make_inputs(5, 9, 8, BF16, device)
    (qs, qpi), (cs, cpi) = _scales(query, items)
    with pytest.raises(ValueError, match="config.DOT_16BIT.*interpreter"):
        host.full_catalog_ce_forward(query, items, targets, qs, cs, -100, config=config)
    with pytest.raises(ValueError, match="config.DOT_16BIT.*interpreter"):
        host.full_catalog_ce_backward(torch.ones(5), query, items, targets, torch.zeros(5), qs, cs, qpi, cpi, -100,
                                         config=config)


BAD_FIELDS = [("BLOCK_B", 8), ("BLOCK_V", 48), ("BLOCK_K", 0), ("BLOCK_K", 32.0), ("GROUP_V", 0), ("num_warps", 3),
              ("num_warps", 32), ("fwd_programs_per_sm", 0), ("bwd_programs_per_sm", -1), ("DOT_16BIT", 1)]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_bad_config_raises_naming_the_argument(field: str, value: object, device: str) -> None:
    config = dataclasses.replace(kernel_config(FP32), **{field: value})
    query, items, targets = make_inputs(5, 9, 8, FP32, device)
    (qs, qpi), (cs, cpi) = _scales(query, items)
    with pytest.raises(ValueError, match=rf"config\.{field} must be"):
        host.full_catalog_ce_forward(query, items, targets, qs, cs, -100, config=config)
    with pytest.raises(ValueError, match=rf"config\.{field} must be"):
        host.full_catalog_ce_backward(torch.ones(5), query, items, targets, torch.zeros(5), qs, cs, qpi, cpi, -100,
                                         config=config)


def test_config_must_be_a_kernel_config_and_dot_16bit_bf16() -> None:
    with pytest.raises(TypeError, match="config must be a KernelConfig"):
        validate_config(dataclasses.asdict(kernel_config(FP32)), FP32)
    for dtype in (FP32, torch.float16, torch.float64):
        with pytest.raises(ValueError, match=r"config\.DOT_16BIT must be False"):
            validate_config(dataclasses.replace(kernel_config(dtype), DOT_16BIT=True), dtype)
    validate_config(dataclasses.replace(kernel_config(BF16), DOT_16BIT=True), BF16)


# --------------------------------------------------------------------------------------------
# Variants and the best of them
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "count"), [(BF16, 61), (FP32, 42)], ids=str)
def test_variants_are_valid_default_first_and_pruned(dtype: torch.dtype, count: int) -> None:
    configs = tune.variants(dtype)
    default = kernel_config(dtype)
    assert configs[0] == default and len(configs) == len(set(configs)) == count  # the module docstring's counts
    for config in configs:
        validate_config(config, dtype)
    swept = tune.factors(dtype)
    changed = [[f for f in swept if any(getattr(c, x) != getattr(default, x) for x in f.fields)] for c in configs]
    assert all(len(fs) <= 2 for fs in changed)
    assert all(fs[0].kernels & fs[1].kernels for fs in changed if len(fs) == 2)  # pairs share a kernel
    assert sum(len(fs) == 1 for fs in changed) == sum(len(f.values) - 1 for f in swept)  # every single change
    assert any(c.DOT_16BIT for c in configs) == (dtype == BF16)
    assert any(c.BLOCK_B * c.BLOCK_V == 128 * 128 for c in configs) == (dtype == BF16)


def _record(variant: str, ms: float | None, correct: bool = True, default: bool = False, direction: str = "fwd",
            V: int = 1000) -> dict:
    return {"V": V, "dtype": "bfloat16", "direction": direction, "variant": variant, "config": {}, "ms": ms,
            "vs_three_gemms": ms, "correct": correct, "default": default}


def test_best_takes_the_fastest_correct_variant() -> None:
    records = [
        _record("default", 4.0, default=True), _record("fast-but-wrong", 1.0, correct=False),
        _record("failed", None), _record("winner", 2.0), _record("slower", 3.0),
        _record("default", 6.0, default=True, direction="fwd+bwd"), _record("tie", 6.0, direction="fwd+bwd"),
        _record("wrong-default", 1.0, correct=False, default=True, V=60), _record("only", 5.0, V=60),
        _record("nothing-correct", 1.0, correct=False, V=7),
    ]
    table = {(r["V"], r["direction"]): r for r in tune.best(records)}
    assert set(table) == {(1000, "fwd"), (1000, "fwd+bwd"), (60, "fwd")}
    assert table[1000, "fwd"]["variant"] == "winner" and table[1000, "fwd"]["lead_over_default"] == 2.0
    assert table[1000, "fwd+bwd"]["variant"] == "default" and table[1000, "fwd+bwd"]["lead_over_default"] == 1.0
    assert table[60, "fwd"]["variant"] == "only" and table[60, "fwd"]["lead_over_default"] is None


def test_error_ratio_is_the_tolerance_fraction() -> None:
    expected = torch.tensor([10.0, -2.0, 0.0])
    assert tune.error_ratio(expected, expected, (1e-2, 1e-2)) == 0.0
    # atol scales with max|expected| = 10: the last element's tolerance is 1e-2 * 10 = 0.1
    assert tune.error_ratio(torch.tensor([10.0, -2.0, 0.05]), expected, (1e-2, 1e-2)) == pytest.approx(0.5)
    assert tune.error_ratio(torch.tensor([10.0, float("nan"), 0.0]), expected, (1e-2, 1e-2)) != 0.0  # NaN


# --------------------------------------------------------------------------------------------
# The sweep on CPU: a stand-in timer, the interpreter, tiny shapes
# --------------------------------------------------------------------------------------------
def _timer(step) -> float:
    step()
    return 2.0


HEADER = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-01-01", "commit": "abc"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU path of the harness")
def test_sweep_writes_records_and_best(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(tune, "run_header", lambda device: dict(HEADER))
    path = tune.run(tmp_path, 60.0, sizes=(50,), dtype_names=("bfloat16", "float32"), device="cpu", timer=_timer,
                    B=5, d=7, max_variants=2)
    assert path.name == "2026-01-01_nvidia-h100-80gb-hbm3_tune_catalog.json"
    document = json.loads(path.read_text())
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert document["records"] == printed and len(printed) == 2 * 2 * 2  # dtypes x variants x directions
    assert [(p["dtype"], p["measured"]) for p in document["progress"]] == [("bfloat16", 2), ("float32", 2)]
    for r in printed:
        assert r["correct"] and r["error"] is None and r["ms"] == r["gemm3_ms"] == 2.0 and r["vs_three_gemms"] == 1.0
        assert r["default"] == (r["variant"] == tune.variant_id(kernel_config(getattr(torch, r["dtype"]))))
        assert set(r["err"]) == ({"loss"} if r["direction"] == "fwd" else {"loss", "d_query", "d_item"})
    assert {(b["dtype"], b["direction"]) for b in document["best"]} == {
        (dtype, direction) for dtype in ("bfloat16", "float32") for direction in ("fwd", "fwd+bwd")}
    # a spent budget starts nothing, and still writes its document (beside the first one, which it keeps)
    second = tune.run(tmp_path, 0.0, sizes=(50,), dtype_names=("float32",), device="cpu", timer=_timer, B=5, d=7)
    assert second.name == "2026-01-01_nvidia-h100-80gb-hbm3_tune_catalog_2.json"
    document = json.loads(second.read_text())
    assert document["records"] == [] and document["progress"][0]["measured"] == 0
    assert json.loads(path.read_text())["records"] == printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU path of the harness")
def test_failing_variant_is_recorded_not_raised() -> None:
    x = tune.make_inputs(50, BF16, "cpu", B=5, d=7)
    config = dataclasses.replace(kernel_config(BF16), DOT_16BIT=True)  # refused by the interpreter
    records = tune.measure_variant(x, tune.reference(x), config, _timer, {"V": 50}, 2.0)
    assert [r["direction"] for r in records] == ["fwd", "fwd+bwd"]
    for r in records:
        assert r["variant"].endswith("-bf16dot") and not r["correct"] and r["ms"] is None
        assert r["error"].startswith("ValueError") and "interpreter" in r["error"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU path of the harness")
def test_precompile_runs_in_spawned_processes(capsys) -> None:
    tasks = [("float32", kernel_config(FP32)), ("bfloat16", dataclasses.replace(kernel_config(BF16), DOT_16BIT=True))]
    tune.precompile(tasks, jobs=1, device="cpu", B=5, d=7)
    err = capsys.readouterr().err
    assert "precompile bfloat16" in err and "interpreter" in err and "precompile float32" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the exit status without a CUDA device")
def test_main_exits_2_without_cuda(tmp_path, capsys) -> None:
    assert tune.main(["--out-dir", str(tmp_path)]) == 2
    assert "CUDA" in capsys.readouterr().err and not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Every swept bf16 kernel compiles for an H100 (sm_90)
# --------------------------------------------------------------------------------------------
#: backward kernels at the default GROUP_V only (all of them take > 60 s): GROUP_V changes a loop's step, not
#: the code (at 2, 4 and 8: the same registers, spills within 8 B, for every swept tile; bench/NOTES.md)
AOT_SHARDS = ["forward", f" g{kernel_config(BF16).GROUP_V} ", "queries"]


@pytest.mark.parametrize("only", AOT_SHARDS)
def test_swept_bf16_kernels_compile_for_sm90(only: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "bench.tune_full_catalog_ce", "--aot", "--dtypes", "bfloat16",
                             "--only", only], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f"compile failed:\n{result.stderr[-4000:]}"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    shapes = {f"{c.BLOCK_B}x{c.BLOCK_V}x{c.BLOCK_K}" for c in tune.variants(BF16)}
    assert records and all(only in r["kernel"] and r["registers"] > 0 for r in records)
    if only == "forward":  # every swept tile, with and without bf16 dots
        assert {r["kernel"].split()[2] for r in records if "combine" not in r["kernel"]} == shapes
        assert any("bf16-dot" in r["kernel"] for r in records)
    for r in records:
        print(f"{r['kernel']}: {r['registers']} registers, {r['spill_store_bytes']} B spill stores, "
              f"{r['shared_bytes']} B shared, {r['wgmma']} wgmma + {r['mma_sync']} mma.sync")
