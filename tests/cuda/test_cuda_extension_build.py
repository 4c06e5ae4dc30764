"""A real ``CUDAExtension`` build of ``tedrec_fast._C`` on a machine with nvcc but no GPU.

``setup.py build_ext`` runs with ``TEDREC_FAST_BUILD_CUDA=1`` under a CUDA build of torch (torch==2.14.1,
CUDA 13.0) installed with ``pip --target`` into ``<the user's cache>/torch-cuda-build/<versions>`` (not the
tests' temporary cache): paid once per machine, about 4 GB on disk. Building needs only torch's headers and
libraries, but setup.py imports torch, and a CUDA build of torch imports only with
the CUDA libraries it links (cuDNN, cuBLAS, NCCL, ...): those wheels are installed too, without their
dependencies. The compiler is the machine's CUDA toolkit (``$CUDA_HOME``, else the one ``nvcc`` runs from).

Checks: the module exists; its host code has a launch stub for every kernel of
:data:`tedrec_fast.ops.spectral_fusion.abi.KERNEL_SIGNATURES`; its fat binary holds a cubin for every GPU target of the
table (sm_80 ... sm_120) defining exactly those kernels, and compute_120 PTX; imported (after that torch),
``kernel_names()`` lists them and
``launch`` raises KeyError / ValueError / RuntimeError (naming the kernel and the CUDA error) as documented.

Opt-in, since it installs 4 GB into the user's cache: runs only with ``TEDREC_FAST_TEST_EXTENSION_BUILD=1``
(and under ``-m slow``). Skipped, saying why, otherwise, without nvcc or a CUDA 13 toolkit, or when the CUDA
torch is neither cached nor installable (offline, no such wheel for this Python, no disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tedrec_fast.ops.spectral_fusion.abi import KERNEL_SIGNATURES
from tests.conftest import USER_CACHE_DIR
from tests.cuda.test_cuda_compile import STB_GLOBAL, elf_function_symbols, elf_section_data, find_nvcc

ENABLE_ENV = "TEDREC_FAST_TEST_EXTENSION_BUILD"
REPO = Path(__file__).resolve().parents[2]

TORCH = "torch==2.14.1"
CUDA_MAJOR = 13
#: what the CUDA build of torch loads when imported: the CUDA libraries its wheel depends on, at the
#: versions it pins, less cuSOLVER and NVTX (loaded lazily, header-only); its Python dependencies are
#: those of the CPU torch installed here
RUNTIME = (
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cuda-cupti==13.0.85",
    "nvidia-cublas==13.1.1.3",
    "nvidia-cufft==12.0.0.61",
    "nvidia-cufile==1.15.1.6",
    "nvidia-curand==10.4.0.35",
    "nvidia-cusparse==12.6.3.3",
    "nvidia-nvjitlink>=13.0.88,<14",
    "nvidia-cudnn-cu13==9.24.0.43",
    "nvidia-cusparselt-cu13==0.8.1",
    "nvidia-nccl-cu13==2.30.7",
    "nvidia-nvshmem-cu13==3.4.5",
)
INSTALL_BYTES = 6 * 2**30  # 4.0 GiB installed, plus pip's unpacking

#: (kind, arch) of the images setup.py's -gencode flags put in the fat binary with CUDA 13: a cubin for
#: every target of tedrec_fast.kernels.targets.TARGETS and the PTX of the newest
FATBIN_IMAGES = {("cubin", 80), ("cubin", 86), ("cubin", 89), ("cubin", 90), ("cubin", 100), ("cubin", 120),
                 ("ptx", 120)}
_FATBIN_MAGIC = 0xBA55ED50
_FATBIN_KINDS = {1: "ptx", 2: "cubin"}


def cuda_toolkit() -> Path | None:
    """The CUDA toolkit directory: ``$CUDA_HOME`` when it has ``include/cuda_runtime.h``, else the one
    ``nvcc`` runs from (its ``TOP``, which a wrapper script in ``/usr/local/bin`` does not hide)."""
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home and (Path(cuda_home) / "include" / "cuda_runtime.h").is_file():
        return Path(cuda_home)
    nvcc = find_nvcc()
    if nvcc is None:
        return None
    result = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"^#\$ TOP=(.+)$", result.stdout + result.stderr, re.M)
    top = Path(os.path.realpath(match.group(1).strip())) if match else None
    return top if top and (top / "include" / "cuda_runtime.h").is_file() else None


def toolkit_cuda_major(toolkit: Path) -> int | None:
    match = re.search(r"^#define\s+CUDART_VERSION\s+(\d+)",
                      (toolkit / "include" / "cuda_runtime_api.h").read_text(errors="replace"), re.M)
    return int(match.group(1)) // 1000 if match else None


def fatbin_images(fatbin: bytes) -> list[tuple[str, int, bytes]]:
    """(kind, sm arch, payload) of each image in a ``.nv_fatbin`` section (one or more fat binaries)."""
    images = []
    offset = 0
    while offset + 16 <= len(fatbin):
        magic, _version, header_size, size = struct.unpack_from("<IHHQ", fatbin, offset)
        if magic != _FATBIN_MAGIC:
            break
        entry, end = offset + header_size, offset + header_size + size
        while entry < end:
            kind, _version, entry_header, payload = struct.unpack_from("<HHIQ", fatbin, entry)
            (arch,) = struct.unpack_from("<I", fatbin, entry + 28)
            start = entry + entry_header
            images.append((_FATBIN_KINDS.get(kind, f"kind {kind}"), arch, fatbin[start:start + payload]))
            entry = start + payload
        offset = (end + 7) // 8 * 8
    return images


@pytest.fixture(scope="module")
def toolkit() -> Path:
    if os.environ.get(ENABLE_ENV, "").strip() != "1":
        pytest.skip(f"installs a CUDA torch (4 GB) into {USER_CACHE_DIR}: set {ENABLE_ENV}=1 to run it")
    toolkit = cuda_toolkit()
    if toolkit is None:
        pytest.skip("no CUDA toolkit (nvcc with include/cuda_runtime.h; $CUDA_HOME or PATH): nothing to build with")
    if toolkit_cuda_major(toolkit) != CUDA_MAJOR:
        pytest.skip(f"the CUDA toolkit at {toolkit} is not CUDA {CUDA_MAJOR}, the CUDA of {TORCH}")
    return toolkit


@pytest.fixture(scope="module")
def cuda_torch(toolkit: Path) -> Path:
    """A ``--target`` folder holding the CUDA build of torch and the libraries its import loads, cached."""
    requirements = (TORCH, *RUNTIME)
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    python = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    root = USER_CACHE_DIR / "torch-cuda-build" / f"{TORCH.replace('==', '-')}-{python}-{key}"
    root.parent.mkdir(parents=True, exist_ok=True)
    marker = root / "INSTALLED"
    if marker.is_file():
        return root
    not_cached = f"{TORCH} (CUDA {CUDA_MAJOR}) is not cached under {root.parent}"
    free = shutil.disk_usage(root.parent).free
    if free < INSTALL_BYTES:
        pytest.skip(f"{not_cached} and installing it needs {INSTALL_BYTES / 2**30:.0f} GiB; "
                    f"{free / 2**30:.1f} GiB free there")
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                             "--disable-pip-version-check", "--target", str(partial), *requirements],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.skip(f"{not_cached} and pip could not install it (offline, or no wheel for this Python or "
                    f"platform?): {result.stderr.strip()[-600:]}")
    marker_text = json.dumps({"requirements": requirements, "install_s": round(time.perf_counter() - start, 1)})
    (partial / "INSTALLED").write_text(marker_text)
    try:
        partial.rename(root)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    for stale in root.parent.glob("*/INSTALLED"):  # 4 GB each: drop those of other versions
        if stale.parent != root:
            shutil.rmtree(stale.parent, ignore_errors=True)
    print(f"\ninstalled {TORCH} and its CUDA libraries into {root} in {time.perf_counter() - start:.0f} s")
    return root


_LOAD_CHECK = textwrap.dedent("""
    import importlib.util, json, sys
    import torch  # first: the extension links torch's and CUDA's libraries, which torch loads
    from tedrec_fast.cuda.abi import pack_args
    spec = importlib.util.spec_from_file_location("tedrec_fast._C", sys.argv[1])
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)

    def error(*args):
        try:
            ext.launch(*args)
        except Exception as exc:
            return [type(exc).__name__, str(exc)]
        return None

    packed, offsets = pack_args("tedrec_fusion_backward_bias", [0, 0, 4])
    print(json.dumps({
        "torch": [torch.__version__, torch.version.cuda],
        "doc": ext.__doc__,
        "names": ext.kernel_names(),
        "unknown": error("no_such_kernel", (1, 1, 1), (1, 1, 1), 0, 0, packed, offsets),
        "offset": error("tedrec_fusion_backward_bias", (1, 1, 1), (256, 1, 1), 0, 0, packed, offsets + [99]),
        # 2048 threads per block: an invalid launch on any GPU; without one every CUDA call fails
        "launch": error("tedrec_fusion_backward_bias", (1, 1, 1), (2048, 1, 1), 0, 0, packed, offsets),
        # 300 KiB of dynamic shared memory: the opt-in fails on any GPU (227 KiB at most on an H100)
        "smem": error("tedrec_fusion_backward_bias", (1, 1, 1), (256, 1, 1), 300 * 1024, 0, packed, offsets),
    }))
