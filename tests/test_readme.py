"""The README's commands, as written: every ``tedrec-fast`` command parses, the install commands name extras
that exist, the test command is the one CI runs, the API example runs, and (slow) every command block runs.

The slow test runs each block's commands in order with bash, in a fresh working directory, with small
settings where they train (one epoch of two steps), the package's cache empty at the start (as a new user's), and the
README's ``../shared/data/online_retail.csv.gz`` replaced by the first rows of the real file (so the data
are small but in the real format). ``pip install`` and ``pytest`` lines are not run (the tests install
nothing); the fast tests check them instead.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tedrec_fast.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: the raw Online Retail file beside the checkout, as the README names it (``TEDREC_FAST_TEST_SHARED_DIR``
#: points elsewhere)
SHARED = Path(os.environ.get("TEDREC_FAST_TEST_SHARED_DIR") or REPO.parent / "shared")
RETAIL_ROWS = 40_000
#: flags that set a schedule; the slow test replaces them by SMALL
SCHEDULE_FLAGS = ("--epochs", "--batch-size", "--max-steps-per-epoch", "--max-minutes")
SMALL = ["--epochs", "1", "--batch-size", "32", "--max-steps-per-epoch", "2"]


def fenced_blocks(text: str, lang: str) -> list[tuple[str, str]]:
    """``(heading, body)`` of every fenced block of ``lang``, with the heading it stands under."""
    blocks, heading, body, inside = [], "", [], False
    for line in text.splitlines():
        if not inside and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif not inside and line.strip() == f"```{lang}":
            inside, body = True, []
        elif inside and line.strip() == "```":
            blocks.append((heading, "\n".join(body)))
            inside = False
        elif inside:
            body.append(line)
    return blocks


def block_commands(body: str) -> list[str]:
    """The shell commands of a bash block: continuations joined, comments dropped."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(line.split(" #")[0].strip() if " #" in line else line.strip())
    return commands


def steps(command: str) -> list[list[str]]:
    """A command's ``&&``-separated steps, each as words."""
    return [shlex.split(part) for part in command.split("&&")]


def readme_commands() -> list[str]:
    return [c for _, body in fenced_blocks(README.read_text(), "bash") for c in block_commands(body)]


def cli_argv(words: list[str]) -> list[str] | None:
    """The ``tedrec-fast`` arguments of a step (``tedrec-fast ...`` or ``torchrun ... -m tedrec_fast.cli ...``)."""
    if words[0] == "tedrec-fast":
        return words[1:]
    if words[0] == "torchrun":
        return words[words.index("tedrec_fast.cli") + 1:]
    return None


def test_every_command_is_one_the_tests_know():
    programs = {words[0] for c in readme_commands() for words in steps(c)}
    assert programs <= {"pip", "tedrec-fast", "torchrun", "pytest", "bash"}, programs
    assert not [c for c in readme_commands() if "..." in c], "a README command must be complete, not elided"


def test_every_tedrec_fast_command_parses():
    import argparse

    from tedrec_fast.data.cli import add_prepare_arguments

    for command in readme_commands():
        for words in steps(command):
            argv = cli_argv(words)
            if argv is None or argv[:1] == ["bench"] or argv == ["--help"]:
                continue
            try:
                if argv[0] == "prepare":
                    add_prepare_arguments(argparse.ArgumentParser()).parse_args(argv[1:])
                else:
                    build_parser().parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"README command does not parse ({exc.code}): {command}")


def test_install_commands_name_existing_extras():
    extras = set(importlib.metadata.metadata("tedrec_fast").get_all("Provides-Extra") or [])
    named = set()
    for command in readme_commands():
        for words in steps(command):
            if words[:2] == ["pip", "install"]:
                named |= {m.group(1) for w in words for m in [re.fullmatch(r"-e|\.\[(\w+)\]", w)] if m and m.group(1)}
    assert named and named <= extras, (named, extras)


def test_the_two_commands_install_cpu_torch_first_and_ci_runs_the_test_command():
    first = [c for _, body in fenced_blocks(README.read_text(), "bash")[:1] for c in block_commands(body)]
    assert len(first) == 2 and all(c.startswith("pip install torch --index-url https://download.pytorch.org/whl/cpu")
                                   for c in first)
    test_command = next(c for c in first if "pytest" in c)
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines, ".ci/run must run the README's test command as written"


