"""Tuning sweep of the full-catalog cross-entropy's launch configuration, in one device call.

``python -m bench.tune_full_catalog_ce --out-dir DIR --budget-s 450`` on a CUDA device: at B = 2048, d = 300
(bench/full_catalog_ce.py's shape), |V| in :data:`SIZES` (1M first) and bf16 then fp32, every variant of
:func:`variants` (the default first) is

1. checked against the torch-chunked path of the op (``backend="torch-chunked"``, fp32, never holds the
   ``B x |V|`` logits): loss and both gradients, with the test suite's tolerances (tests/tolerances.py);
   ``err`` is the worst element's error as a fraction of its tolerance (<= 1 passes);
2. timed forward (``"fwd"``) and forward + backward (``"fwd+bwd"``) with bench.spectral_fusion.time_ms,
   the kernels called directly with precomputed row scales (TedRec's loss: cosine logits / 0.07).

Three cuBLAS GEMMs of the loss's shapes (logits, ``G @ C``, ``G^T @ Q``: the compute floor of
forward + backward) are timed once per (|V|, dtype); each record's ``vs_three_gemms`` is its time over
theirs (for ``"fwd"`` too, so the two directions share one yardstick).

Pruning (:func:`variants`): the factors are the tile, ``num_warps``, ``GROUP_V`` (backward only), forward
programs per SM (forward only), backward programs per SM (backward only) and, for bf16, ``DOT_16BIT``.
The sweep runs the default, every change of one factor, then every change of two factors that act on a
common kernel (two factors on different kernels add their effects: forward + backward time is the sum
of the two kernels' times). That is 61 variants for bf16 and 42 for fp32 (of 432 and 180 in the full
product).

Before measuring, every distinct compiled configuration is built in ``--jobs`` processes (Triton's
on-disk cache then serves the measuring process): compiles would otherwise take most of the budget.
No variant starts once ``--budget-s`` seconds have passed. After every (|V|, dtype) the document
(bench.environment.run_header, ``"records"``, ``"best"``: see :func:`best`) is rewritten atomically to
``DIR/<date>_<gpu>_tune_catalog.json``; one JSON line is printed per record. A variant that fails to
compile, runs out of memory or fails to launch is recorded with its ``"error"``; the sweep goes on.

``--aot``: no GPU needed; compile every swept kernel for sm_90 (kernels/aot.py) and print ``ptxas``
registers and spills, one JSON line per distinct kernel.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.environment import describe, results_path, run_header, write_json
from bench.full_catalog_ce import CatalogCase, three_gemms, zipf_items
from bench.spectral_fusion import time_ms
from tedrec_fast import full_catalog_cross_entropy
from tedrec_fast.kernels import full_catalog_ce as kernels
from tedrec_fast.kernels.full_catalog_ce import KernelConfig, kernel_config
from tedrec_fast.ops.full_catalog_ce import triton as host
from tedrec_fast.ops.full_catalog_ce.op import _row_scales
from tedrec_fast.testing import FULL_CATALOG_CE_BACKWARD, FULL_CATALOG_CE_FORWARD

__all__ = ["SIZES", "DTYPES", "Factor", "factors", "variants", "variant_id", "best", "error_ratio", "Inputs",
           "make_inputs", "forward", "forward_backward", "reference", "measure_variant", "precompile",
           "compile_variants", "run", "main"]

SIZES = (1_000_000, 60_000)
DTYPES = ("bfloat16", "float32")
B, D = CatalogCase.B, CatalogCase.d
TEMPERATURE, IGNORE_INDEX = 0.07, -100
#: (BLOCK_B, BLOCK_V, BLOCK_K); the last only for 16-bit inputs (fp32's 3xTF32 operands would spill)
TILES = ((64, 64, 32), (128, 64, 32), (64, 128, 32), (32, 64, 16), (64, 64, 16), (128, 128, 32))
_TILES_16BIT_ONLY = {(128, 128, 32)}
_FORWARD, _BACKWARD = frozenset({"forward"}), frozenset({"backward"})
_BOTH = _FORWARD | _BACKWARD
#: fields of KernelConfig that change the launch grid only, not the compiled kernels
_LAUNCH_FIELDS = ("fwd_programs_per_sm", "bwd_programs_per_sm")
#: items of the catalog the precompile runs at: |V| is not specialised on, B and d are
_COMPILE_V = 1000
Timer = Callable[[Callable[[], object]], float]


# --------------------------------------------------------------------------------------------
# Variants and the best of them (pure functions)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    """One swept factor: the KernelConfig ``fields`` each of its ``values`` sets, and the kernels it changes."""

    name: str
    fields: tuple[str, ...]
    values: tuple[tuple, ...]
    kernels: frozenset[str]


def factors(dtype: torch.dtype) -> list[Factor]:
    """The factors swept for inputs of ``dtype``."""
    tiles = tuple(t for t in TILES if dtype.itemsize == 2 or t not in _TILES_16BIT_ONLY)
    swept = [
        Factor("tile", ("BLOCK_B", "BLOCK_V", "BLOCK_K"), tiles, _BOTH),
        Factor("num_warps", ("num_warps",), ((4,), (8,)), _BOTH),
        Factor("GROUP_V", ("GROUP_V",), ((2,), (4,), (8,)), _BACKWARD),
        Factor("fwd_programs_per_sm", ("fwd_programs_per_sm",), ((2,), (4,), (8,)), _FORWARD),
        Factor("bwd_programs_per_sm", ("bwd_programs_per_sm",), ((1,), (2,)), _BACKWARD),
    ]
    if dtype == torch.bfloat16:
        swept.append(Factor("DOT_16BIT", ("DOT_16BIT",), ((False,), (True,)), _BOTH))
    return swept


def variants(dtype: torch.dtype) -> list[KernelConfig]:
    """The configurations swept for ``dtype``: the default (:func:`kernel_config`) first, then every change
    of one factor, then every change of two factors that act on a common kernel."""
    default = kernel_config(dtype)
    swept = factors(dtype)
    changes = [[change for change in (dict(zip(f.fields, value)) for value in f.values)
                if dataclasses.replace(default, **change) != default] for f in swept]
    configs = [default] + [dataclasses.replace(default, **change) for options in changes for change in options]
    for (f1, options1), (f2, options2) in itertools.combinations(zip(swept, changes), 2):
        if f1.kernels & f2.kernels:
            configs += [dataclasses.replace(default, **a, **b) for a in options1 for b in options2]
    return configs


def variant_id(config: KernelConfig) -> str:
    """A short name: ``BxVxK-w<warps>-g<GROUP_V>-f<fwd per SM>-b<bwd per SM>``, ``-bf16dot`` if set."""
    return (f"{config.BLOCK_B}x{config.BLOCK_V}x{config.BLOCK_K}-w{config.num_warps}-g{config.GROUP_V}"
            f"-f{config.fwd_programs_per_sm}-b{config.bwd_programs_per_sm}{'-bf16dot' if config.DOT_16BIT else ''}")


def best(records: list[dict]) -> list[dict]:
    """Per (V, dtype, direction) with a correct timed variant: the fastest correct one, and its lead over the
    default (default ms / its ms; ``None`` where the default has no correct time). Ties go to the earlier
    record, so the default keeps its place unless beaten."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["V"], r["dtype"], r["direction"]), []).append(r)
    table = []
    for (V, dtype, direction), group in groups.items():
        timed = [r for r in group if r["correct"] and r["ms"] is not None]
        if not timed:
            continue
        winner = min(timed, key=lambda r: r["ms"])
        default = next((r for r in timed if r["default"]), None)
        table.append({
            "V": V, "dtype": dtype, "direction": direction, "variant": winner["variant"], "config": winner["config"],
            "ms": winner["ms"], "vs_three_gemms": winner["vs_three_gemms"],
            "default_ms": default["ms"] if default else None,
            "lead_over_default": round(default["ms"] / winner["ms"], 3) if default else None,
        })
    return table


