"""The table of GPU targets and the dispatcher's per-target choices, with the GPU simulated (no device needed).

A CUDA device of a given compute capability is simulated by patching ``torch.cuda.is_available`` and
``torch.cuda.get_device_capability``; the dispatcher's decisions only read those. The CUDA C++ backend's
loaders are replaced by a stand-in (available or not) so the fall-back order can be checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tedrec_fast
from tedrec_fast.kernels import full_catalog_ce, spectral_filter, spectral_fusion
from tedrec_fast.kernels.targets import TARGETS, TargetConfigs, launch_arch, target, target_for_capability
from tedrec_fast.ops import dispatch
from tedrec_fast.ops.dispatch import Problem, choose_backend
from tedrec_fast.ops.limits import MAX_N
from tedrec_fast.ops.spectral_filter.op import BACKENDS as FILTER_BACKENDS
from tedrec_fast.ops.spectral_fusion import cuda as host
from tedrec_fast.ops.spectral_fusion.op import BACKENDS as FUSION_BACKENDS

KB = 1024
REPO = Path(__file__).resolve().parents[2]


def test_table_lists_each_supported_target_with_its_limits() -> None:
    limits = {arch: (t.shared_per_block, t.registers_per_thread) for arch, t in TARGETS.items()}
    assert limits == {80: (163 * KB, 255), 86: (99 * KB, 255), 89: (99 * KB, 255), 90: (227 * KB, 255),
                      100: (227 * KB, 255), 120: (99 * KB, 255)}
    for t in TARGETS.values():
        assert t.shared_per_block < t.shared_per_sm and t.name == f"sm_{t.arch}" and t.gpus
    with pytest.raises(ValueError, match="arch must be one of 80, 86, 89, 90, 100, 120"):
        target(75)


@pytest.mark.parametrize(("capability", "arch"), [
    ((8, 0), 80), ((8, 6), 86), ((8, 7), 86), ((8, 9), 89), ((9, 0), 90), ((10, 0), 100), ((10, 3), 100),
    ((12, 0), 120), ((12, 1), 120), ((7, 5), None), ((11, 0), None),
])
def test_device_runs_as_its_own_target_or_an_older_one_of_its_major(capability, arch) -> None:
    found = target_for_capability(capability)
    assert (found.arch if found else None) == arch


def test_every_op_states_configurations_for_exactly_the_table() -> None:
    for module in (spectral_fusion, spectral_filter, full_catalog_ce):
        assert set(module.CONFIGS.table) == set(TARGETS)
    with pytest.raises(ValueError, match=r"missing \[120\]"):
        TargetConfigs("op", {arch: {} for arch in TARGETS if arch != 120}, why=lambda arch, key: "")


def test_sequence_lengths_each_target_runs() -> None:
    """Triton: n <= 256 on the 227-KiB targets, n <= 128 on the others, nowhere above 256 (the backward at
    BLOCK_N = 512 needs more shared memory than any GPU has), half that in float64 (tiles of twice the
    bytes); the CUDA C++ kernels: every n <= MAX_N."""
    for arch in TARGETS:
        large = TARGETS[arch].shared_per_block >= 200 * KB
        for dtype, expected in ((torch.float32, 256 if large else 128), (torch.bfloat16, 256 if large else 128),
                                (torch.float64, 128 if large else 64)):
            runs = [n for n in range(1, MAX_N + 1) if spectral_fusion.config_why_not(n, arch, dtype) is None]
            assert runs == list(range(1, expected + 1)), (arch, dtype)
            assert spectral_fusion.longest(arch, dtype) == expected
            assert "shared memory" in spectral_fusion.config_why_not(expected + 1, arch, dtype)
            assert {c.BLOCK_N for c in spectral_fusion.all_kernel_configs(arch, dtype)} == {
                16 << i for i in range(expected.bit_length() - 4)}
        assert all(host.chunk_width_why_not(n, arch) is None for n in range(1, MAX_N + 1))


# --------------------------------------------------------------------------------------------
# The dispatcher on a simulated GPU
# --------------------------------------------------------------------------------------------
class _FakeLoader:
    name = "fake"


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch):
    """``gpu(capability, cuda_backend=False)``: simulate a CUDA device; the CUDA C++ backend available or not."""

    def simulate(capability: tuple[int, int], cuda_backend: bool = False) -> torch.device:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        loader = (lambda device: _FakeLoader()) if cuda_backend else (lambda device: "no loader (test)")
        monkeypatch.setattr(dispatch, "loader_for", loader)
        return torch.device("cuda", 0)

    return simulate


def _problem(device: torch.device, n: int, dtype: torch.dtype = torch.float32) -> Problem:
    return Problem(device, dtype, (("B", 8), ("n", n), ("d", 300)))


@pytest.mark.parametrize(("capability", "n", "cuda_backend", "picked"), [
    ((9, 0), 50, False, "triton"), ((9, 0), 256, False, "triton"), ((9, 0), 257, False, "torch"),
    ((9, 0), 257, True, "cuda"), ((8, 6), 128, False, "triton"), ((8, 6), 129, False, "torch"),
    ((8, 6), 129, True, "cuda"), ((8, 6), 512, True, "cuda"), ((12, 0), 200, True, "cuda"),
    ((8, 0), 200, False, "torch"), ((7, 5), 50, True, "torch"),
])
def test_auto_picks_a_backend_whose_configuration_fits_the_device(gpu, capability, n, cuda_backend,
                                                                   picked) -> None:
    device = gpu(capability, cuda_backend)
    assert choose_backend(FUSION_BACKENDS, "auto", _problem(device, n), op="spectral_fusion").name == picked
    filter_picked = "triton" if picked == "triton" else "torch"  # the filter has no CUDA C++ backend
    assert choose_backend(FILTER_BACKENDS, "auto", _problem(device, n), op="spectral_filter").name == filter_picked


def test_triton_named_explicitly_says_why_it_cannot_run(gpu) -> None:
    device = gpu((8, 9))
    with pytest.raises(ValueError, match=r"backend='triton' cannot run this call: 32-bit sequences padded to 256 "
                                         r".* sm_89's 99 KiB of shared memory per block"):
        choose_backend(FUSION_BACKENDS, "triton", _problem(device, 200), op="spectral_fusion")
    with pytest.raises(ValueError, match=r"float64 sequences padded to 128 .* sm_89's 99 KiB"):
        choose_backend(FUSION_BACKENDS, "triton", _problem(device, 100, torch.float64), op="spectral_fusion")
    assert choose_backend(FUSION_BACKENDS, "auto", _problem(device, 100, torch.float64), op="spectral_fusion"
                          ).name == "torch"  # the CUDA C++ kernels have no float64
    device = gpu((7, 5))
    with pytest.raises(ValueError, match=r"compute capability 7.5 is not a supported GPU target \(sm_80, "):
        choose_backend(FUSION_BACKENDS, "triton", _problem(device, 50), op="spectral_fusion")


def test_launches_use_the_device_target(gpu) -> None:
    assert launch_arch(torch.device("cpu")) is None  # the interpreter: no hardware limits
    assert launch_arch(gpu((8, 7))) == 86
    with pytest.raises(ValueError, match="compute capability 7.5 is not a supported GPU target"):
        launch_arch(gpu((7, 5)))


def test_backends_report_what_each_target_runs(gpu) -> None:
    fusion = {row["name"]: row for row in tedrec_fast.backends()["spectral_fusion"]}
    small, large = "n <= 128 (float64: n <= 64)", "n <= 256 (float64: n <= 128)"
    assert fusion["triton"]["detail"] == (f"per GPU target: sm_80 {small}; sm_86 {small}; sm_89 {small}; "
                                          f"sm_90 {large}; sm_100 {large}; sm_120 {small}")
    assert "sm_86 n <= 512" in fusion["cuda"]["detail"]
    gpu((8, 6))
    fusion = {row["name"]: row for row in tedrec_fast.backends()["spectral_fusion"]}
    assert fusion["triton"]["detail"] == f"on sm_86 (this GPU): {small}"


# --------------------------------------------------------------------------------------------
# The CUDA C++ build targets: setup.py's -gencode list and NVRTC
# --------------------------------------------------------------------------------------------
def _setup_module():
    """setup.py's helpers, without running ``setup()``."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    namespace: dict = {}
    exec(compile(text.split("\nsetup(\n")[0], "setup.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(("cuda", "sass", "ptx"), [
    ((13, 0), {80, 86, 89, 90, 100, 120}, 120), ((12, 8), {80, 86, 89, 90, 100, 120}, 120),
    ((12, 4), {80, 86, 89, 90}, 90),
])
def test_extension_gencode_covers_the_table(cuda, sass, ptx) -> None:
    flags = _setup_module()["nvcc_flags"](cuda)
    gencode = [flags[i + 1] for i, flag in enumerate(flags) if flag == "-gencode"]
    assert {int(m) for g in gencode for m in re.findall(r"code=sm_(\d+)", g)} == sass
    assert [int(m) for g in gencode for m in re.findall(r"code=compute_(\d+)", g)] == [ptx]  # PTX: newer GPUs


def test_nvrtc_targets_each_table_entry_itself() -> None:
    from tedrec_fast.cuda import nvrtc

    supported = (75, 80, 86, 87, 88, 89, 90, 100, 103, 107, 110, 120, 121)  # NVRTC 13.5's getSupportedArchs()
    for t in TARGETS.values():
        assert nvrtc.target_arch(t.capability, supported) == t.name


def test_catalog_loss_runs_on_every_target_and_nowhere_else(gpu) -> None:
    from tedrec_fast.ops.full_catalog_ce.op import BACKENDS as CATALOG_BACKENDS

    for capability, picked in (((8, 6), "triton"), ((12, 0), "triton"), ((7, 5), "torch-chunked")):
        problem = Problem(gpu(capability), torch.float32, (("B", 8), ("V", 1000), ("d", 300)))
        assert choose_backend(CATALOG_BACKENDS, "auto", problem, op="full_catalog_ce").name == picked
