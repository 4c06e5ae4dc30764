"""Compile every Triton kernel configuration for a GPU target ahead of time, without a GPU.

``python -m tedrec_fast.kernels.aot [--dtype float32 ...] [--arch 90]`` compiles each entry of each
kernel module's ``compile_specs`` with ``triton.compile(..., target=GPUTarget("cuda", arch, 32))``, runs
``ptxas -v`` on the PTX for registers and spills, counts the tensor-core instructions of the PTX (Hopper's
``wgmma`` or the older ``mma.sync``, which runs at a lower rate), and prints one JSON line per kernel. GPU-only errors
(``tl.dot`` shapes, unsupported precisions, layouts) raise here. Must run with ``TRITON_INTERPRET``
unset: the interpreter replaces the kernels by Python functions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tedrec_fast.kernels import full_catalog_ce, moe_modulation, spectral_filter, spectral_fusion

__all__ = ["compile_each", "compile_all", "print_results", "tensor_core_instructions", "main"]

MODULES = {"spectral_fusion": spectral_fusion, "spectral_filter": spectral_filter, "full_catalog_ce": full_catalog_ce,
           "moe_modulation": moe_modulation}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _ptxas_usage(ptx: str, arch: int) -> dict[str, int]:
    """Registers, spill bytes and stack frame of the (single) kernel in ``ptx``, from ``ptxas -v``."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        result = subprocess.run([ptxas, f"-arch={target.group(1) if target else f'sm_{arch}'}", "-v", f.name,
                                 "-o", os.devnull], capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    info = result.stderr + result.stdout
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    stack = re.search(r"(\d+) bytes stack frame", info)
    return {
        "registers": int(regs.group(1)) if regs else -1,
        "spill_store_bytes": int(spill.group(1)) if spill else 0,
        "spill_load_bytes": int(spill.group(2)) if spill else 0,
        "stack_bytes": int(stack.group(1)) if stack else 0,
    }


def compile_each(specs: Iterable[dict], dtype: torch.dtype, arch: int = 90, only: str = "") -> Iterator[dict]:
    """Compile each entry of ``specs`` (as a kernel module's ``compile_specs`` gives them) for ``sm_<arch>``;
    yield one result dict per kernel; raises on the first compile error. ``only`` keeps kernels whose name
    contains it."""
    target = GPUTarget("cuda", arch, 32)
    for spec in specs:
        if only not in spec["name"]:
            continue
        start = time.perf_counter()
        src = ASTSource(fn=spec["fn"], signature=spec["signature"], constexprs=spec["constexprs"])
        compiled = triton.compile(src, target=target, options={"num_warps": spec["num_warps"]})
        yield {
            "kernel": spec["name"],
            "dtype": str(dtype).removeprefix("torch."),
            "precision": spec["constexprs"].get("PRECISION"),
            "shared_bytes": compiled.metadata.shared,
            "compile_s": round(time.perf_counter() - start, 2),
            **_ptxas_usage(compiled.asm["ptx"], arch),
            **tensor_core_instructions(compiled.asm["ptx"]),
        }


def compile_all(dtypes: list[torch.dtype], arch: int = 90, precisions: list[str | None] | None = None,
                modules: list[str] | None = None, block_n: int | None = None, only: str = "") -> Iterator[dict]:
    """:func:`compile_each` over every kernel of the selected modules; raises on the first compile error.

    ``modules`` selects kernel modules by name (default all); ``block_n`` selects the sequence kernels'
    configuration for one padded length; ``only`` keeps kernels whose name contains it.
    """
    by_length = {"block_n": block_n} if block_n is not None else {}
    for name in modules or MODULES:
        for dtype in dtypes:
            for precision in precisions or [None]:
                yield from compile_each(MODULES[name].compile_specs(dtype, precision, **by_length), dtype, arch, only)


def print_results(results: Iterable[dict]) -> int:
    """Print each compile result as one JSON line; returns the exit status. Exits with a message under the
    Triton interpreter, which replaces kernels by Python functions and cannot compile them."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter cannot compile kernels")
    for result in results:
        print(json.dumps(result), flush=True)
    return 0


def tensor_core_instructions(ptx: str) -> dict[str, int]:
    """How many ``wgmma.mma_async`` (Hopper warpgroup) and ``mma.sync`` (warp-level) instructions ``ptx`` holds.

    A ``tl.dot`` becomes ``wgmma`` on sm_90 only when its tile suits a warpgroup (e.g. 64 or more rows);
    smaller products stay on ``mma.sync``.
    """
    return {"wgmma": len(re.findall(r"\bwgmma\.mma_async\b", ptx)), "mma_sync": len(re.findall(r"\bmma\.sync\b", ptx))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", action="append", choices=sorted(_DTYPES), help="repeatable; default float32")
    parser.add_argument("--precision", action="append", help="tl.dot input precision(s); default per dtype")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="repeatable; default all")
    parser.add_argument("--block-n", type=int,
                        help="only the configuration for this padded sequence length (sequence kernels)")
    parser.add_argument("--only", default="", help="only kernels whose name contains this (e.g. backward)")
    args = parser.parse_args(argv)
    return print_results(compile_all([_DTYPES[d] for d in args.dtype or ["float32"]], args.arch, args.precision,
                                     args.module, args.block_n, args.only))


if __name__ == "__main__":
    sys.exit(main())
