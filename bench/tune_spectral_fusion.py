"""Tuning sweep of the spectral-fusion kernels' launch configurations (Triton and CUDA C++), in one device call.

``python -m bench.tune_spectral_fusion --out-dir DIR --budget-s 450`` on a CUDA device. For each shape of
:data:`SHAPES` in order (TedRec's B = 2048, n = 50, d = 300 first) and each group of :func:`variants` (one kernel
kind, direction, dtype and fp32 matmul precision; the default launch configuration first), every variant is

1. checked against :func:`~tedrec_fast.ops.spectral_fusion.reference.spectral_fusion_reference` computed in
   float64 on the device from the same inputs: ``rel_err`` is the largest ``|out - ref|`` over the largest
   ``|ref|`` (of ``V``, or the worst of the seven gradients); ``ok`` when it is at most ``tol``, the ``atol`` of
   tests/tolerances.py for the dtype and direction (``TF32`` for "high"): the bound the test suite's
   ``assert_close_scaled`` puts on the largest output;
2. timed with :func:`bench.spectral_fusion.time_ms` (``do_bench`` median, L2 flushed between runs): the forward
   launch (``"fwd"``) or the backward launch alone (``"bwd"``), the kernels called directly (no op dispatch).

Variants (:func:`variants`), each group ordered by how many knobs differ from the default:

* Triton forward: ``BLOCK_D`` 16/32/64 x ``num_warps`` 2/4/8 x ``BLOCK_K`` 16 (and 32 where ``BLOCK_N >= 32``, 8 where
  the default runs the stacked-operand kernels);
* Triton backward: ``BLOCK_D_BWD`` 16/32 x ``num_warps_bwd`` 4/8;
* CUDA C++ forward and backward, loaded by NVRTC (the default too, so all share one compiler): ``TEDREC_ROWS``
  4/8 x ``dc`` 32/16/8 channels per chunk, where the shared memory fits;

in three modes: fp32 with matmul precision ``"highest"`` (3xTF32 products), bf16, fp32 with ``"high"`` (TF32;
Triton only: the CUDA kernels compute exact fp32 whatever the setting).

The eager reference is timed once per (shape, dtype): forward with :func:`bench.spectral_fusion.make_step`,
backward as ``autograd.grad`` of a retained graph. Every record has ``speedup_vs_reference`` and
``speedup_vs_default`` (the default's time over its own).

Before a shape is measured its variants are launched once at B = 2 in ``--jobs`` spawned processes, so Triton's
and NVRTC's on-disk caches serve the sweep (same n and d: the same specialisations); compiles would otherwise
take most of the budget. No compile or measurement starts once ``--budget-s`` seconds have passed. After every
shape the document (:func:`bench.environment.run_header`, ``"sweep"``, ``"progress"``, ``"records"``,
``"best"``: see :func:`best`) is rewritten atomically to ``DIR/<date>_<gpu>_tune_spectral_fusion.json``; one
JSON line is printed per record. A variant that fails to compile, runs out of memory or fails to launch is
recorded with its ``"error"``; the sweep goes on.

``--aot``: no GPU needed; compile every Triton kernel the sweep launches at TedRec's shape for sm_90
(kernels/aot.py) and print ``ptxas`` registers and spills, one JSON line per distinct kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from bench.environment import describe, results_path, run_header, write_json
from bench.spectral_fusion import Case, make_step, time_ms
from tedrec_fast.cuda.loaders import EmulatorLoader, NvrtcLoader
from tedrec_fast.kernels import spectral_fusion as kernels
from tedrec_fast.kernels.spectral_fusion import KernelConfig, kernel_config
from tedrec_fast.ops.spectral_fusion import triton as host
from tedrec_fast.ops.spectral_fusion.cuda import (
    CHUNK_WIDTHS,
    SMEM_LIMIT,
    chunk_width,
    largest_smem,
    spectral_fusion_backward_cuda,
    spectral_fusion_forward_cuda,
)
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference
from tedrec_fast.testing import BACKWARD, FORWARD, TF32

__all__ = ["Shape", "SHAPES", "MODES", "Variant", "variants", "mode_name", "triton_config", "best", "rel_err",
           "tolerance", "Problem", "make_problem", "reference_outputs", "launcher", "measure_variant",
           "sweep_shape", "precompile", "run", "compile_variants", "main"]


@dataclass(frozen=True)
class Shape:
    """One problem size: batch, sequence length, hidden size."""

    B: int
    n: int
    d: int


#: in priority order: TedRec's shape, longer sequences, then other hidden sizes
SHAPES = (Shape(2048, 50, 300), Shape(2048, 100, 300), Shape(2048, 200, 300), Shape(2048, 50, 64),
          Shape(2048, 50, 512))
#: (dtype, fp32 matmul precision) in measuring order; precision None: the kernels ignore the setting
MODES = (("float32", "highest"), ("bfloat16", None), ("float32", "high"))
DIRECTIONS = ("fwd", "bwd")
KINDS = ("triton", "cuda")
#: ``TEDREC_ROWS`` of csrc/spectral_fusion.cu as shipped, then the swept alternative
ROWS = (4, 8)
#: the KernelConfig fields a Triton variant sets, per direction
_TRITON_FIELDS = {"fwd": ("BLOCK_K", "BLOCK_D", "num_warps"), "bwd": ("BLOCK_D_BWD", "num_warps_bwd")}
#: ``tl.dot`` precision per fp32 matmul precision (kernels/aot.py's ``precision``); None: the dtype's default
_DOT_PRECISION = {"highest": "tf32x3", "high": "tf32", None: None}
#: the batch the precompile launches at (B is no specialisation of any kernel)
_COMPILE_B = 2
#: the record fields one "best" entry is chosen among
_GROUP = ("kind", "direction", "dtype", "precision", "B", "n", "d")
Timer = Callable[[Callable[[], object]], float]


# --------------------------------------------------------------------------------------------
# Variants and the best of them (pure functions)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One launch configuration of one kernel kind, direction, dtype and fp32 matmul precision."""

    kind: str  # "triton" or "cuda"
    direction: str  # "fwd" or "bwd"
    dtype: str  # "float32" or "bfloat16"
    precision: str | None  # torch.set_float32_matmul_precision during the run; None: left as it is
    knobs: tuple[tuple[str, int], ...]  # Triton: KernelConfig fields; CUDA: ("rows", r), ("dc", c)
    default: bool = False

    @property
    def id(self) -> str:
        """The knobs as one word, e.g. ``BLOCK_K16-BLOCK_D32-num_warps4`` or ``rows8-dc32``."""
        return "-".join(f"{name}{value}" for name, value in self.knobs)


