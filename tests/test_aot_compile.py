"""Ahead-of-time compile of every Triton kernel configuration for an H100 (sm_90), without a GPU.

Each group compiles in a subprocess with ``TRITON_INTERPRET`` unset (the interpreter replaces kernels
by Python functions). A compile error fails the test; registers and spills from ``ptxas -v`` are
printed (``pytest -s``) and recorded in bench/NOTES.md when configurations change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tedrec_fast.kernels.spectral_fusion import all_kernel_configs

# Every configuration the dispatcher can pick, in fp32 with its default 3xTF32 products (the largest
# padded lengths split by kernel so the compiles spread over pytest-xdist workers). The 16-bit and
# float64 variants differ only in load/store conversions and accumulator type: compiled at the shortest
# and at TedRec's padded length (n = 50 -> 64), with TF32 products at n = 64 as well.
_LONG = (256, 512)
_LENGTHS = [c.BLOCK_N for c in all_kernel_configs()]
GROUPS = (
    [("spectral_fusion", "float32", None, n, "") for n in _LENGTHS if n not in _LONG]
    + [("spectral_fusion", "float32", None, n, kernel) for n in _LONG for kernel in ("forward", "backward")]
    + [("spectral_fusion", dtype, None, n, "") for dtype in ("bfloat16", "float64") for n in (16, 64)]
    + [("spectral_fusion", "float16", None, 64, ""), ("spectral_fusion", "float32", "tf32", 64, "")]
    + [("spectral_filter", "float32", None, n, "") for n in _LENGTHS]
    + [("spectral_filter", dtype, None, 64, "") for dtype in ("bfloat16", "float64")]
    # full-catalog cross-entropy: one configuration per dtype, its three kernels
    + [("full_catalog_ce", dtype, precision, None, "")
       for dtype, precision in (("float32", None), ("float32", "tf32"), ("bfloat16", None), ("float16", None),
                                ("float64", None))]
)


@pytest.mark.parametrize(("module", "dtype", "precision", "block_n", "only"), GROUPS,
                         ids=[f"{m}-{d}-{p or 'default'}{f'-n{b}' if b else ''}{'-' + o if o else ''}"
                              for m, d, p, b, o in GROUPS])
def test_compiles_for_sm90(module: str, dtype: str, precision: str | None, block_n: int | None, only: str) -> None:
    cmd = [sys.executable, "-m", "tedrec_fast.kernels.aot", "--arch", "90", "--module", module, "--dtype", dtype,
           "--only", only]
    if block_n:
        cmd += ["--block-n", str(block_n)]
    if precision:
        cmd += ["--precision", precision]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"compile failed:\n{result.stderr[-4000:]}"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert records and all(only in r["kernel"] for r in records)
    for r in records:
        assert r["registers"] > 0
        print(f"{r['kernel']} {r['dtype']} {r['precision']}: {r['registers']} registers, "
              f"{r['spill_store_bytes']} B spill stores, {r['shared_bytes']} B shared, "
              f"{r['wgmma']} wgmma + {r['mma_sync']} mma.sync, {r['compile_s']} s")


def test_tensor_core_instruction_count() -> None:
    from tedrec_fast.kernels.aot import tensor_core_instructions

    ptx = """
    wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 {%f1}, %rd1, %rd2, 1, 1, 1;
    wgmma.fence.sync.aligned;
    mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f2}, {%r1}, {%r2}, {%f3};
    wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 {%f4}, %rd3, %rd4, 1, 1, 1;
    """
    assert tensor_core_instructions(ptx) == {"wgmma": 2, "mma_sync": 1}
