"""One importer for any interactions table: RecBole atomic ``.inter`` (+ ``.item``), CSV or Parquet.

A :class:`TableSpec` names the interactions file, its user, item and timestamp columns, and optionally an item
table with its item-id column and the columns whose values make up an item's text. The text of an item is its
non-empty text fields, stripped, joined by spaces, plus ``"."`` (MovieLens-style ``"title year genres."``); an
item missing some fields gets the text of those it has, an item the item table does not list (or whose fields
are all empty) has no text and its interactions are dropped, as for every source. Without an item table an
item's text is its id. The preparation rules that follow are those of :mod:`tedrec_fast.data.sequences`.

Tables are read with pyarrow (columnar, no Python loop over rows). Ids are read as strings (a Parquet integer
column is turned into its decimal strings); a float id column is an error, since ``1.0`` and ``1`` would differ.
Timestamps must be finite numbers: a ``timestamp:token`` atomic field or a string column is parsed as numbers,
a Parquet timestamp column becomes epoch seconds. Errors name the file and the line (CSV and atomic files; a
Parquet file's row).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from tedrec_fast.data.sequences import RawInteractions

FORMATS = ("auto", "atomic", "csv", "parquet")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_SUFFIXES = (".inter", ".item", ".atomic")


@dataclass(frozen=True)
class TableSpec:
    """Where an interactions table is and which columns hold what (see the module docstring)."""

    inter: str
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    item_table: str | None = None
    item_id: str | None = None  # the item table's id column (default: ``item``)
    text: tuple[str, ...] = ()  # item-table columns joined into the text (default: all but the id)
    format: str = "auto"
    sep: str = ","  # CSV delimiter

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        for name in ("user", "item", "timestamp"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"the {name} column name must be a non-empty string, got {getattr(self, name)!r}")
        if len(self.sep) != 1:
            raise ValueError(f"sep must be one character, got {self.sep!r}")
        object.__setattr__(self, "text", tuple(self.text))

    def describe(self) -> dict:
        """The settings that shape the prepared output (for the content hash)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("inter", "item_table")}


def read_table_config(path: str | Path) -> dict:
    """A small YAML (or JSON) config: keys of :class:`TableSpec` (``inter``, ``user``, ``item``, ``timestamp``,
    ``item_table``, ``item_id``, ``text``, ``format``, ``sep``); relative paths are relative to the config file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML/JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of TableSpec settings, got {type(config).__name__}")
    known = {f.name for f in fields(TableSpec)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("inter", "item_table"):
        if config.get(key) is not None:
            config[key] = str((path.parent / str(config[key])).resolve())
    if isinstance(config.get("text"), str):
        config["text"] = [c.strip() for c in config["text"].split(",") if c.strip()]
    return config


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    return "atomic" if any(s in ATOMIC_SUFFIXES for s in suffixes) else "csv"


def _text_lines(path: Path) -> io.TextIOWrapper:
    """``path`` as UTF-8 text lines, decompressed when its name ends in .gz, .bz2, .zst, ... (as pyarrow reads it)."""
    return io.TextIOWrapper(pa.input_stream(str(path), compression="detect"), encoding="utf-8", errors="replace",
                            newline="")


def _first_bad_line(path: Path, delimiter: str, n_fields: int, quoting: int) -> str:
    """Where the first row with the wrong number of fields is (only on the error path: a Python scan)."""
    with _text_lines(path) as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter, quoting=quoting), 1):
            if len(row) != n_fields:
                return f"line {number}: expected {n_fields} fields, found {len(row)}"
    return "a malformed row"


def _read_delimited(path: Path, delimiter: str, atomic: bool, wanted: list[str]) -> tuple[pa.Table, dict[str, str]]:
    """The ``wanted`` columns of a CSV or atomic file as strings, and the atomic field types (empty for CSV)."""
    types: dict[str, str] = {}
    with _text_lines(path) as handle:
        header = handle.readline().rstrip("\r\n")
    if "\ufffd" in header:
        raise ValueError(f"{path}, line 1: not valid UTF-8")
    if not header:
        raise ValueError(f"{path}, line 1: empty, expected a header line")
    if atomic:
        names = []
        for spec in header.split(delimiter):
            name, sep, ftype = spec.partition(":")
            if not sep or not name or ftype not in ATOMIC_TYPES:
                raise ValueError(f"{path}, line 1: bad header field {spec!r}; expected name:type, type in "
                                 f"{ATOMIC_TYPES}")
            names.append(name)
            types[name] = ftype
    else:
        names = next(csv.reader([header], delimiter=delimiter))
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{path}, line 1: no column {missing[0]!r}; the columns are {names}")
    quote = False if atomic else '"'
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=quote),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, strings_can_be_null=False,
                                                 column_types={c: pa.string() for c in wanted}),
        )
    except pa.ArrowInvalid as err:
        if "Expected" in str(err) and "columns" in str(err):
            where = _first_bad_line(path, delimiter, len(names), csv.QUOTE_NONE if atomic else csv.QUOTE_MINIMAL)
            raise ValueError(f"{path}, {where}") from None
        raise ValueError(f"{path}: {err}") from None
    return table, types


def _read_columns(path: Path, spec: TableSpec, wanted: list[str]) -> tuple[pa.Table, dict[str, str], str]:
    """The ``wanted`` columns of ``path``, the atomic field types, and how rows are named in errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = _format_of(path, spec.format)
    if fmt == "parquet":
        try:
            schema = pq.read_schema(path)
            missing = [c for c in wanted if c not in schema.names]
            if missing:
                raise ValueError(f"{path}: no column {missing[0]!r}; the columns are {schema.names}")
            return pq.read_table(path, columns=wanted), {}, "row"
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    table, types = _read_delimited(path, "\t" if fmt == "atomic" else spec.sep, fmt == "atomic", wanted)
    return table, types, "line"