def mode_name(dtype: str, precision: str | None) -> str:
    """``"float32-highest"``, ``"bfloat16"``, ...: a mode of :data:`MODES` as one word."""
    return f"{dtype}-{precision}" if precision else dtype


def _grid(kind: str, direction: str, n: int) -> list[dict[str, int]]:
    """Every swept setting of the knobs of ``kind`` for ``direction`` at sequence length ``n``."""
    if kind == "cuda":
        return [{"rows": rows, "dc": dc} for dc in sorted(CHUNK_WIDTHS, reverse=True) for rows in ROWS
                if largest_smem(n, dc) <= SMEM_LIMIT]
    if direction == "bwd":
        return [{"BLOCK_D_BWD": block_d, "num_warps_bwd": warps} for block_d in (16, 32) for warps in (4, 8)]
    config = kernel_config(n)
    block_ks = ((8,) if config.stacked else ()) + ((16, 32) if config.BLOCK_N >= 32 else (16,))
    return [{"BLOCK_K": block_k, "BLOCK_D": block_d, "num_warps": warps}
            for block_k in block_ks for block_d in (16, 32, 64) for warps in (2, 4, 8)]


def _default(kind: str, direction: str, n: int) -> dict[str, int]:
    """The knobs of the shipped launch configuration of ``kind`` for ``direction`` at length ``n``."""
    if kind == "cuda":
        return {"rows": ROWS[0], "dc": chunk_width(n)}
    config = kernel_config(n)
    return {field: getattr(config, field) for field in _TRITON_FIELDS[direction]}


