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
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]



def _add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    parser.add_argument("--config", help="YAML file of RunConfig/TrainConfig keys (tedrec_fast/config.py)")
    parser.add_argument("--dataset", help="dataset source (ml-100k, ml-1m, online-retail, ...) or prepared directory")
    parser.add_argument("--raw", help="raw file/directory of the source (default: download)")
    if model:
        parser.add_argument("--model", help="tedrec, tedrec-wo-mm, tedrec-wo-ag, tedrec-wo-if, tedrec-wo-tf, sasrec, "
                                            "fmlprec, unisrec, tssr")
    parser.add_argument("--encoder", help="text encoder (default minilm)")
    parser.add_argument("--data-dir", dest="data_dir", help="cache of prepared datasets and text embeddings")
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
    parser.add_argument("--output-dir", dest="output_dir", help="run directory (default runs/<dataset>-<model>)")
    parser.add_argument("--results-dir", dest="results_dir", help="where result records go (bench/results)")
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
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="prepare a dataset (tedrec-fast prepare --help)", add_help=False)
    sub.add_parser("bench", help="GPU benchmark tables from a source checkout (tedrec-fast bench --help)",
                   add_help=False)
    sub.add_parser("backends", help="every backend of every op, and the loaders of the CUDA kernels, on this "
                                    "machine: which run here and why the others don't")
    encode = sub.add_parser("encode", help="encode a dataset's item texts into the cache")
    _add_common(encode)
    train = sub.add_parser("train", help="train a model (no arguments: TedRec on ml-100k)")
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
    """``python -m bench`` of the source checkout this package is installed from (editable installs)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").is_file():
        print("tedrec-fast bench runs the benchmarks of a source checkout (bench/ beside tedrec_fast/); "
              f"none at {root}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from bench.__main__ import main as bench_main

    return bench_main(argv)


def _print_backends() -> None:
    from tedrec_fast.backends import backends
    from tedrec_fast.cuda.loaders import loaders_report

    for op, rows in backends().items():
        print(op)
        for row in rows:
            state = "available" + (f" ({row['detail']})" if row["detail"] else "") if row["available"] else "no"
            print(f"  {row['name']:<14} {state}" + ("" if row["available"] else f": {row['reason']}"))
    print("loaders of the CUDA C++ kernels (backend 'cuda')")
    for row in loaders_report():
        state = "available" if row["available"] else f"no: {row['reason']}"
        print(f"  {row['name']:<14} {row['device_type']} tensors, {state}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tedrec-fast`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        return _prepare(argv[1:])
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "backends":
        _print_backends()
        return 0
    from tedrec_fast.config import load_config
    from tedrec_fast.train import run

    if args.command == "evaluate":
        run.evaluate_run(args.checkpoint, _overrides(args))
        return 0
    cfg = load_config(args.config, _overrides(args))
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


if __name__ == "__main__":
    sys.exit(main())
