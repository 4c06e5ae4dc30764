"""Host side of the CUDA C++ backend, no compiler needed: source assembly for NVRTC and argument packing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tedrec_fast.cuda.abi import pack_args, register_kernels, signature
from tedrec_fast.cuda.sources import assemble, csrc_dir, source_files
from tedrec_fast.ops.spectral_fusion.abi import KERNEL_SIGNATURES


def test_assemble_inlines_each_header_once_with_line_markers(tmp_path: Path) -> None:
    (tmp_path / "a.cuh").write_text('#pragma once\n#include "b.cuh"\nint a;\n')
    (tmp_path / "b.cuh").write_text("#pragma once\nint b;\n")
    (tmp_path / "main.cu").write_text('#include "a.cuh"\n#include "b.cuh"\n#include <cstdio>\nint main_;\n')
    text = assemble("main.cu", tmp_path)
    assert text.count("int b;") == 1 and text.count("int a;") == 1
    assert "pragma once" not in text and '#include "' not in text
    assert "#include <cstdio>" in text  # angle includes are left to the compiler
    assert text.index("int b;") < text.index("int a;") < text.index("int main_;")
    assert '#line 1 "a.cuh"' in text and '#line 2 "main.cu"' in text  # messages point at the real lines


def test_assemble_names_file_and_line_of_a_missing_header(tmp_path: Path) -> None:
    (tmp_path / "main.cu").write_text('// x\n#include "missing.cuh"\n')
    with pytest.raises(FileNotFoundError, match=r"main.cu:2: included file 'missing.cuh' not found"):
        assemble("main.cu", tmp_path)


def test_the_package_ships_the_sources() -> None:
    names = {p.relative_to(csrc_dir()).as_posix() for p in source_files()}
    assert {"kernels.cu", "spectral_fusion.cu", "common.cuh", "extension.cu", "emulate/cuda_emulation.h",
            "emulate/emulate.cpp"} <= names
    text = assemble()
    assert '#include "' not in text
    for kernel in KERNEL_SIGNATURES:  # listed by TEDREC_KERNELS (the entry points are macro-generated)
        assert f"X({kernel})" in text


def test_pack_args_aligns_like_c() -> None:
    packed, offsets = pack_args("tedrec_fusion_backward_bias", [0x1122334455667788, 0xAABB, 7])
    assert offsets == [0, 8, 16] and len(packed) == 20
    assert struct.unpack_from("Q", packed, 8)[0] == 0xAABB and struct.unpack_from("i", packed, 16)[0] == 7
    # an i32 followed by an i64 is padded to the i64's alignment
    kinds = KERNEL_SIGNATURES["tedrec_fusion_forward_f32"]
    _, offsets = pack_args("tedrec_fusion_forward_f32", [1] * len(kinds))
    for kind, offset in zip(kinds, offsets):
        assert offset % struct.calcsize({"ptr": "Q", "i64": "q", "i32": "i", "f32": "f"}[kind]) == 0


def test_pack_args_rejects_a_wrong_argument_count() -> None:
    with pytest.raises(ValueError, match="tedrec_fusion_backward_bias takes 3 arguments"):
        pack_args("tedrec_fusion_backward_bias", [1, 2])
    with pytest.raises(KeyError):
        pack_args("no_such_kernel", [])


def test_register_kernels_refuses_unknown_kinds_and_conflicts() -> None:
    register_kernels({"tedrec_fusion_backward_bias": KERNEL_SIGNATURES["tedrec_fusion_backward_bias"]})  # same: ok
    with pytest.raises(ValueError, match="already registered"):
        register_kernels({"tedrec_fusion_backward_bias": ("ptr",)})
    with pytest.raises(ValueError, match="unknown parameter kinds"):
        register_kernels({"tedrec_test_only_kernel": ("ptr", "u8")})
    with pytest.raises(KeyError, match="tedrec_test_only_kernel"):
        signature("tedrec_test_only_kernel")