def variants(shape: Shape, max_per_group: int | None = None) -> list[Variant]:
    """Everything swept at ``shape``, in measuring order: by mode (:data:`MODES`), kind, direction.

    Each group starts with the default launch configuration, then the others by how many knobs differ from it
    (one-knob changes first); ``max_per_group`` keeps the first of each group.
    """
    planned = []
    for dtype, precision in MODES:
        for kind in KINDS:
            if kind == "cuda" and precision == "high":
                continue  # exact fp32 FMAs: the setting changes nothing
            for direction in DIRECTIONS:
                variant = partial(Variant, kind, direction, dtype, precision if kind == "triton" else None)
                default = _default(kind, direction, shape.n)
                others = [knobs for knobs in _grid(kind, direction, shape.n) if knobs != default]
                others.sort(key=lambda knobs: sum(knobs[k] != default[k] for k in knobs))
                group = [variant(tuple(default.items()), default=True)] + [variant(tuple(k.items())) for k in others]
                planned += group[:max_per_group]
    return planned


def triton_config(variant: Variant, n: int) -> KernelConfig:
    """The whole KernelConfig of a Triton variant: :func:`kernel_config` of ``n`` with the variant's fields."""
    return dataclasses.replace(kernel_config(n), **dict(variant.knobs))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def best(records: list[dict]) -> list[dict]:
    """Per (kind, direction, dtype, precision, B, n, d) with a correct timed variant: the fastest correct one,
    the default's time and whether it was correct, and the winner's lead over it (default ms / winner ms;
    ``None`` where the default has no time). Ties go to the earlier record: the default keeps its place unless
    beaten."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in _GROUP), []).append(record)
    table = []
    for key, group in groups.items():
        timed = [r for r in group if r["ok"] and r["ms"] is not None]
        if not timed:
            continue
        winner = min(timed, key=lambda r: r["ms"])
        default = next((r for r in group if r["default"] and r["ms"] is not None), None)
        table.append({
            **dict(zip(_GROUP, key)), "variant": winner["variant"], "knobs": winner["knobs"], "ms": winner["ms"],
            "speedup_vs_reference": winner["speedup_vs_reference"],
            "default_ms": default["ms"] if default else None, "default_ok": default["ok"] if default else None,
            "lead_over_default": _ratio(default["ms"], winner["ms"]) if default else None,
        })
    return table


def rel_err(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor]) -> float:
    """The worst over outputs of ``max |got - want| / max |want|`` (``want`` in float64); NaN if any is NaN."""
    worst = 0.0
    for actual, expected in zip(got, want, strict=True):
        err = (actual.double() - expected).abs().max().item()
        scale = expected.abs().max().item()
        ratio = err / scale if scale > 0 else err
        if math.isnan(ratio):
            return math.nan
        worst = max(worst, ratio)
    return worst


def tolerance(variant: Variant) -> float:
    """The largest passing ``rel_err``: tests/tolerances.py's ``atol`` for the dtype and direction (TF32's for
    "high"), what ``assert_close_scaled`` allows at the largest output."""
    if variant.precision == "high":
        return TF32[0]
    return (FORWARD if variant.direction == "fwd" else BACKWARD)[getattr(torch, variant.dtype)][0]


# --------------------------------------------------------------------------------------------
# Problems, launches and the reference
# --------------------------------------------------------------------------------------------
@dataclass
class Problem:
    """The op's seven inputs and an incoming gradient of ``V``, in one dtype on one device."""

    inputs: tuple[torch.Tensor, ...]
    grad: torch.Tensor


def make_problem(shape: Shape, dtype: str, device: str) -> Problem:
    """:func:`~tedrec_fast.ops.spectral_fusion.inputs.random_inputs` (as the benchmarks) and a random gradient."""
    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(1)
    grad = torch.randn(shape.B, shape.n, shape.d, device=device, generator=gen).to(torch_dtype)
    return Problem(random_inputs(shape.B, shape.n, shape.d, torch_dtype, device), grad)


