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

# every padded length in fp32 (default 3xTF32) and bf16; the other dtypes and TF32 at TedRec's n = 50
GROUPS = (
    [("float32", None, c.BLOCK_N) for c in all_kernel_configs()]
    + [("bfloat16", None, c.BLOCK_N) for c in all_kernel_configs()]
    + [("float16", None, 64), ("float64", None, 16), ("float64", None, 64), ("float32", "tf32", 64)]
)


@pytest.mark.parametrize(("dtype", "precision", "block_n"), GROUPS,
                         ids=[f"{d}-{p or 'default'}-n{b}" for d, p, b in GROUPS])
def test_compiles_for_sm90(dtype: str, precision: str | None, block_n: int) -> None:
    cmd = [sys.executable, "-m", "tedrec_fast.kernels.aot", "--arch", "90", "--dtype", dtype, "--block-n", str(block_n)]
    if precision:
        cmd += ["--precision", precision]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"compile failed:\n{result.stderr[-4000:]}"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 3  # forward single pass, forward two passes, backward
    for r in records:
        assert r["registers"] > 0
        print(f"{r['kernel']} {r['dtype']} {r['precision']}: {r['registers']} registers, "
              f"{r['spill_store_bytes']} B spill stores, {r['shared_bytes']} B shared, {r['compile_s']} s")