def _column_names(path: Path, spec: TableSpec) -> list[str]:
    """The column names of a table file (without the atomic ``:type``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = _format_of(path, spec.format)
    if fmt == "parquet":
        try:
            return pq.read_schema(path).names
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    with _text_lines(path) as handle:
        header = handle.readline().rstrip("\r\n")
    if fmt == "atomic":
        return [spec.partition(":")[0] for spec in header.split("\t")]
    return next(csv.reader([header], delimiter=spec.sep), [])


def _where(path: Path, unit: str, row: int) -> str:
    return f"{path}, line {row + 2}" if unit == "line" else f"{path}, row {row + 1}"


def _ids(path: Path, unit: str, table: pa.Table, name: str, types: dict[str, str]) -> pa.DictionaryArray:
    """An id column, dictionary-encoded, its dictionary non-empty strings (integer ids are encoded first and
    only the distinct values turned into strings)."""
    column = table.column(name).combine_chunks()
    if types.get(name, "token") != "token" or pa.types.is_floating(column.type):
        declared = f"{name}:{types[name]}" if name in types else f"{name} ({column.type})"
        raise ValueError(f"{path}, line 1: the id field {declared} must hold tokens (e.g. {name}:token), not "
                         "numbers: 1.0 and 1 would be different ids")
    if column.null_count:
        raise ValueError(f"{_where(path, unit, pc.index(pc.is_null(column), True).as_py())}: {name} is empty")
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary
    if not pa.types.is_string(dictionary.type) and not pa.types.is_large_string(dictionary.type):
        dictionary = pc.cast(dictionary, pa.string())
    empty = pc.equal(pc.utf8_length(dictionary), 0)
    if pc.any(empty).as_py():
        row = pc.index(encoded.indices, pc.index(empty, True).as_py()).as_py()
        raise ValueError(f"{_where(path, unit, row)}: {name} is empty")
    return pa.DictionaryArray.from_arrays(encoded.indices, dictionary)


def _timestamps(path: Path, unit: str, column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A timestamp column as finite float64 seconds (numbers, numeric strings or Parquet timestamps)."""
    column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = pc.divide(pc.cast(pc.cast(column, pa.timestamp("ns")), pa.int64()), 1e9)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            values = pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            text = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
            values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
            bad = np.flatnonzero(np.isnan(values) & ~text.str.strip().str.lower().isin(["nan", "+nan", "-nan"]))
            if len(bad):
                raise ValueError(f"{_where(path, unit, bad[0])}: {name} {text.iloc[bad[0]]!r} is not a number "
                                 "(timestamps must be numbers, e.g. unix seconds)") from None
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        raise ValueError(f"{path}: the timestamp column {name!r} has type {column.type}, expected numbers")
    values = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{_where(path, unit, bad[0])}: {name} is {float(values[bad[0]])!r}, not a finite number")
    return values


def _categorical(encoded: pa.DictionaryArray) -> pd.Categorical:
    return pd.Categorical.from_codes(encoded.indices.to_numpy(zero_copy_only=False),
                                     pd.Index(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object))


def _item_texts(spec: TableSpec) -> dict[str, str] | None:
    """Item id -> text from the item table (``None`` without one)."""
    if spec.item_table is None:
        return None
    path = Path(spec.item_table)
    id_column = spec.item_id or spec.item
    text_columns = list(spec.text) or [c for c in _column_names(path, spec) if c != id_column]
    table, types, unit = _read_columns(path, spec, [id_column, *text_columns])
    ids = _ids(path, unit, table, id_column, types).cast(pa.string()).to_pylist()
    parts = [pc.fill_null(pc.utf8_trim_whitespace(pc.cast(table.column(c), pa.string())), "").to_pylist()
             for c in text_columns]
    texts: dict[str, str] = {}
    for item, *values in zip(ids, *parts, strict=True):
        joined = " ".join(v for v in values if v)
        texts.setdefault(item, joined + "." if joined else "")
    return texts


def read_table(spec: TableSpec) -> RawInteractions:
    """Read the interactions (and item texts) a :class:`TableSpec` describes."""
    path = Path(spec.inter)
    wanted = list(dict.fromkeys([spec.user, spec.item, spec.timestamp]))
    table, types, unit = _read_columns(path, spec, wanted)
    if table.num_rows == 0:
        raise ValueError(f"{path}: no interactions (only a header)")
    users = _ids(path, unit, table, spec.user, types)
    items = _ids(path, unit, table, spec.item, types)
    times = _timestamps(path, unit, table.column(spec.timestamp), spec.timestamp)
    del table
    frame = pd.DataFrame({"user": _categorical(users), "item": _categorical(items), "timestamp": times})
    texts = _item_texts(spec)
    if texts is None:
        categories = frame["item"].cat.categories
        texts = dict(zip(categories, categories, strict=True))
    return RawInteractions(frame, texts)


def table_inputs(spec: TableSpec) -> list[Path]:
    """The files a :class:`TableSpec` reads (for hashing)."""
    return [Path(spec.inter)] + ([Path(spec.item_table)] if spec.item_table is not None else [])
