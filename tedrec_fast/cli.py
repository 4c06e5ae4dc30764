"""``tedrec-fast``: prepare data, encode item texts, train and evaluate.

    tedrec-fast prepare ...                    # delegates to tedrec_fast.data.cli
    tedrec-fast encode [--dataset ml-100k] [--encoder minilm]
    tedrec-fast train [--config FILE] [flags]  # no flags: TedRec on ml-100k, MiniLM texts, cuda or cpu
    tedrec-fast evaluate --checkpoint PATH
    tedrec-fast compare [--dataset online-retail] [--models sasrec,unisrec,tssr,tedrec] [flags]
    tedrec-fast compare --dataset online-retail --from-records bench/results/train_*.json   # no training
    torchrun --nproc_per_node N -m tedrec_fast.cli train ...   # data parallel
    torchrun --nproc_per_node N -m tedrec_fast.cli train --catalog-parallel ...   # item table sharded

Settings are resolved as packaged defaults < ``--config`` YAML < flags (one schema for ``train``, ``compare``
and ``evaluate``: :mod:`tedrec_fast.config`). On a CPU, ``train`` uses a short schedule for the settings not
given (see :mod:`tedrec_fast.train.run`).

Nothing heavy (torch) is imported before the arguments are parsed, so ``--help`` answers at once. A user's
mistake (``ValueError``, ``TypeError``, ``OSError``, a failed download) ends in one line on stderr and exit
status 2; ``--debug`` or ``TEDREC_FAST_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "DEBUG_ENV"]

#: set to 1 to see the traceback of a user's mistake instead of its one-line message
DEBUG_ENV = "TEDREC_FAST_DEBUG"

#: ``train --help``: the CPU schedule (the values of tedrec_fast.config.CPU_SCHEDULE; a test keeps them equal,
#: without importing torch here)
TRAIN_EPILOG = """\
on a CPU (no --device cuda, no GPU): the settings you do not give by flag or --config are replaced by a
time-budgeted schedule so that the default run ends in about ten minutes:
  --epochs 100 --batch-size 128 --lr 0.001 --max-steps-per-epoch 40 --max-minutes 9.0
(each epoch: 40 steps, then full-sort validation; no epoch starts after 9 minutes; the best valid epoch is
tested). It is a short run, not the paper's result. The paper's schedule (use a GPU):
  tedrec-fast train --epochs 300 --batch-size 2048 --max-steps-per-epoch 0