def reference_outputs(problem: Problem) -> dict[str, tuple[torch.Tensor, ...]]:
    """``{"fwd": (V,), "bwd": seven gradients}`` of the reference in float64 from the same (rounded) inputs."""
    leaves = [x.detach().double().requires_grad_() for x in problem.inputs]
    out = spectral_fusion_reference(*leaves)
    grads = torch.autograd.grad(out, leaves, problem.grad.double())
    return {"fwd": (out.detach(),), "bwd": grads}


def _reference_backward(problem: Problem) -> Callable[[], object]:
    """The eager reference's backward alone: ``autograd.grad`` of a graph built once and retained."""
    leaves = [x.detach().requires_grad_() for x in problem.inputs]
    out = spectral_fusion_reference(*leaves)
    return lambda: torch.autograd.grad(out, leaves, problem.grad, retain_graph=True)


def launcher(variant: Variant, problem: Problem) -> Callable[[], tuple[torch.Tensor, ...]]:
    """A closure launching ``variant`` once on ``problem``: ``(V,)`` forward, the seven gradients backward.

    Defaults launch without an override (the shipped path). CUDA variants load through NVRTC on a GPU and the
    emulator on CPU tensors, with ``TEDREC_ROWS`` defined when it is not the shipped value.
    """
    inputs, grad = problem.inputs, problem.grad
    n = inputs[0].shape[1]
    if variant.kind == "triton":
        config = None if variant.default else triton_config(variant, n)
        forward = partial(host.spectral_fusion_forward, config=config)
        backward = partial(host.spectral_fusion_backward, config=config)
    else:
        knobs = dict(variant.knobs)
        loader_type = NvrtcLoader if inputs[0].device.type == "cuda" else EmulatorLoader
        loader = loader_type({} if knobs["rows"] == ROWS[0] else {"TEDREC_ROWS": knobs["rows"]})
        dc = None if variant.default else knobs["dc"]
        forward = partial(spectral_fusion_forward_cuda, loader, dc=dc)
        backward = partial(spectral_fusion_backward_cuda, loader, dc=dc)
    if variant.direction == "fwd":
        return lambda: (forward(*inputs),)
    return lambda: backward(grad, *inputs)


@contextlib.contextmanager
def _matmul_precision(precision: str | None) -> Iterator[None]:
    """``torch.set_float32_matmul_precision(precision)`` inside, restored after; nothing for ``None``."""
    if precision is None:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)



# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
def measure_variant(variant: Variant, shape: Shape, problem: Problem, want: tuple[torch.Tensor, ...],
                    timer: Timer) -> dict:
    """Check ``variant`` against the float64 reference outputs ``want``, then time it: one record (without
    the speedups). Any exception (a compile error, out of memory, a failed launch) is recorded as ``"error"``,
    with what was measured before it."""
    record = {"op": "spectral_fusion_tune", "kind": variant.kind, "direction": variant.direction,
              "dtype": variant.dtype, "precision": variant.precision, **dataclasses.asdict(shape),
              "variant": variant.id, "knobs": dict(variant.knobs), "default": variant.default,
              "ok": False, "rel_err": None, "tol": tolerance(variant), "ms": None, "error": None}
    try:
        with _matmul_precision(variant.precision):
            step = launcher(variant, problem)
            err = rel_err(step(), want)
            record.update(rel_err=float(f"{err:.3g}") if math.isfinite(err) else None, ok=err <= record["tol"])
            record["ms"] = round(timer(step), 5)
    except Exception as exc:  # one variant's failure must not end the sweep
        record["error"] = describe(exc)
        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
    return record


def _prepare(shape: Shape, dtype: str, device: str, timer: Timer) -> tuple[Problem, dict, dict[str, float]]:
    """One dtype's problem at ``shape``, its float64 reference outputs and the eager reference's times."""
    problem = make_problem(shape, dtype, device)
    want = reference_outputs(problem)
    reference_ms = {
        "fwd": timer(make_step(Case("torch", "fwd", dtype, shape.B, shape.n, shape.d), device=device)),
        "bwd": timer(_reference_backward(problem)),
    }
    return problem, want, {direction: round(ms, 5) for direction, ms in reference_ms.items()}


