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
import sys
import tempfile
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: exhaustive sweeps and long emulator runs; run with `pytest -m slow`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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