def test_the_api_example_runs_on_a_cpu():
    """The README's Python block, with its tensors on the CPU (the Triton interpreter and the emulator off)."""
    ((_, code),) = fenced_blocks(README.read_text(), "python")
    code = code.replace('device="cuda"', 'device="cpu"').replace(".cuda()", "")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TEDREC_FAST_CUDA_EMULATE")}
    proc = subprocess.run([sys.executable, "-c", code + "\nassert V.shape == (2048, 50, 300), V.shape\n"],
                          capture_output=True, text=True, env=env, cwd=REPO.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "spectral_fusion" in proc.stdout and "torch " in proc.stdout


def small(words: list[str]) -> list[str]:
    """``train`` / ``compare`` with one epoch of two small steps instead of the block's schedule."""
    argv = cli_argv(words)
    if argv is None or argv[0] not in ("train", "compare") or "--from-records" in argv:
        return words
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in SCHEDULE_FLAGS:
            skip = True
        else:
            out.append(word)
    if words[0] == "torchrun":  # the launcher of this Python (a venv's bin/ may not be on PATH), own port
        out[:1] = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return out + SMALL


def _runnable_blocks() -> list[tuple[str, list[str]]]:
    blocks = []
    for heading, body in fenced_blocks(README.read_text(), "bash"):
        commands = [c for c in block_commands(body) if any(cli_argv(w) for w in steps(c))]
        if commands:
            blocks.append((heading, commands))
    return blocks


def write_own_data(directory: Path) -> None:
    """``ratings.csv`` (userId, movieId, rating, timestamp) and ``movies.csv`` (movieId, title, genres; one movie
    without genres) in ``directory``, from the ml-latest-small-style fixture."""
    import pandas as pd

    fixture = Path(__file__).parent / "fixtures" / "data" / "ml-latest-small" / "ml-latest-small"
    inter = pd.read_csv(f"{fixture}.inter", sep="\t")
    inter.columns = ["userId", "movieId", "rating", "timestamp"]
    inter.to_csv(directory / "ratings.csv", index=False)
    items = pd.read_csv(f"{fixture}.item", sep="\t", dtype=str)
    movies = pd.DataFrame({"movieId": items["item_id:token"], "title": items["movie_title:token_seq"],
                           "genres": items["class:token_seq"]})
    movies.loc[0, "genres"] = None
    movies.to_csv(directory / "movies.csv", index=False)


@pytest.fixture(scope="module")
def small_online_retail(tmp_path_factory) -> Path:
    """A directory whose ``shared/data/online_retail.csv.gz`` holds the first rows of the real file, if found;
    each block runs in a subdirectory of it, so the README's ``../shared/...`` finds the small copy."""
    real = SHARED / "data" / "online_retail.csv.gz"
    root = tmp_path_factory.mktemp("readme")
    if real.is_file():
        (root / "shared" / "data").mkdir(parents=True)
        with gzip.open(real, "rt") as src, gzip.open(root / "shared" / "data" / real.name, "wt") as dst:
            for i, line in enumerate(src):
                if i > RETAIL_ROWS:
                    break
                dst.write(line)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("heading, commands", _runnable_blocks(), ids=[h for h, _ in _runnable_blocks()])
def test_readme_block_runs(heading, commands, small_online_retail, tmp_path):
    """Each command in order, as written apart from the schedule (and pip installs, which are not run)."""
    if any("../shared/" in c for c in commands) and not (small_online_retail / "shared").is_dir():
        pytest.skip(f"the raw Online Retail file is not at {SHARED / 'data'} (TEDREC_FAST_TEST_SHARED_DIR moves it)")
    work = small_online_retail / re.sub(r"\W+", "-", heading).strip("-").lower()
    work.mkdir()
    if heading == "Your own data":  # the user's files the block names: the ml-latest-small-style fixture as CSV
        write_own_data(work)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    # the package's cache as a new user's, empty when the module starts (a warm text cache once hid a missing
    # encoder package); Triton's compile cache stays the tests' own
    env["TEDREC_FAST_CACHE_DIR"] = str(small_online_retail / "cache")
    env.pop("TRITON_INTERPRET", None)
    env.pop("TEDREC_FAST_CUDA_EMULATE", None)
    for command in commands:
        parts = []
        for words in steps(command):
            if words[0] in ("pip", "pytest"):
                continue
            parts.append(shlex.join(small(words)) if small(words) != words else
                         next(p.strip() for p in command.split("&&") if shlex.split(p) == words))
        script = " && ".join(parts)
        proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert proc.returncode == 0, (f"README block {heading!r}: `{command}` (run as `{script}`) failed with "
                                      f"status {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