def sweep_shape(shape: Shape, planned: list[Variant], deadline: float, timer: Timer,
                device: str = "cuda") -> Iterator[dict]:
    """The records of ``planned`` at ``shape``, until ``deadline`` (``time.monotonic()``): each dtype's problem,
    reference outputs and reference times once (when its first variant comes), then each variant with its
    speedups over the reference and over its group's default (measured first)."""
    prepared: dict[str, tuple[Problem, dict, dict[str, float]]] = {}
    default_ms: dict[tuple, float | None] = {}
    for variant in planned:
        if time.monotonic() >= deadline:
            return
        if variant.dtype not in prepared:
            prepared[variant.dtype] = _prepare(shape, variant.dtype, device, timer)
        problem, want, reference_ms = prepared[variant.dtype]
        record = measure_variant(variant, shape, problem, want[variant.direction], timer)
        group = (variant.kind, variant.direction, variant.dtype, variant.precision)
        if variant.default:
            default_ms[group] = record["ms"]
        ref_ms = reference_ms[variant.direction]
        record.update(reference_ms=ref_ms, speedup_vs_reference=_ratio(ref_ms, record["ms"]),
                      default_ms=default_ms.get(group), speedup_vs_default=_ratio(default_ms.get(group), record["ms"]))
        yield record


def _compile_one(shape: Shape, variant: Variant, device: str) -> str | None:
    """Launch ``variant`` once at batch :data:`_COMPILE_B` and ``shape``'s n and d (the sweep's specialisations),
    so Triton and NVRTC compile it into their on-disk caches; returns the error, if any."""
    try:
        with _matmul_precision(variant.precision):
            launcher(variant, make_problem(Shape(_COMPILE_B, shape.n, shape.d), variant.dtype, device))()
    except Exception as exc:  # recorded again, per variant, when the sweep reaches it
        return describe(exc)
    return None


def precompile(pool: Executor, shape: Shape, planned: list[Variant], deadline: float, device: str = "cuda") -> None:
    """Compile ``planned`` at ``shape`` in ``pool``'s processes, waiting until ``deadline`` at most (the rest is
    cancelled). Best effort: failures are reported on stderr and left to the sweep."""
    try:
        futures = {pool.submit(_compile_one, shape, variant, device): variant for variant in planned}
        done, pending = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in pending:
            future.cancel()
        for future in done:
            if (error := future.result()) is not None:
                print(f"precompile {futures[future].id}: {error}", file=sys.stderr)
    except Exception as exc:  # a broken pool: the sweep compiles whatever is missing itself
        print(f"precompile failed, the sweep compiles as it goes: {describe(exc)}", file=sys.stderr)



def run(out_dir: Path, budget_s: float, shapes: Sequence[Shape] = SHAPES, device: str = "cuda",
        timer: Timer | None = None, jobs: int = 0, max_per_group: int | None = None) -> Path:
    """The sweep (see the module docstring); returns the path of the document, rewritten after every shape.

    ``timer`` defaults to :func:`bench.spectral_fusion.time_ms`; ``jobs`` > 0 precompiles each shape's variants in
    that many spawned processes first; ``max_per_group`` keeps the first variants of each group.
    """
    started = time.monotonic()
    deadline = started + budget_s
    timer = timer or (lambda step: time_ms(step, device))
    header = run_header(device)
    path = results_path(out_dir, header, "_tune_spectral_fusion")
    records: list[dict] = []
    progress: list[dict] = []
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 0 else None
    with pool or contextlib.nullcontext():
        for shape in shapes:
            shape_started = time.monotonic()
            planned = variants(shape, max_per_group)
            row = {**dataclasses.asdict(shape), "variants": len(planned), "measured": 0, "error": None}
            if shape_started < deadline:
                if pool is not None:
                    precompile(pool, shape, planned, deadline, device)
                try:
                    for record in sweep_shape(shape, planned, deadline, timer, device):
                        records.append(record)
                        row["measured"] += 1
                        print(json.dumps(record), flush=True)
                except Exception as exc:  # the inputs or the reference: the next shape may fit
                    row["error"] = describe(exc)
                if device == "cuda":
                    torch.cuda.empty_cache()
            progress.append({**row, "seconds": round(time.monotonic() - shape_started, 1)})
            print(f"B={shape.B} n={shape.n} d={shape.d}: {row['measured']} of {len(planned)} variants in "
                  f"{progress[-1]['seconds']} s" + (f" ({row['error']})" if row["error"] else ""), file=sys.stderr)
            write_json({
                **header,
                "sweep": {"shapes": [dataclasses.asdict(s) for s in shapes], "modes": [mode_name(*m) for m in MODES],
                          "budget_s": budget_s, "jobs": jobs, "max_per_group": max_per_group,
                          "cuda_loader": "nvrtc", "spent_s": round(time.monotonic() - started, 1)},
                "progress": progress, "records": records, "best": best(records),
            }, path)
    return path


