"""The NVRTC loader (:mod:`tedrec_fast.cuda.nvrtc`) without a GPU.

Host-side logic runs everywhere: compile options, the disk cache, argument conversion, the availability
check, and launches against a stand-in for CuPy that records what the loader asks of it. Where CuPy and
the NVRTC library load (``pip install cupy-cuda13x nvidia-cuda-nvrtc``; NVRTC is a compiler library and
needs no GPU), the real ``csrc/`` source is compiled to a cubin for every GPU target of the table.
"""

from __future__ import annotations

import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from tedrec_fast.cuda import nvrtc
from tedrec_fast.cuda.abi import pack_args
from tedrec_fast.cuda.sources import assemble, cache_key
from tedrec_fast.kernels.targets import TARGETS
from tedrec_fast.ops.spectral_fusion.abi import KERNEL_SIGNATURES

EM_CUDA = 190  # ELF e_machine of a cubin


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEDREC_FAST_CACHE_DIR", str(tmp_path))
    return tmp_path / "nvrtc"


@pytest.fixture
def compiles(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``compile_cubin`` replaced by a recorder returning fake cubins; NVRTC's version pinned."""
    calls: list[tuple[str, str]] = []

    def fake_compile(source: str, arch: str) -> bytes:
        calls.append((source, arch))
        return f"cubin of {source} for {arch}".encode()

    monkeypatch.setattr(nvrtc, "compile_cubin", fake_compile)
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "nvrtc 13.0")
    return calls


# ------------------------------------------------------------------------------------------------
# options and cache
# ------------------------------------------------------------------------------------------------
def test_compile_options_target_the_arch_without_fast_math() -> None:
    options = nvrtc.compile_options("sm_90")
    assert "--gpu-architecture=sm_90" in options
    assert "--std=c++17" in options
    relaxed = ("fast_math", "fast-math", "--ftz=true", "--prec-div=false", "--prec-sqrt=false")
    assert not [opt for opt in options if any(flag in opt for flag in relaxed)]


def test_cache_key_covers_source_options_arch_and_compiler() -> None:
    options = nvrtc.compile_options("sm_90")
    keys = {
        cache_key("src", options, "sm_90", "nvrtc 13.0"),
        cache_key("src ", options, "sm_90", "nvrtc 13.0"),
        cache_key("src", (*options, "-lineinfo"), "sm_90", "nvrtc 13.0"),
        cache_key("src", options, "sm_80", "nvrtc 13.0"),
        cache_key("src", options, "sm_90", "nvrtc 13.1"),
    }
    assert len(keys) == 5


def test_cached_cubin_compiles_once_and_writes_only_the_cubin(compiles: list, cache_root: Path) -> None:
    first = nvrtc.cached_cubin("src", "sm_90")
    again = nvrtc.cached_cubin("src", "sm_90")
    assert first == again and first.parent == cache_root
    assert first.name == f"{cache_key('src', nvrtc.compile_options('sm_90'), 'sm_90', 'nvrtc 13.0')}.cubin"
    assert first.read_bytes() == b"cubin of src for sm_90"
    assert compiles == [("src", "sm_90")]
    assert sorted(p.name for p in cache_root.iterdir()) == [first.name]  # no temporary file left


def test_cached_cubin_recompiles_for_new_source_arch_options_or_compiler(
        compiles: list, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = {nvrtc.cached_cubin("src", "sm_90"), nvrtc.cached_cubin("src2", "sm_90"),
             nvrtc.cached_cubin("src", "sm_80")}
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "nvrtc 13.1")
    paths.add(nvrtc.cached_cubin("src", "sm_90"))
    base_options = nvrtc.compile_options
    monkeypatch.setattr(nvrtc, "compile_options", lambda arch: (*base_options(arch), "-lineinfo"))
    paths.add(nvrtc.cached_cubin("src", "sm_90"))
    assert len(paths) == len(compiles) == 5
    assert len(list(cache_root.iterdir())) == 5


def test_cached_cubin_reuses_a_cubin_written_by_another_process(compiles: list, cache_root: Path) -> None:
    key = cache_key("src", nvrtc.compile_options("sm_90"), "sm_90", "nvrtc 13.0")
    cache_root.mkdir(parents=True, exist_ok=True)
    (cache_root / f"{key}.cubin").write_bytes(b"theirs")
    assert nvrtc.cached_cubin("src", "sm_90").read_bytes() == b"theirs"
    assert compiles == []


def test_failed_compile_leaves_no_file(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: str, arch: str) -> bytes:
        raise RuntimeError("NVRTC failed")

    monkeypatch.setattr(nvrtc, "compile_cubin", broken)
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "nvrtc 13.0")
    with pytest.raises(RuntimeError, match="NVRTC failed"):
        nvrtc.cached_cubin("src", "sm_90")
    assert list(cache_root.iterdir()) == []


