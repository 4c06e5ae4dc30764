"""The ``prepare`` sub-command: ``tedrec-fast prepare SOURCE [--raw PATH] --out DIR``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from tedrec_fast.data.prepare import dataset_counts, prepare_dataset
from tedrec_fast.data.sources import SOURCES

COUNT_KEYS = ("users", "items", "interactions", "train", "valid", "test")


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``prepare`` arguments (source, --raw, --out, --max-seq-length) to ``parser``."""
    parser.add_argument("source", choices=sorted(SOURCES), help="public source to prepare")
    parser.add_argument("--raw", default=None, help="raw file or directory (default: download into the cache)")
    parser.add_argument("--out", required=True, help="data root; the dataset is written to OUT/SOURCE")
    parser.add_argument("--max-seq-length", type=int, default=50, help="history length kept per row (default 50)")
    return parser


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare the dataset named by parsed ``args``, print its directory and counts; return the exit status."""
    directory = prepare_dataset(args.source, args.out, raw=args.raw, max_seq_length=args.max_seq_length)
    counts = dataset_counts(directory)
    print(directory)
    print(" ".join(f"{key}={counts[key]}" for key in COUNT_KEYS))
    return 0


def prepare_main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: parse ``argv`` and run :func:`run_prepare`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = add_prepare_arguments(argparse.ArgumentParser(prog="tedrec-fast prepare", description=__doc__))
    return run_prepare(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(prepare_main())