directories (printed at the start of a run): --data-dir (default: the cache, $TEDREC_FAST_CACHE_DIR or
~/.cache/tedrec_fast) holds each prepared dataset in <data-dir>/<dataset>/ and text/; --output-dir (default:
./runs/<dataset>-<model>, relative to the current directory) the checkpoints and log.jsonl; --results-dir
(default: ./bench/results, relative to the current directory) the result records.
"""


def _add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    parser.add_argument("--config", help="YAML file of RunConfig/TrainConfig keys (tedrec_fast/config.py)")
    parser.add_argument("--dataset", help="dataset source (ml-100k, ml-1m, online-retail, ...) or prepared directory")
    parser.add_argument("--raw", help="raw file/directory of the source (default: download)")
    if model:
        parser.add_argument("--model", help="tedrec, tedrec-wo-mm, tedrec-wo-ag, tedrec-wo-if, tedrec-wo-tf, sasrec, "
                                            "fmlprec, unisrec, tssr")
    parser.add_argument("--encoder", help="text encoder (default minilm)")
    parser.add_argument("--data-dir", dest="data_dir",
                        help="prepared datasets (<data-dir>/datasets) and text embeddings (<data-dir>/text); "
                             "default: the cache directory")
    parser.add_argument("--device", help="auto (default: cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-seq-length", dest="max_seq_length", type=int, help="history length (default 50)")


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="maximum epochs (paper: 300)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="global batch size (paper: 2048)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (paper: 1e-3)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--patience", type=int, help="early-stopping patience on valid NDCG@10 (paper: 10)")
    parser.add_argument("--grad-clip", dest="grad_clip", type=float, help="clip the gradient norm")
    parser.add_argument("--max-steps-per-epoch", dest="max_steps_per_epoch", type=int,
                        help="cap optimizer steps per epoch (0: no cap)")
    parser.add_argument("--max-minutes", dest="max_minutes", type=float,
                        help="wall-clock budget: start no epoch after this many minutes, then test the best weights")
    parser.add_argument("--output-dir", dest="output_dir", help="run directory (default ./runs/<dataset>-<model>)")
    parser.add_argument("--results-dir", dest="results_dir", help="where result records go (default ./bench/results)")
    for flag, text in (("resume", "continue the run in --output-dir from its last checkpoint"),
                       ("bf16", "bfloat16 autocast"), ("deterministic", "deterministic algorithms"),
                       ("record", "append a result record even on CPU")):
        parser.add_argument(f"--{flag}", action="store_true", default=None, help=text)
    _add_eval_flags(parser)


#: backend flags: (flags, op of tedrec_fast.config.OpBackends, choices); their dest is ``backends.<op>``
_BACKEND_FLAGS = (
    (("--spectral-fusion-backend", "--fusion-backend"), "spectral_fusion", "auto, triton, cuda or torch"),
    (("--spectral-filter-backend",), "spectral_filter", "auto, triton or torch"),
    (("--full-catalog-ce-backend", "--loss-backend"), "full_catalog_ce", "auto, triton, torch-chunked or torch"),
    (("--moe-modulation-backend",), "moe_modulation", "auto, triton, cpp or torch"),
)
_BACKENDS_PREFIX = "backends."


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    for flags, op, choices in _BACKEND_FLAGS:
        parser.add_argument(*flags, dest=_BACKENDS_PREFIX + op, metavar="NAME",
                            help=f"backend of {op} for every model that runs it: {choices} (default auto)")


def _add_eval_flags(parser: argparse.ArgumentParser) -> None:
    _add_backend_flags(parser)
    parser.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, help="users per scoring chunk")
    parser.add_argument("--mask-history", dest="mask_history", action="store_true", default=None,
                        help="score the input sequence's items -inf (RecBole does not)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``tedrec-fast`` argument parser."""
    parser = argparse.ArgumentParser(prog="tedrec-fast", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,  # read by main() from argv
                        help=f"show the traceback of an error instead of one line (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="prepare a dataset (tedrec-fast prepare --help)", add_help=False)
    sub.add_parser("bench", help="GPU benchmark tables from a source checkout (tedrec-fast bench --help)",
                   add_help=False)
    sub.add_parser("backends", help="every backend of every op, and the loaders of the CUDA kernels, on this "
                                    "machine: which run here and why the others don't")
    encode = sub.add_parser("encode", help="encode a dataset's item texts into the cache")
    _add_common(encode)
    train = sub.add_parser("train", help="train a model (no arguments: TedRec on ml-100k)", epilog=TRAIN_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(train)
    _add_train(train)
    train.add_argument("--catalog-parallel", dest="catalog_parallel", action="store_true", default=None,
                       help="under torchrun: shard the item table across the processes instead of the batch")
    evaluate = sub.add_parser("evaluate", help="evaluate a saved run on valid and test")
    evaluate.add_argument("--checkpoint", required=True, help="best.pt, last.pt or a run directory")
    evaluate.add_argument("--device")
    evaluate.add_argument("--data-dir", dest="data_dir")
    _add_eval_flags(evaluate)
    compare = sub.add_parser("compare", help="train several models on the same data and tabulate their test metrics")
    _add_common(compare, model=False)
    _add_train(compare)
    compare.add_argument("--models", default=None,
                         help="comma-separated model names (default sasrec,unisrec,tssr,tedrec); the table and "
                              "chart go to --output-dir (default runs/compare-<dataset>)")
    compare.add_argument("--from-records", dest="from_records", nargs="+", metavar="FILE", default=None,
                         help="train nothing: tabulate the last 'op': 'train' record of each model on --dataset "
                              "in these result files (bench/results/train_*.json)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items()
              if k not in ("command", "config", "checkpoint", "models", "from_records") and v is not None}
    backends = {k.removeprefix(_BACKENDS_PREFIX): values.pop(k) for k in list(values) if k.startswith(_BACKENDS_PREFIX)}
    if backends:
        values["backends"] = backends
    if values.get("max_steps_per_epoch") == 0:
        values["max_steps_per_epoch"] = None
    return values


def _explicit(args: argparse.Namespace) -> set[str]:
    from tedrec_fast.config import read_config_file

    keys = {k for k, v in vars(args).items() if v is not None}
    if args.config:
        keys |= set(read_config_file(args.config))
    return keys


def _prepare(argv: list[str]) -> int:
    from tedrec_fast.data.cli import add_prepare_arguments, run_prepare

    parser = argparse.ArgumentParser(prog="tedrec-fast prepare", description="Prepare a dataset.")
    add_prepare_arguments(parser)
    return int(run_prepare(parser.parse_args(argv)) or 0)


def _bench(argv: list[str]) -> int:
    """``python -m bench`` of the source checkout this package is installed from (editable installs only).

    The benchmarks are development code beside the package, not part of it: they run in a child process
    with the checkout on ``PYTHONPATH``; without a checkout this says so and returns 2.
    """
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").is_file():
        print("tedrec-fast: error: bench needs a source checkout (an editable install, pip install -e .): "
              f"the benchmarks live in bench/ beside tedrec_fast/, and there is none at {root}", file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    return subprocess.call([sys.executable, "-m", "bench", *argv], env=env)


def _print_directories(cfg: Any, command: str) -> None:
    """Say where data, cache, run and records are (absolute paths); only the first process under torchrun."""
    from tedrec_fast.paths import cache_dir

    if os.environ.get("RANK", "0") != "0":
        return
    dirs = {"data": Path(cfg.data_dir).expanduser(), "cache": cache_dir()}
    if command == "train":
        dirs["run"] = cfg.run_dir
    elif command == "compare":
        dirs["runs"] = Path(cfg.output_dir) if cfg.output_dir else Path("runs") / f"compare-{Path(cfg.dataset).stem}"
    if command in ("train", "compare"):
        dirs["results"] = Path(cfg.results_dir)
    print(" | ".join(f"{name} {path.absolute()}" for name, path in dirs.items()), flush=True)


def _run(args: argparse.Namespace) -> int:
    if args.command == "backends":
        from tedrec_fast import backends

        print(backends())
        return 0
    from tedrec_fast.config import load_config
    from tedrec_fast.train import run

    if args.command == "evaluate":
        run.evaluate_run(args.checkpoint, _overrides(args))
        return 0
    cfg = load_config(args.config, _overrides(args))
    _print_directories(cfg, args.command)
    if args.command == "encode":
        run.encode_run(cfg)
    elif args.command == "compare":
        from tedrec_fast.train.compare import DEFAULT_MODELS, compare_recorded, compare_run

        if args.from_records:
            compare_recorded(cfg, args.from_records, args.models)
        else:
            compare_run(cfg, args.models or DEFAULT_MODELS, _explicit(args))
    else:
        run.train_run(cfg, _explicit(args))
    return 0


def _is_user_error(exc: BaseException) -> bool:
    """A mistake the user can fix from the message alone: bad input, a missing file, a failed download, an
    optional package that is not installed (an import error inside the package itself is a bug)."""
    download = sys.modules.get("tedrec_fast.data.download")
    download_error = getattr(download, "DownloadError", None)
    if isinstance(exc, ImportError):
        return not (exc.name or "").startswith("tedrec_fast")
    return isinstance(exc, (ValueError, TypeError, OSError)) or (
        download_error is not None and isinstance(exc, download_error))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tedrec-fast`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    A user's mistake prints ``tedrec-fast: error: <message>`` on stderr and returns 2; with ``--debug`` (anywhere
    in ``argv``) or ``TEDREC_FAST_DEBUG=1`` it is raised with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        if argv[:1] == ["prepare"]:
            return _prepare(argv[1:])
        if argv[:1] == ["bench"]:
            return _bench(argv[1:])
        return _run(build_parser().parse_args(argv))
    except Exception as exc:
        if debug or not _is_user_error(exc):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"tedrec-fast: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("tedrec-fast: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # only a run that may have joined a process group imported it
            from tedrec_fast.train.distributed import leave_process_group

            leave_process_group()


if __name__ == "__main__":
    sys.exit(main())