@pytest.mark.parametrize(("capability", "supported", "expected"), [
    ((9, 0), (75, 80, 86, 89, 90, 100, 120), "sm_90"),
    ((8, 9), (75, 80, 86), "sm_86"),
    ((12, 1), (90, 100, 120), "sm_120"),
])
def test_target_arch_is_the_device_or_an_older_minor_of_its_major(capability, supported, expected) -> None:
    assert nvrtc.target_arch(capability, supported) == expected


def test_target_arch_without_a_compatible_target_names_the_supported_ones() -> None:
    with pytest.raises(RuntimeError, match=r"compute capability 10\.0 .*sm_75, sm_80, sm_90"):
        nvrtc.target_arch((10, 0), (75, 80, 90))


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def _sample_values(kinds: tuple[str, ...]) -> list[int | float]:
    sample = {"ptr": 0x7F00_DEAD_BEE0, "i32": -7, "i64": 3 * 2**40 + 5, "f32": 0.375}
    return [sample[kind] + (i if kind != "f32" else 0) for i, kind in enumerate(kinds)]


@pytest.mark.parametrize("kernel", sorted(KERNEL_SIGNATURES))
def test_kernel_args_types_match_the_abi(kernel: str) -> None:
    kinds = KERNEL_SIGNATURES[kernel]
    values = _sample_values(kinds)
    scalars = nvrtc.kernel_args(kernel, values)
    dtypes = {"ptr": np.uint64, "i32": np.int32, "i64": np.int64, "f32": np.float32}
    assert [type(s) for s in scalars] == [dtypes[kind] for kind in kinds]
    # the scalars' bytes, laid out at the ABI's offsets, are the packed argument buffer
    packed, offsets = pack_args(kernel, values)
    rebuilt = bytearray(len(packed))
    for scalar, offset in zip(scalars, offsets):
        rebuilt[offset:offset + scalar.nbytes] = scalar.tobytes()
    assert bytes(rebuilt) == packed


def test_kernel_args_rejects_wrong_count_unknown_kernel_and_overflow() -> None:
    with pytest.raises(ValueError, match="takes 3 arguments"):
        nvrtc.kernel_args("tedrec_fusion_backward_bias", [1, 2])
    with pytest.raises(KeyError):
        nvrtc.kernel_args("no_such_kernel", [])
    with pytest.raises(OverflowError):
        nvrtc.kernel_args("tedrec_fusion_backward_bias", [1, 2, 2**31])


# ------------------------------------------------------------------------------------------------
# availability
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_check():
    nvrtc.nvrtc_unavailable.cache_clear()
    yield nvrtc.nvrtc_unavailable
    nvrtc.nvrtc_unavailable.cache_clear()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without a GPU")
def test_unavailable_without_a_gpu_says_why(fresh_check) -> None:
    reason = fresh_check()
    assert isinstance(reason, str) and ("CuPy" in reason or "no CUDA device" in reason)


