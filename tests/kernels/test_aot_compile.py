"""Ahead-of-time compile of the Triton kernels for every GPU target of the table, without a GPU.

``python -m tedrec_fast.kernels.aot --arch A`` compiles exactly the configurations the dispatcher can pick on
``sm_A`` (:data:`tedrec_fast.kernels.targets.TARGETS`) and reports each kernel's shared memory against the
target's limit per block, its registers and spills (``ptxas -v``). It runs in a subprocess with
``TRITON_INTERPRET`` unset (the interpreter replaces kernels by Python functions); each group is compiled once
per session (module-scoped fixtures).

* Default run: TedRec's shape (n = 50, padded to 64) forward and backward on every target: the configurations
  compiled are the dispatcher's, each fits its target, and none spills (fp32, 3xTF32 products) with the Triton
  release they were tuned with (``TUNED_TRITON``; with another the spills are reported as an expected failure).
* ``-m slow``: every configuration of every op, dtype and precision on every target: each fits (tens of
  minutes on two cores; registers and spills printed with ``pytest -s`` and recorded in bench/NOTES.md).

Spill counts are Triton's and ptxas's register allocation, which changes between versions: messages name the
Triton version; only the dispatcher's configurations are asserted on, never a tuning sweep's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest
import torch
import triton

from tedrec_fast.kernels import full_catalog_ce, spectral_filter, spectral_fusion
from tedrec_fast.kernels.aot import MODULES, tensor_core_instructions
from tedrec_fast.kernels.targets import TARGETS, TUNED_TRITON
from tedrec_fast.ops.limits import MAX_N

ARCHS = list(TARGETS)
ARCH_IDS = [t.name for t in TARGETS.values()]
TEDREC_BLOCK_N = 64  # n = 50


def run_aot(*args: str) -> list[dict]:
    """The JSON records of ``python -m tedrec_fast.kernels.aot *args``; fails the test on a compile error."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "tedrec_fast.kernels.aot", *args], capture_output=True,
                            text=True, env=env, timeout=3600)
    assert result.returncode == 0, f"compile failed:\n{result.stderr[-4000:]}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def by_arch(records: list[dict]) -> dict[int, list[dict]]:
    grouped = defaultdict(list)
    for r in records:
        grouped[r["arch"]].append(r)
    return grouped


def describe(r: dict) -> str:
    return (f"sm_{r['arch']} {r['kernel']} {r['dtype']} {r['precision']}: {r['registers']} registers, "
            f"{r['spill_store_bytes']} B spill stores, {r['shared_bytes']} / {r['shared_limit']} B shared, "
            f"{r['wgmma']} wgmma + {r['mma_sync']} mma.sync, {r['compile_s']} s")


def assert_fit(records: list[dict], arch: int) -> None:
    limit = TARGETS[arch].shared_per_block
    for r in records:
        print(describe(r))
        assert r["shared_limit"] == limit
        assert r["fits"] and r["shared_bytes"] <= limit, f"{describe(r)} (Triton {triton.__version__})"
        assert 0 < r["registers"] <= TARGETS[arch].registers_per_thread


@pytest.fixture(scope="module")
def tedrec_shape() -> dict[int, list[dict]]:
    """Spectral fusion's kernels at TedRec's padded length, fp32, for every target: one compile each."""
    return by_arch(run_aot("--module", "spectral_fusion", "--block-n", str(TEDREC_BLOCK_N),
                           *(f"--arch={arch}" for arch in ARCHS)))


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_tedrec_shape_compiles_the_dispatchers_configuration_within_the_target(tedrec_shape, arch: int) -> None:
    records = tedrec_shape[arch]
    config = spectral_fusion.kernel_config(50, arch)
    expected = {spec["name"] for spec in spectral_fusion.compile_specs(torch.float32, configs=[config])}
    assert {r["kernel"] for r in records} == expected  # forward (one and two passes) and backward
    assert_fit(records, arch)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_tedrec_shape_has_no_spills(tedrec_shape, arch: int) -> None:
    """fp32 with the default 3xTF32 products, forward (one and two passes) and backward (bench/NOTES.md); held
    with the Triton release the configurations were tuned with, reported (xfail) with any other."""
    spills = {r["kernel"]: r["spill_store_bytes"] for r in tedrec_shape[arch]
              if r["spill_store_bytes"] or r["spill_load_bytes"]}
    message = f"sm_{arch}, Triton {triton.__version__}: spill stores (bytes) per kernel {spills}"
    if spills and tuple(int(p) for p in triton.__version__.split(".")[:2]) != TUNED_TRITON:
        pytest.xfail(f"configurations tuned with Triton {'.'.join(map(str, TUNED_TRITON))}: {message}")
    assert not spills, message


