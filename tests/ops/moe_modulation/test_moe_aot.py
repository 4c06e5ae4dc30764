"""The MoE-modulation Triton kernels compile ahead of time for sm_80 and sm_90 (no GPU needed) within the
shared-memory limit; registers and spills are printed (``pytest -s``) and recorded in bench/NOTES.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SHARED_LIMIT = 99 * 1024


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiles(arch: int, dtype: str) -> None:
    cmd = [sys.executable, "-m", "tedrec_fast.kernels.aot", "--arch", str(arch), "--module", "moe_modulation",
           "--dtype", dtype]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"compile failed:\n{result.stderr[-4000:]}"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {r["kernel"].split()[1] for r in records} == {"forward", "backward_rows", "backward_weight"}
    for r in records:
        assert 0 < r["shared_bytes"] <= SHARED_LIMIT and r["registers"] > 0
        print(f"sm_{arch} {r['kernel']} {dtype}: {r['registers']} registers, {r['spill_store_bytes']} B spill "
              f"stores, {r['shared_bytes']} B shared, {r['wgmma']} wgmma + {r['mma_sync']} mma.sync")