def error_ratio(actual: torch.Tensor, expected: torch.Tensor, tol: tuple[float, float]) -> float:
    """The worst element's ``|actual - expected|`` over its tolerance ``atol * max(1, max|expected|) + rtol *
    |expected|`` (the test suite's criterion): <= 1 passes; NaN if any output is NaN."""
    atol, rtol = tol
    expected = expected.float()
    scale = max(1.0, expected.abs().max().item())
    return ((actual.float() - expected).abs() / (atol * scale + rtol * expected.abs())).max().item()


# --------------------------------------------------------------------------------------------
# Inputs, the kernels and the reference
# --------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """One problem: inputs, the per-row incoming gradient and the row scales the kernels take."""

    query: torch.Tensor
    items: torch.Tensor
    targets: torch.Tensor
    grad: torch.Tensor
    q_scale: torch.Tensor
    q_pi: torch.Tensor
    c_scale: torch.Tensor
    c_pi: torch.Tensor


def make_inputs(V: int, dtype: torch.dtype, device: str, B: int = B, d: int = D, seed: int = 0) -> Inputs:
    """Random queries and items (as bench/full_catalog_ce.py), Zipf targets, a random per-row gradient; cosine
    logits over temperature 0.07 (TedRec's loss)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    query = torch.randn(B, d, device=device, generator=gen).to(dtype)
    items = torch.randn(V, d, device=device, generator=gen).to(dtype)
    grad = torch.rand(B, device=device, generator=gen)
    return Inputs(query, items, zipf_items(B, V, device=device, seed=seed), grad,
                  *_row_scales(query, TEMPERATURE, True), *_row_scales(items, 1.0, True))


def forward(x: Inputs, config: KernelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward kernels with ``config``: per-row ``(loss, lse)``."""
    return host.full_catalog_ce_forward(x.query, x.items, x.targets, x.q_scale, x.c_scale, IGNORE_INDEX,
                                           config=config)


