"""Test setup: without a GPU, the Triton interpreter runs every kernel on CPU tensors.

``TRITON_INTERPRET`` must be set before any kernel module is imported (``triton.jit`` reads it when a
kernel is defined), so it is set here, in the first file pytest loads. With a GPU the same kernel tests
run on the device. Likewise the CUDA C++ kernels run on the CPU emulator without a GPU.

The tests write nothing into the user's caches: Triton's cache (``TRITON_CACHE_DIR``) and the package's
(``TEDREC_FAST_CACHE_DIR``: downloads, compiled emulator and NVRTC modules) go under one directory in the
temp dir, kept between runs so compiled kernels are reused (``TEDREC_FAST_TEST_CACHE_DIR`` moves it).
``pytest -m slow`` runs the exhaustive sweeps and long emulator runs that the default run leaves out.
"""

import getpass
import importlib.metadata
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from tedrec_fast.paths import CACHE_ENV, cache_dir

#: the user's own cache, before the tests move it (for a test asked to fill it, e.g. the extension build);
#: passed to xdist's workers in the environment, since theirs already names the tests' cache
USER_CACHE_DIR = Path(os.environ.setdefault("TEDREC_FAST_TEST_USER_CACHE_DIR", str(cache_dir())))
#: where the tests' caches go (set before xdist starts its workers, which inherit it)
TEST_CACHE_DIR = Path(os.environ.get("TEDREC_FAST_TEST_CACHE_DIR")
                      or Path(tempfile.gettempdir()) / f"tedrec_fast-tests-{getpass.getuser()}")
os.environ[CACHE_ENV] = str(TEST_CACHE_DIR / "tedrec_fast")
os.environ["TRITON_CACHE_DIR"] = str(TEST_CACHE_DIR / "triton")


def _load_installed_kernels_package() -> None:
    """Import the PyPI package ``kernels`` (a dependency of recent transformers) from its installed files.

    pytest puts the repository root on ``sys.path`` for the ``tests`` package, where the top-level
    ``kernels/`` folder (installed as ``tedrec_fast.kernels``) would shadow it, and transformers' import of
    ``kernels`` would fail (``python -m ...`` run from the repository root does the same; the
    ``tedrec-fast`` command does not).
    """
    try:
        dist = importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return
    package = Path(dist.locate_file("kernels"))
    if "kernels" in sys.modules or not (package / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location("kernels", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels"] = module
    spec.loader.exec_module(module)


_load_installed_kernels_package()

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # the CUDA C++ kernels run on CPU tensors through their emulator (tedrec_fast.cuda.emulator)
    os.environ.setdefault("TEDREC_FAST_CUDA_EMULATE", "1")

#: where kernel tests run: the GPU when there is one, else CPU tensors under the interpreter
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

#: tests that run only under ``pytest -m slow`` (file, test id pattern, why), beside those decorated with
#: ``@pytest.mark.slow`` (tests/kernels/test_aot_compile.py marks its own): the exhaustive parts of sweeps and
#: the long compiler and emulator runs, each taking
#: 10-260 s on the 2-core CPU (``--durations``, 2026-12-07). A representative case of each stays in the
#: default run.
SLOW_TESTS = (
    ("test_spectral_fusion_cuda.py",
     r"test_every_chunk_width_and_the_size_limits\[emulator-(1-4-2048|2-129-3|1-257-9)\]",
     "emulator at the size limits (n = 512 stays)"),
    ("test_spectral_fusion_cuda.py", r"test_hypothesis_shapes\[emulator\]", "hypothesis sweep on the emulator"),
    ("test_spectral_fusion_cuda.py", r"test_float32\[emulator-(1|2|3|7)-40-3\]",
     "emulator at d = 40 for short sequences (n = 50 stays, and d = 1, 17 for all n)"),
    ("test_spectral_fusion.py", r"test_triton_float32\[100-300-", "interpreter at n = 100, d = 300"),
    ("test_spectral_fusion.py", r"test_triton_hypothesis_shapes", "hypothesis sweep on the interpreter"),
    ("test_spectral_fusion.py", r"test_triton_other_dtypes\[50-300-",
     "16-bit and fp64 at d = 300 (every dtype at n = 100, d = 64 stays)"),
    ("test_spectral_fusion.py", r"test_triton_gradcheck_float64\[(2-1-2|1-5-2|1-2-2|1-33-1)\]",
     "more gradchecks (one stays; 1-33-1, TedRec's padded length: 25 s)"),
    ("test_spectral_fusion.py", r"test_triton_size_limits\[1-3-2048\]", "interpreter at d = 2048"),
    ("test_tune_full_catalog_ce.py", r"test_swept_bf16_kernels_compile_for_sm90",
     "compiles of the catalog sweep's variants"),
    ("test_tune_spectral_fusion.py", r"test_swept_eight_warp_kernels_compile_for_sm90",
     "compiles of the fusion sweep's 8-warp variants"),
    ("test_models_tedrec.py", r"test_torch_compile_matches_eager", "torch.compile of the whole model on a CPU"),
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: exhaustive sweeps and long emulator runs; run with `pytest -m slow`")


def _mark_slow_tests(items: list[pytest.Item]) -> None:
    """Add the ``slow`` marker to :data:`SLOW_TESTS`; warn about a pattern of a collected file that matches nothing."""
    files = {item.path.name for item in items}
    for file, pattern, why in SLOW_TESTS:
        matched = [item for item in items if item.path.name == file and re.match(pattern, item.name)]
        for item in matched:
            item.add_marker(pytest.mark.slow(reason=why))
        if file in files and not matched:
            warnings.warn(f"conftest.SLOW_TESTS: no test of {file} matches {pattern!r}", stacklevel=1)


@pytest.hookimpl(tryfirst=True)  # before the -m selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_slow_tests(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