def test_unavailable_without_cupy_names_the_extra(fresh_check, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs", None)
    assert 'pip install "tedrec_fast[cuda' in fresh_check()
    assert 'pip install "tedrec_fast[cuda' in nvrtc.compiler_unavailable()


def test_compiler_unavailable_when_the_nvrtc_library_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> tuple[int, int]:
        raise RuntimeError('Failure finding "libnvrtc.so.13"\n  listdir(...)')

    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.nvrtc = types.SimpleNamespace(getVersion=missing)
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs", libs)
    reason = nvrtc.compiler_unavailable()
    assert 'cannot be loaded (Failure finding "libnvrtc.so.13")' in reason
    assert "nvidia-cuda-nvrtc" in reason


# ------------------------------------------------------------------------------------------------
# loading and launching, against a recording stand-in for CuPy
# ------------------------------------------------------------------------------------------------
class _FakeCupy:
    """The slice of CuPy the loader uses, recording calls with the device and stream current at the time."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.device: int | None = None
        self.stream: int | None = None
        fake = self

        class Device:
            def __init__(self, index: int) -> None:
                self.index = index

            def __enter__(self) -> None:
                self.previous, fake.device = fake.device, self.index

            def __exit__(self, *exc) -> None:
                fake.device = self.previous

        class Stream:
            def __init__(self, handle: int) -> None:
                self.handle = handle

            @classmethod
            def from_external(cls, obj) -> Stream:
                version, handle = obj.__cuda_stream__()
                assert version == 0
                return cls(handle)

            def __enter__(self) -> None:
                self.previous, fake.stream = fake.stream, self.handle

            def __exit__(self, *exc) -> None:
                fake.stream = self.previous

        class Kernel:
            def __init__(self, name: str) -> None:
                self.name = name

            @property
            def max_dynamic_shared_size_bytes(self) -> int:
                raise AssertionError("not read by the loader")

            @max_dynamic_shared_size_bytes.setter
            def max_dynamic_shared_size_bytes(self, value: int) -> None:
                fake.log.append(("smem", self.name, value, fake.device))

            def __call__(self, grid, block, args, shared_mem=0) -> None:
                fake.log.append(("launch", self.name, grid, block, args, shared_mem, fake.device, fake.stream))

        class RawModule:
            def __init__(self, *, path: str) -> None:
                fake.log.append(("load", path, fake.device))

            def get_function(self, name: str) -> Kernel:
                fake.log.append(("get", name, fake.device))
                return Kernel(name)

        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(Device=Device, Stream=Stream)


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> _FakeCupy:
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_launch_converts_args_sets_smem_once_and_uses_device_and_stream(fake_cupy: _FakeCupy) -> None:
    module = nvrtc.NvrtcModule(Path("/cache/k.cubin"), 1)
    kernel = "tedrec_fusion_backward_bias"
    big = 64 * 1024
    module.launch(kernel, (1, 1, 1), (256, 1, 1), 2048, 0xABC, [0x1000, 0x2000, 50])
    module.launch(kernel, (2, 1, 1), (256, 1, 1), big, 0xABC, [0x1000, 0x2000, 50])
    module.launch(kernel, (3, 1, 1), (256, 1, 1), big, 0xDEF, [0x1000, 0x2000, 50])
    module.launch(kernel, (4, 1, 1), (256, 1, 1), big + 16, 0xDEF, [0x1000, 0x2000, 50])
    log = fake_cupy.log
    assert log[0] == ("load", "/cache/k.cubin", 1)
    assert log[1] == ("get", kernel, 1)
    assert [entry for entry in log if entry[0] == "get"] == [log[1]]  # fetched once
    assert [entry for entry in log if entry[0] == "smem"] == [("smem", kernel, big, 1), ("smem", kernel, big + 16, 1)]
    launches = [entry for entry in log if entry[0] == "launch"]
    assert [(e[2], e[5], e[6], e[7]) for e in launches] == [
        ((1, 1, 1), 2048, 1, 0xABC), ((2, 1, 1), big, 1, 0xABC), ((3, 1, 1), big, 1, 0xDEF),
        ((4, 1, 1), big + 16, 1, 0xDEF)]
    args = launches[0][4]
    assert [type(a) for a in args] == [np.uint64, np.uint64, np.int32]
    assert [int(a) for a in args] == [0x1000, 0x2000, 50]
    assert fake_cupy.device is None and fake_cupy.stream is None  # contexts left
    with pytest.raises(ValueError):
        module.launch(kernel, (1, 1, 1), (256, 1, 1), 0, 0xABC, [0x1000])


def test_load_module_compiles_once_and_memoises_per_device(
        fake_cupy: _FakeCupy, compiles: list, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.nvrtc = types.SimpleNamespace(getSupportedArchs=lambda: (80, 90))
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs", libs)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(nvrtc, "_MODULES", {})
    nvrtc._device_cubin.cache_clear()
    try:
        first = nvrtc.load_module(torch.device("cuda", 0))
        assert nvrtc.load_module(torch.device("cuda", 0)) is first
        other = nvrtc.load_module(torch.device("cuda"))  # the current device, 1
        assert other is not first and (first.device_index, other.device_index) == (0, 1)
        assert first.path == other.path and first.path.parent == cache_root
    finally:
        nvrtc._device_cubin.cache_clear()
    assert compiles == [(assemble(nvrtc.ENTRY), "sm_90")]
    assert [entry for entry in fake_cupy.log if entry[0] == "load"] == [
        ("load", str(first.path), 0), ("load", str(first.path), 1)]


# ------------------------------------------------------------------------------------------------
# the real compiler
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_nvrtc() -> str:
    reason = nvrtc.compiler_unavailable()
    if reason is not None:
        pytest.skip(f"NVRTC cannot be loaded here (pip install cupy-cuda13x nvidia-cuda-nvrtc): {reason}")
    return nvrtc.nvrtc_version()


@pytest.mark.parametrize("arch", list(TARGETS), ids=[t.name for t in TARGETS.values()])
def test_nvrtc_compiles_every_kernel_of_csrc_for_each_gpu_target(real_nvrtc: str, arch: int) -> None:
    from cupy_backends.cuda.libs import nvrtc as library

    target = TARGETS[arch]
    assert nvrtc.target_arch(target.capability, library.getSupportedArchs()) == target.name
    cubin = nvrtc.compile_cubin(assemble("spectral_fusion.cu"), target.name)
    assert cubin[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", cubin, 18)[0] == EM_CUDA
    missing = [name for name in KERNEL_SIGNATURES if name.encode() + b"\0" not in cubin]
    assert not missing, f"{real_nvrtc}: kernels missing from the cubin: {missing}"


def test_nvrtc_compile_error_carries_the_program_log(real_nvrtc: str) -> None:
    source = 'extern "C" __global__ void broken(float* x) { x[0] = undeclared_name; }\n'
    with pytest.raises(RuntimeError, match=r"(?s)NVRTC failed to compile broken\.cu for sm_90.*undeclared_name"):
        nvrtc.compile_cubin(source, "sm_90", name="broken.cu")