def forward_backward(x: Inputs, config: KernelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward and backward kernels with ``config``: ``(loss, d_query, d_item)``."""
    loss, lse = forward(x, config)
    d_query, d_item = host.full_catalog_ce_backward(x.grad, x.query, x.items, x.targets, lse, x.q_scale,
                                                       x.c_scale, x.q_pi, x.c_pi, IGNORE_INDEX, config=config)
    return loss, d_query, d_item


def reference(x: Inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, d_query, d_item)`` of the op's torch-chunked path (fp32 products, chunks of items)."""
    query, items = x.query.detach().requires_grad_(), x.items.detach().requires_grad_()
    loss = full_catalog_cross_entropy(query, items, x.targets, temperature=TEMPERATURE, ignore_index=IGNORE_INDEX,
                                      reduction="none", backend="torch-chunked")
    loss.backward(x.grad)
    return loss.detach(), query.grad, items.grad


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def measure_variant(x: Inputs, want: tuple[torch.Tensor, ...], config: KernelConfig, timer: Timer,
                    base: dict, gemm3_ms: float | None) -> list[dict]:
    """Check ``config`` against ``want`` (reference loss and gradients), then time it: one record per
    direction, ``base`` and the variant's fields in each. Any exception (a compile error, out of memory, a
    failed launch) is recorded as ``"error"``, with what was measured before it."""
    dtype = x.query.dtype
    errors: dict[str, float] = {}
    times: dict[str, float] = {}
    error = None
    try:
        got = forward_backward(x, config)
        tolerances = (FULL_CATALOG_CE_FORWARD[dtype], FULL_CATALOG_CE_BACKWARD[dtype], FULL_CATALOG_CE_BACKWARD[dtype])
        for name, actual, expected, tol in zip(("loss", "d_query", "d_item"), got, want, tolerances):
            errors[name] = error_ratio(actual, expected, tol)
        del got
        times["fwd"] = timer(lambda: forward(x, config))
        times["fwd+bwd"] = timer(lambda: forward_backward(x, config))
    except Exception as exc:  # one variant's failure must not end the sweep
        error = describe(exc)
        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
    records = []
    for direction, checked in (("fwd", ("loss",)), ("fwd+bwd", ("loss", "d_query", "d_item"))):
        ms = times.get(direction)
        err = {name: errors[name] for name in checked if name in errors}
        records.append({
            **base, "direction": direction, "variant": variant_id(config), "config": dataclasses.asdict(config),
            "ms": round(ms, 4) if ms is not None else None, "gemm3_ms": gemm3_ms,
            "vs_three_gemms": round(ms / gemm3_ms, 3) if ms is not None and gemm3_ms else None,
            "correct": len(err) == len(checked) and all(e <= 1 for e in err.values()),
            "err": {name: _finite(e) for name, e in err.items()}, "error": error,
        })
    return records


def _compiled_part(config: KernelConfig) -> KernelConfig:
    """``config`` with the launch-only fields at their defaults: configurations that compile alike."""
    return dataclasses.replace(config, **{f: getattr(KernelConfig, f) for f in _LAUNCH_FIELDS})


def _compile_one(dtype_name: str, config: KernelConfig, device: str, B: int, d: int) -> str | None:
    """Launch ``config``'s kernels once on a small catalog, so Triton compiles them into its on-disk cache
    (same B and d as the sweep: the same specialisations); returns the error, if any."""
    try:
        forward_backward(make_inputs(_COMPILE_V, getattr(torch, dtype_name), device, B, d), config)
    except Exception as exc:  # recorded again, per variant, when the sweep reaches it
        return describe(exc)
    return None


def precompile(tasks: list[tuple[str, KernelConfig]], jobs: int, device: str = "cuda", B: int = B,
               d: int = D) -> None:
    """Compile each ``(dtype name, config)`` in ``jobs`` spawned processes (Triton's on-disk cache then serves
    this one). Best effort: failures are reported on stderr and left to the sweep."""
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_compile_one, name, config, device, B, d) for name, config in tasks]
            for (name, config), future in zip(tasks, futures):
                if (error := future.result()) is not None:
                    print(f"precompile {name} {variant_id(config)}: {error}", file=sys.stderr)
    except Exception as exc:  # the sweep compiles whatever is missing itself
        print(f"precompile failed, the sweep compiles as it goes: {describe(exc)}", file=sys.stderr)



