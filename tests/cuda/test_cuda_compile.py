"""Compile checks of the CUDA C++ kernels in ``csrc/`` with nvcc alone: no GPU, no CUDA build of torch.

* Every ``csrc/*.cu`` but the extension binding compiles for every GPU target of
  :data:`tedrec_fast.kernels.targets.TARGETS` with ``ptxas -v`` (the 8-rows variant a tuning sweep times: for
  sm_80 and sm_90); a compile error, any register spill or any static shared memory (the kernels take only
  the dynamic shared memory the host sizes per target: tests/ops/spectral_fusion/test_spectral_fusion_cuda.py)
  fails, and a table of registers per kernel is printed (``pytest -s``) and recorded as the test's
  ``registers`` property.
* The one self-contained text that NVRTC gets (:func:`tedrec_fast.cuda.sources.assemble`) compiles on
  its own to a cubin whose kernels are exactly :data:`tedrec_fast.ops.spectral_fusion.abi.KERNEL_SIGNATURES`.

Skipped, saying so, only where no ``nvcc`` is found (``$CUDA_HOME/bin/nvcc``, then ``PATH``). The helpers
(:func:`find_nvcc`, :func:`elf_function_symbols` with pyelftools, ...) serve
tests/cuda/test_cuda_extension_build.py too.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from tedrec_fast.cuda.sources import assemble, csrc_dir
from tedrec_fast.kernels.targets import TARGETS
from tedrec_fast.ops.spectral_fusion.abi import KERNEL_SIGNATURES

ARCHS = tuple(str(arch) for arch in TARGETS)
#: csrc/*.cu compiled on their own; extension.cu needs torch's pybind11 and is built by setup.py
SOURCES = sorted(p.name for p in csrc_dir().glob("*.cu") if p.name != "extension.cu")

STB_GLOBAL = "STB_GLOBAL"


def find_nvcc() -> str | None:
    """``$CUDA_HOME/bin/nvcc`` when it exists, else the ``nvcc`` on ``PATH``, else None."""
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home and os.access(os.path.join(cuda_home, "bin", "nvcc"), os.X_OK):
        return os.path.join(cuda_home, "bin", "nvcc")
    return shutil.which("nvcc")


NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found ($CUDA_HOME/bin/nvcc or PATH): "
                                                     "the CUDA compile checks need the CUDA toolkit's compiler")


def run_nvcc(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``nvcc args`` in ``cwd``; fails the test with nvcc's messages when it exits non-zero."""
    assert NVCC is not None
    result = subprocess.run([NVCC, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"nvcc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def parse_ptxas_verbose(text: str) -> dict[str, dict[str, int]]:
    """Per function of ``ptxas -v`` output: registers (entry functions), stack, spill stores and loads (bytes)."""
    functions: dict[str, dict[str, int]] = {}
    entry = current = None
    for line in text.splitlines():
        if m := re.search(r"Compiling entry function '([^']+)'", line):
            entry = m.group(1)
            functions.setdefault(entry, {})
        elif m := re.search(r"Function properties for (\S+)", line):
            current = m.group(1)
            functions.setdefault(current, {})
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            assert current is not None, f"spill line before any function: {line}"
            stack, stores, loads = map(int, m.groups())
            functions[current].update(stack=stack, spill_stores=stores, spill_loads=loads)
        elif m := re.search(r"Used (\d+) registers", line):
            assert entry is not None, f"register line before any entry function: {line}"
            functions[entry]["registers"] = int(m.group(1))
    return functions


def elf_section_data(image: bytes, name: str) -> bytes | None:
    """The contents of section ``name`` of an ELF image, or ``None`` if it has none."""
    section = ELFFile(io.BytesIO(image)).get_section_by_name(name)
    return None if section is None else section.data()


def elf_function_symbols(image: bytes) -> dict[str, str]:
    """Function symbols of an ELF image (a cubin, a shared object): name -> binding (pyelftools' names).

    ``"STB_GLOBAL"`` for a cubin's kernels; nvcc 13 gives the host launch stubs of kernels internal
    linkage (``"STB_LOCAL"``, in ``.symtab`` only: ``nm`` lists them, ``nm -D`` does not).
    """
    elf = ELFFile(io.BytesIO(image))
    return {
        symbol.name: symbol["st_info"]["bind"]
        for section in elf.iter_sections() if isinstance(section, SymbolTableSection)
        for symbol in section.iter_symbols() if symbol["st_info"]["type"] == "STT_FUNC" and symbol.name
    }


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS, ids=[f"sm_{a}" for a in ARCHS])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("defines", [(), ("TEDREC_ROWS=8",)], ids=["as-shipped", "rows8"])
def test_compiles_without_spills(source: str, arch: str, defines: tuple[str, ...], tmp_path: Path,
                                 record_property) -> None:
    """Also the variant the tuning sweep times (bench/tune_spectral_fusion.py: 8 rows per thread)."""
    if defines and arch not in ("80", "90"):
        pytest.skip("the tuning sweep's variant is checked for sm_80 and sm_90")
    start = time.perf_counter()
    result = run_nvcc(["-gencode", f"arch=compute_{arch},code=sm_{arch}", "-O3", "-Xptxas", "-v", "-c",
                       *(f"-D{d}" for d in defines), str(csrc_dir() / source), "-o", str(tmp_path / "kernels.o")],
                      cwd=tmp_path)
    seconds = time.perf_counter() - start
    functions = parse_ptxas_verbose(result.stdout + result.stderr)
    kernels = {name: f for name, f in functions.items() if "registers" in f}
    assert kernels, f"no entry function in the ptxas output:\n{result.stderr}"
    record_property("registers", {name: f["registers"] for name, f in kernels.items()})
    print(f"\n{source} {' '.join(defines)} for sm_{arch} ({seconds:.1f} s): registers, stack frame and spill "
          "bytes per kernel")
    print(f"  {'kernel':<36} {'regs':>5} {'stack':>6} {'spill st':>9} {'spill ld':>9}")
    for name in sorted(kernels):
        f = kernels[name]
        print(f"  {name:<36} {f['registers']:>5} {f.get('stack', 0):>6} {f.get('spill_stores', 0):>9} "
              f"{f.get('spill_loads', 0):>9}")
    spills = {name: f for name, f in functions.items() if f.get("spill_stores", 0) or f.get("spill_loads", 0)}
    assert not spills, f"register spills in {source} for sm_{arch}: {spills}"
    static = re.findall(r"Used \d+ registers.*?(\d+) bytes smem", result.stdout + result.stderr)
    assert not [b for b in static if int(b)], f"static shared memory in {source} for sm_{arch}: {static}"


@needs_nvcc
def test_nvrtc_text_is_self_contained_and_has_every_kernel(tmp_path: Path) -> None:
    text = assemble("spectral_fusion.cu")
    assert not re.search(r"^\s*#\s*include\b", text, re.M), "the NVRTC text still includes a file"
    # alone in an empty folder: a header it still needed could not be found
    (tmp_path / "tedrec_nvrtc.cu").write_text(text, encoding="utf-8")
    run_nvcc(["-cubin", "-arch=sm_90", "tedrec_nvrtc.cu", "-o", "tedrec_nvrtc.cubin"], cwd=tmp_path)
    symbols = elf_function_symbols((tmp_path / "tedrec_nvrtc.cubin").read_bytes())
    kernels = {name for name, binding in symbols.items() if binding == STB_GLOBAL}
    assert kernels == set(KERNEL_SIGNATURES), (
        f"kernels in the cubin but not in abi.KERNEL_SIGNATURES: {sorted(kernels - set(KERNEL_SIGNATURES))}; "
        f"in KERNEL_SIGNATURES but not in the cubin: {sorted(set(KERNEL_SIGNATURES) - kernels)}")