""")


@pytest.mark.slow
def test_cuda_extension_builds_and_loads(toolkit: Path, cuda_torch: Path, tmp_path: Path, record_property) -> None:
    # only what setup.py needs to build the extension, copied: the checkout stays untouched
    for name in ("setup.py", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "csrc", tmp_path / "csrc", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(cuda_torch), env.get("PYTHONPATH")])),
        CUDA_HOME=str(toolkit),
        PATH=os.pathsep.join([str(toolkit / "bin"), env.get("PATH", "")]),
        # after the toolkit's own include directory (CUDAExtension's -I): the CUDA headers torch's wheels bring
        CPATH=os.pathsep.join(filter(None, [env.get("CPATH"), str(cuda_torch / "nvidia" / "cu13" / "include")])),
        TEDREC_FAST_BUILD_CUDA="1",
        TORCH_CUDA_ARCH_LIST="9.0",  # unused: setup.py passes its own -gencode flags
    )
    start = time.perf_counter()
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "lib", "--build-temp", "build"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    build_s = time.perf_counter() - start
    assert build.returncode == 0, f"setup.py build_ext failed:\n{build.stdout[-6000:]}\n{build.stderr[-6000:]}"
    built = sorted((tmp_path / "lib" / "tedrec_fast").glob("_C*.so"))
    assert len(built) == 1, f"expected one tedrec_fast/_C*.so, found {built}:\n{build.stdout[-3000:]}"
    so = built[0]
    image = so.read_bytes()

    # host side: a launch stub per kernel (local symbols with nvcc 13, so `nm` lists them, `nm -D` does not)
    stubs = set(elf_function_symbols(image))
    assert set(KERNEL_SIGNATURES) <= stubs, f"no host stub for {sorted(set(KERNEL_SIGNATURES) - stubs)}"

    # device side: the fat binary's images, and the kernels each cubin defines
    fatbin = elf_section_data(image, ".nv_fatbin")
    assert fatbin is not None, f"no .nv_fatbin section in {so.name}"
    images = fatbin_images(fatbin)
    assert {(kind, arch) for kind, arch, _ in images} == FATBIN_IMAGES
    for kind, arch, payload in images:
        if kind != "cubin":
            continue
        assert payload[:4] == b"\x7fELF", f"the sm_{arch} cubin is not a plain ELF image (compressed?)"
        kernels = {name for name, binding in elf_function_symbols(payload).items() if binding == STB_GLOBAL}
        assert kernels == set(KERNEL_SIGNATURES), f"sm_{arch} cubin kernels: {sorted(kernels)}"

    # imported under the CUDA torch: the module's table and its errors
    start = time.perf_counter()
    load = subprocess.run([sys.executable, "-c", _LOAD_CHECK, str(so)], env=env, capture_output=True, text=True,
                          timeout=300)
    load_s = time.perf_counter() - start
    assert load.returncode == 0, f"importing the extension failed:\n{load.stdout}\n{load.stderr[-4000:]}"
    report = json.loads(load.stdout.strip().splitlines()[-1])
    assert report["torch"][1] and report["torch"][1].startswith(f"{CUDA_MAJOR}.")
    assert "cudaLaunchKernel" in report["doc"]
    assert sorted(report["names"]) == sorted(KERNEL_SIGNATURES)
    assert report["unknown"][0] == "KeyError" and "no_such_kernel" in report["unknown"][1]
    assert report["offset"][0] == "ValueError" and "99" in report["offset"][1]
    # without a GPU the first CUDA call fails: the launch itself, or (above 48 KiB of shared memory) the
    # device query before the one-time opt-in
    for case, call in (("launch", "cudaLaunchKernel"), ("smem", "cudaGetDevice")):
        kind, message = report[case]
        assert kind == "RuntimeError" and "tedrec_fusion_backward_bias" in message and call in message, report[case]

    record_property("build_s", round(build_s, 1))
    print(f"\nbuilt {so.name} ({so.stat().st_size / 2**20:.1f} MiB) in {build_s:.0f} s under torch "
          f"{report['torch'][0]} (CUDA {report['torch'][1]}), nvcc from {toolkit}; import and launch checks "
          f"{load_s:.0f} s; launch without a usable GPU: {report['launch'][1]}")