def test_aot_finds_every_kernel_module() -> None:
    """A kernel file with a ``CONFIGS`` table and ``compile_specs`` is compiled by ``aot`` without registering."""
    assert {"spectral_fusion", "spectral_filter", "full_catalog_ce"} <= set(MODULES)
    assert not {"aot", "common", "targets"} & set(MODULES)
    for module in MODULES.values():
        assert set(module.CONFIGS.table) == set(TARGETS)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_aot_lists_exactly_the_dispatchers_configurations(arch: int) -> None:
    """What ``--arch`` compiles, per op and dtype, is what the launchers can pick on that target (no compile)."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        configs = spectral_fusion.all_kernel_configs(arch, dtype)
        picked = {spectral_fusion.kernel_config(n, arch, dtype) for n in range(1, MAX_N + 1)
                  if spectral_fusion.config_why_not(n, arch, dtype) is None}
        assert set(configs) == picked
        listed = {s["name"] for s in spectral_fusion.compile_specs(dtype, arch=arch)}
        assert listed == {s["name"] for s in spectral_fusion.compile_specs(dtype, configs=configs)}
        assert {s["block_n"] for s in spectral_filter.compile_specs(dtype, arch=arch)} == {c.BLOCK_N for c in configs}
        catalog = {s["name"] for s in full_catalog_ce.compile_specs(dtype, arch=arch)}
        assert catalog == {s["name"] for s in full_catalog_ce.compile_specs(
            dtype, config=full_catalog_ce.kernel_config(dtype, arch))}


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_filter_launches_the_configurations_aot_compiles(arch: int) -> None:
    """The filter's launcher picks from its own table (the fusion's but sm_80's 16-bit TedRec length), which is
    what ``aot`` compiles for it."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        group = spectral_fusion.dtype_group(dtype)
        picked = {spectral_filter.filter_config(n, arch, dtype) for n in range(1, MAX_N + 1)
                  if spectral_filter.CONFIGS.why_not(arch, (group, spectral_fusion.padded_length(n))) is None}
        assert picked == {c for (g, _), c in spectral_filter.CONFIGS.table[arch].items() if g == group}
        assert len(spectral_filter.compile_specs(dtype, arch=arch)) == 2 * len(picked)
    differs = spectral_filter.filter_config(50, arch, torch.bfloat16) != spectral_fusion.kernel_config(50, arch,
                                                                                                    torch.bfloat16)
    assert differs == (arch == 80)
    assert spectral_filter.filter_config(50, None, torch.bfloat16) == spectral_fusion.kernel_config(50, None)


#: the exhaustive groups: every op for each dtype at its default precision, and fp32 with TF32 products
_ALL = [("float32", None), ("float32", "tf32"), ("bfloat16", None), ("float16", None), ("float64", None)]


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "precision"), _ALL, ids=[f"{d}-{p or 'default'}" for d, p in _ALL])
@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_every_configuration_fits_every_target(arch: int, dtype: str, precision: str | None) -> None:
    args = ["--arch", str(arch), "--dtype", dtype] + (["--precision", precision] if precision else [])
    records = run_aot(*args)
    torch_dtype = getattr(torch, dtype)
    expected = {s["name"] for module in MODULES.values()
                for s in module.compile_specs(torch_dtype, precision, arch=arch)}
    assert {r["kernel"] for r in records} == expected
    assert_fit(records, arch)


def test_tensor_core_instruction_count() -> None:
    ptx = """
    wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 {%f1}, %rd1, %rd2, 1, 1, 1;
    wgmma.fence.sync.aligned;
    mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f2}, {%r1}, {%r2}, {%f3};
    wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 {%f4}, %rd3, %rd4, 1, 1, 1;
    """
    assert tensor_core_instructions(ptx) == {"wgmma": 2, "mma_sync": 1}
