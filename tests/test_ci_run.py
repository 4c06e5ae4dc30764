"""``.ci/run``'s control flow, with a stand-in interpreter whose venvs hold stub pip/pytest/python commands.

The stubs log their arguments and exit with the status the test chooses (``FAKE_README_STATUS`` for the
README's ``pytest -n auto``, ``FAKE_SLOW_STATUS`` for ``pytest -m slow``), so the stages, the pinned stack,
pytest's exit 5 and the exit status are checked without installing anything.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"

_STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
if [ "$(basename "$0")" = pytest ] || [[ "$*" == "-m pytest"* ]]; then
    case "$*" in *"-m slow"*) exit "${FAKE_SLOW_STATUS:-0}" ;; *) exit "${FAKE_README_STATUS:-0}" ;; esac
fi
exit 0
"""

_FAKE_PYTHON = """#!/usr/bin/env bash
# only `python -m venv DIR` is asked of the interpreter: make DIR a venv of stubs
dir="$3"; mkdir -p "$dir/bin"
for tool in python pip pytest; do cp "$FAKE_STUB" "$dir/bin/$tool"; chmod +x "$dir/bin/$tool"; done
echo "PATH=\\"$dir/bin:\\$PATH\\"" > "$dir/bin/activate"
"""


def run_ci(tmp_path: Path, *args: str, readme: int = 0, slow: int = 0) -> tuple[int, list[str]]:
    stub, python, log = tmp_path / "stub", tmp_path / "python", tmp_path / "log"
    stub.write_text(_STUB)
    python.write_text(_FAKE_PYTHON)
    for path in (stub, python):
        path.chmod(0o755)
    log.write_text("")
    env = dict(os.environ, PYTHON=str(python), FAKE_STUB=str(stub), FAKE_LOG=str(log), TMPDIR=str(tmp_path),
               FAKE_README_STATUS=str(readme), FAKE_SLOW_STATUS=str(slow))
    proc = subprocess.run(["bash", str(CI_RUN), *args], env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, log.read_text().splitlines()


def test_both_stages_run_the_readme_command_then_the_slow_tests_once(tmp_path):
    status, calls = run_ci(tmp_path)
    assert status == 0
    pytest_calls = [c for c in calls if c.startswith("pytest") or "-m pytest" in c]
    assert pytest_calls == ["pytest -n auto", "pytest -n auto", "python -m pytest -n auto -m slow"]
    assert any("torch==2.13.0 triton==3.6.0 numpy<2.4" in c for c in calls)  # the pinned stack, second
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in calls
    assert "pip install -e .[test]" in calls


@pytest.mark.parametrize("readme, slow, expected", [(1, 0, 1), (5, 0, 1), (0, 1, 1), (0, 5, 0), (0, 2, 1)])
def test_exit_status(tmp_path, readme, slow, expected):
    status, _ = run_ci(tmp_path, readme=readme, slow=slow)
    assert status == expected


def test_options(tmp_path):
    status, calls = run_ci(tmp_path, "--no-slow", "--no-pinned")
    assert status == 0 and [c for c in calls if "pytest" in c] == ["pytest -n auto"]
    status, calls = run_ci(tmp_path, "--no-pinned")
    assert status == 0 and [c for c in calls if "pytest" in c] == ["pytest -n auto", "python -m pytest -n auto -m slow"]
    assert run_ci(tmp_path, "--bogus")[0] == 2


def test_the_default_run_leaves_slow_tests_to_pytest_m_slow():
    """pyproject's ``-m 'not slow'`` plus conftest.SLOW_TESTS: the slow cases are collected only under -m slow."""
    import sys

    def collected(*args: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly",
                               "tests/cuda/test_cuda_extension_build.py", "tests/models/test_models_tedrec.py", *args],
                              capture_output=True, text=True, cwd=CI_RUN.parents[1], timeout=300)
        return [line for line in proc.stdout.splitlines() if "::" in line]

    slow = {"tests/cuda/test_cuda_extension_build.py::test_cuda_extension_builds_and_loads",
            "tests/models/test_models_tedrec.py::test_torch_compile_matches_eager"}
    default = collected()
    assert default and not slow & set(default)
    assert set(collected("-m", "slow")) == slow