def _sweep(V: int, dtype: torch.dtype, configs: list[KernelConfig], deadline: float, timer: Timer, device: str,
           B: int, d: int) -> Iterator[dict]:
    """The records of one (|V|, dtype): the reference and the GEMMs once, then each variant until ``deadline``
    (``time.monotonic()``)."""
    x = make_inputs(V, dtype, device, B, d)
    want = reference(x)
    try:
        gemm3_ms = round(timer(three_gemms(x.query, x.items)), 4)
    except torch.OutOfMemoryError:
        gemm3_ms = None
        torch.cuda.empty_cache()
    base = {"op": "full_catalog_ce_tune", "V": V, "B": B, "d": d, "dtype": str(dtype).removeprefix("torch.")}
    for config in configs:
        if time.monotonic() >= deadline:
            return
        yield from measure_variant(x, want, config, timer, {**base, "default": config == kernel_config(dtype)},
                                   gemm3_ms)


def run(out_dir: Path, budget_s: float, sizes: tuple[int, ...] = SIZES, dtype_names: tuple[str, ...] = DTYPES,
        device: str = "cuda", timer: Timer | None = None, B: int = B, d: int = D, max_variants: int | None = None,
        jobs: int = 0) -> Path:
    """The sweep (see the module docstring); returns the path of the document, rewritten after every
    (|V|, dtype). ``timer`` defaults to :func:`bench.spectral_fusion.time_ms`; ``max_variants`` keeps the
    first variants of each list; ``jobs`` > 0 precompiles in that many processes first."""
    started = time.monotonic()
    deadline = started + budget_s
    timer = timer or (lambda step: time_ms(step, device))
    header = run_header(device)
    path = results_path(out_dir, header, "_tune_catalog")
    if jobs > 0:  # every distinct compiled configuration, once
        tasks = list(dict.fromkeys((name, _compiled_part(config)) for name in dtype_names
                                   for config in variants(getattr(torch, name))[:max_variants]))
        precompile(tasks, jobs, device, B, d)
        print(f"precompiled {len(tasks)} configurations in {time.monotonic() - started:.0f} s", file=sys.stderr)
    records: list[dict] = []
    progress: list[dict] = []
    for V, dtype_name in itertools.product(sizes, dtype_names):
        configs = variants(getattr(torch, dtype_name))[:max_variants]
        sweep_started = time.monotonic()
        row = {"V": V, "dtype": dtype_name, "variants": len(configs), "measured": 0, "error": None}
        if sweep_started < deadline:
            try:
                for record in _sweep(V, getattr(torch, dtype_name), configs, deadline, timer, device, B, d):
                    records.append(record)
                    row["measured"] += record["direction"] == "fwd"
                    print(json.dumps(record), flush=True)
            except Exception as exc:  # the inputs, the reference or the GEMMs: the next (|V|, dtype) may fit
                row["error"] = describe(exc)
            if device == "cuda":
                torch.cuda.empty_cache()
        progress.append({**row, "seconds": round(time.monotonic() - sweep_started, 1)})
        print(f"V={V} {dtype_name}: {row['measured']} of {len(configs)} variants in {progress[-1]['seconds']} s"
              + (f" ({row['error']})" if row["error"] else ""), file=sys.stderr)
        write_json({
            **header,
            "sweep": {"B": B, "d": d, "sizes": list(sizes), "dtypes": list(dtype_names), "budget_s": budget_s,
                      "float32_matmul_precision": torch.get_float32_matmul_precision(),
                      "spent_s": round(time.monotonic() - started, 1)},
            "progress": progress, "records": records, "best": best(records),
        }, path)
    return path


