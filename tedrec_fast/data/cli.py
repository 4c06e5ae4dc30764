"""The ``prepare`` sub-command: a preset source, or any interactions table.

    tedrec-fast prepare SOURCE [--raw PATH] --out DIR
    tedrec-fast prepare table --inter FILE [--item FILE] [--user-col C] [--item-col C] [--time-col C]
                              [--item-id-col C] [--text-cols A,B] [--config FILE] [--name NAME] --out DIR
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from tedrec_fast.data.sources import SOURCES
from tedrec_fast.data.table import FORMATS, TableSpec, read_table_config

COUNT_KEYS = ("users", "items", "interactions", "train", "valid", "test")
TABLE = "table"
#: table flags -> TableSpec fields
TABLE_FLAGS = {"inter": "inter", "item": "item_table", "user_col": "user", "item_col": "item", "time_col": "timestamp",
               "item_id_col": "item_id", "text_cols": "text", "format": "format", "sep": "sep"}


def _epilog() -> str:
    presets = "\n".join(f"  {name:<15} {SOURCES[name].description}" for name in sorted(SOURCES))
    return (f"presets (SOURCE):\n{presets}\n\n"
            f"any interactions table (SOURCE = {TABLE}): RecBole atomic .inter (+ .item), CSV or Parquet\n"
            "  tedrec-fast prepare table --inter log.csv --user-col user --item-col item --time-col ts \\\n"
            "      --item items.csv --item-id-col item --text-cols title,genres --out data\n"
            "  tedrec-fast prepare table --config mydata.yaml --out data   (keys: inter, item_table, user, item,\n"
            "      timestamp, item_id, text, format, sep; flags override the config)\n"
            "  An item's text joins the text fields it has; items missing from the item table are dropped;\n"
            "  without --item an item's text is its id. The dataset is written to OUT/NAME (default NAME: the\n"
            "  interactions file's name without suffixes).")


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``prepare`` arguments (a preset or ``table`` with its column flags) to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog()
    parser.add_argument("source", choices=[*sorted(SOURCES), TABLE], metavar="SOURCE",
                        help=f"a preset ({', '.join(sorted(SOURCES))}) or '{TABLE}' for any interactions table")
    parser.add_argument("--raw", default=None, help="preset: raw file or directory (default: download into the cache)")
    parser.add_argument("--out", required=True, help="data root; the dataset is written to OUT/NAME")
    parser.add_argument("--max-seq-length", type=int, default=50,
                        help="history length of the RecBole split files (default 50; >= 1)")
    parser.add_argument("--no-recbole-export", dest="recbole_export", action="store_false",
                        help="write only the compact files and the item text (skip NAME.inter and the "
                             "NAME.train/valid/test.inter files: large logs)")
    table = parser.add_argument_group(f"{TABLE} options")
    table.add_argument("--config", default=None, help="YAML/JSON file of table settings")
    table.add_argument("--name", default=None, help="dataset name (default: the interactions file's stem)")
    table.add_argument("--inter", default=None, help="interactions file (.inter, .csv[.gz], .parquet)")
    table.add_argument("--item", default=None, help="item table (optional)")
    table.add_argument("--user-col", default=None, help="user column (default user_id)")
    table.add_argument("--item-col", default=None, help="item column (default item_id)")
    table.add_argument("--time-col", default=None, help="timestamp column, numeric (default timestamp)")
    table.add_argument("--item-id-col", default=None, help="item table's id column (default: --item-col)")
    table.add_argument("--text-cols", default=None,
                       help="comma-separated item-table columns making the text (default: all but the id)")
    table.add_argument("--format", default=None, choices=FORMATS, help="file format (default: by suffix)")
    table.add_argument("--sep", default=None, help="CSV delimiter (default ,)")
    return parser


def table_spec(args: argparse.Namespace) -> TableSpec:
    """The :class:`TableSpec` of parsed ``args``: the ``--config`` file's settings, overridden by flags."""
    settings = read_table_config(args.config) if args.config else {}
    for flag, key in TABLE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            settings[key] = [c.strip() for c in value.split(",") if c.strip()] if flag == "text_cols" else value
    if not settings.get("inter"):
        raise ValueError("prepare table: give the interactions file with --inter (or 'inter' in --config)")
    return TableSpec(**settings)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare the dataset named by parsed ``args``, print its directory and counts; return the exit status."""
    from tedrec_fast.data.prepare import dataset_counts, prepare_dataset, prepare_table  # torch: not for --help

    if args.source == TABLE:
        if args.raw is not None:
            raise ValueError("--raw: only for a preset; 'prepare table' reads --inter (and --item)")
        directory = prepare_table(table_spec(args), args.out, name=args.name, max_seq_length=args.max_seq_length,
                                  recbole_export=args.recbole_export)
    else:
        given = [f"--{flag.replace('_', '-')}" for flag in (*TABLE_FLAGS, "config", "name")
                 if getattr(args, flag, None) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for 'prepare {TABLE}', not for the preset {args.source!r}")
        directory = prepare_dataset(args.source, args.out, raw=args.raw, max_seq_length=args.max_seq_length,
                                    recbole_export=args.recbole_export)
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