# --------------------------------------------------------------------------------------------
# Ahead-of-time compile of the swept Triton kernels, and the command line
# --------------------------------------------------------------------------------------------
def compile_variants(modes: Sequence[tuple[str, str | None]] = MODES, shape: Shape = SHAPES[0], only: str = "",
                     arch: int = 90) -> Iterator[dict]:
    """Compile each distinct Triton kernel the sweep launches at ``shape`` in ``modes`` for ``sm_<arch>`` with
    kernels/aot.py (no GPU): one result per kernel (``ptxas`` registers and spills); ``only`` keeps kernels whose
    name contains it."""
    from tedrec_fast.kernels import aot

    swept = {(v.direction, triton_config(v, shape.n)) for v in variants(shape) if v.kind == "triton"}

    def launched(direction: str, spec: dict) -> bool:
        """The variant's own kernel; a forward in one pass exactly when d <= BLOCK_D."""
        single = shape.d <= spec["constexprs"]["BLOCK_D"]
        kernel = "forward" if direction == "fwd" else "backward"
        return kernel in spec["name"] and spec["constexprs"].get("SINGLE_CHUNK", single) == single

    def compile_specs(dtype: torch.dtype, precision: str | None = None) -> list[dict]:
        specs = (spec for direction, config in swept
                 for spec in kernels.compile_specs(dtype, precision, configs=[config]) if launched(direction, spec))
        return sorted({s["name"]: s for s in specs}.values(), key=lambda s: s["name"])  # each kernel once

    for dtype_name, precision in modes:
        dtype = getattr(torch, dtype_name)
        yield from aot.compile_each(compile_specs(dtype, _DOT_PRECISION[precision]), dtype, arch, only)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 without a CUDA device, unless ``--aot``)."""
    modes = {mode_name(*m): m for m in MODES}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start nothing after this many seconds")
    parser.add_argument("--jobs", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)),
                        help="processes that precompile each shape's variants (0: compile as the sweep goes)")
    parser.add_argument("--max-per-group", type=int, help="only the first N variants of each group (the default first)")
    parser.add_argument("--aot", action="store_true",
                        help="compile the Triton kernels swept at TedRec's shape for sm_90, print registers/spills "
                             "(no GPU needed)")
    parser.add_argument("--modes", nargs="+", choices=list(modes), default=list(modes), help="with --aot")
    parser.add_argument("--only", default="", help="with --aot: only kernels whose name contains this")
    args = parser.parse_args(argv)
    if args.aot:
        from tedrec_fast.kernels.aot import print_results

        return print_results(compile_variants([modes[m] for m in args.modes], only=args.only))
    if not torch.cuda.is_available():
        print("python -m bench.tune_spectral_fusion times kernels on a CUDA device, and there is none here "
              "(--aot compiles the swept Triton kernels without one)", file=sys.stderr)
        return 2
    path = run(args.out_dir, args.budget_s, jobs=args.jobs, max_per_group=args.max_per_group)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