def compile_variants(dtype_names: list[str], arch: int = 90, only: str = "") -> Iterator[dict]:
    """Compile each distinct kernel of the swept variants for ``sm_<arch>`` with kernels/aot.py (no GPU):
    one result per kernel (``ptxas`` registers and spills); ``only`` keeps kernels whose name contains it."""
    from tedrec_fast.kernels import aot

    for name in dtype_names:
        dtype = getattr(torch, name)
        specs = (spec for config in variants(dtype) for spec in kernels.compile_specs(dtype, None, config))
        # a kernel's name lists what it compiles with: each distinct kernel once
        yield from aot.compile_each({spec["name"]: spec for spec in specs}.values(), dtype, arch, only)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 without a CUDA device, unless ``--aot``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no variant after this many seconds")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--max-variants", type=int, help="only the first N variants per (|V|, dtype)")
    parser.add_argument("--jobs", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)),
                        help="processes that precompile the variants first (0: compile as the sweep goes)")
    parser.add_argument("--aot", action="store_true",
                        help="compile the swept kernels for sm_90 and print registers/spills (no GPU needed)")
    parser.add_argument("--only", default="", help="with --aot: only kernels whose name contains this")
    args = parser.parse_args(argv)
    if args.aot:
        from tedrec_fast.kernels.aot import print_results

        return print_results(compile_variants(args.dtypes, only=args.only))
    if not torch.cuda.is_available():
        print("python -m bench.tune_full_catalog_ce times kernels on a CUDA device, and there is none here "
              "(--aot compiles the swept kernels without one)", file=sys.stderr)
        return 2
    path = run(args.out_dir, args.budget_s, tuple(args.sizes), tuple(args.dtypes), max_variants=args.max_variants,
               jobs=args.jobs)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
