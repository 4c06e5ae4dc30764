"""Reading and writing RecBole atomic files.

An atomic file is UTF-8 text, tab-separated, with one header line of ``name:type`` fields. Supported types:
``token`` (a string without whitespace), ``token_seq`` (space-separated tokens), ``float``. Pre-split
sequential files ``{ds}.train.inter`` / ``.valid.inter`` / ``.test.inter`` have the fields
``user_id:token item_id_list:token_seq item_id:token``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.storage import atomic_write_bytes

FIELD_TYPES = ("token", "token_seq", "float")
SPLIT_FIELDS = ("user_id:token", "item_id_list:token_seq", "item_id:token")
_BAD_TOKEN = re.compile(r"\s")
_LINE_BREAK = re.compile(r"[\t\n\r]")


def _header(path: Path) -> str:
    with open(path, "rb") as handle:
        line = handle.readline()
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}, line 1: not valid UTF-8 ({err.reason})") from None


def _parse_header(path: Path, line: str) -> list[tuple[str, str]]:
    if not line:
        raise ValueError(f"{path}, line 1: empty, expected a tab-separated name:type header")
    fields = []
    for spec in line.split("\t"):
        name, sep, ftype = spec.partition(":")
        if not sep or not name or ftype not in FIELD_TYPES:
            raise ValueError(f"{path}, line 1: bad header field {spec!r}; expected name:type, type in {FIELD_TYPES}")
        fields.append((name, ftype))
    return fields


def _locate_error(path: Path, data: bytes, n_fields: int) -> None:
    """Scan ``data`` (the bytes of ``path``) line by line; raise a ``ValueError`` at the first bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 ({err.reason})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines[1:], 2):
        found = len(line.rstrip("\r").split("\t"))
        if found != n_fields:
            raise ValueError(f"{path}, line {number}: expected {n_fields} tab-separated fields, found {found}")


def read_atomic(path: str | Path, expected: Sequence[str] | None = None) -> pd.DataFrame:
    """Read an atomic file into a DataFrame whose columns are the field names (without ``:type``).

    ``token`` and ``token_seq`` columns hold strings (a ``token_seq`` stays space-joined), ``float`` columns
    hold float64. Row ``r`` of the frame is line ``r + 2`` of the file. ``expected`` (``name:type`` strings)
    requires exactly that header. Malformed input raises ``ValueError`` naming the file and the line.
    """
    path = Path(path)
    header = _header(path)
    fields = _parse_header(path, header)
    if expected is not None and header.split("\t") != list(expected):
        raise ValueError(f"{path}, line 1: header {header!r} differs from the expected {chr(9).join(expected)!r}")
    names = [name for name, _ in fields]
    data = path.read_bytes()
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if data.count(b"\t") != n_lines * (len(fields) - 1):
        _locate_error(path, data, len(fields))
    try:
        frame = pd.read_csv(io.BytesIO(data), sep="\t", quoting=csv.QUOTE_NONE, dtype=str, na_filter=False, header=0,
                            names=names, skip_blank_lines=False, encoding="utf-8", engine="c")
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        _locate_error(path, data, len(fields))
        raise ValueError(f"{path}: {err}") from None
    for name, ftype in fields:
        col = frame[name]
        if ftype == "float":
            number = pd.to_numeric(col, errors="coerce")
            bad = (number.isna() & (col.str.strip().str.lower() != "nan")).to_numpy()
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{path}, line {r + 2}: field {name!r} is not a number: {col.iloc[r]!r}")
            frame[name] = number.astype("float64")
        elif ftype == "token" and (_BAD_TOKEN.search("\0".join(values := col.tolist())) or not all(values)):
            r = next(r for r, v in enumerate(values) if not v or _BAD_TOKEN.search(v))
            raise ValueError(f"{path}, line {r + 2}: token field {name!r} is empty or has whitespace: {col.iloc[r]!r}")
    return frame


def _column_strings(path: Path, field: str, values: Sequence[object]) -> list[str]:
    ftype = _parse_header(path, field)[0][1]
    if ftype == "float":
        numbers = np.asarray(values, dtype=np.float64)
        if np.all(np.isfinite(numbers)) and np.array_equal(numbers, np.round(numbers)):
            return numbers.astype(np.int64).astype(str).tolist()
        return [repr(float(v)) for v in numbers]
    if ftype == "token_seq":
        strings = [v if isinstance(v, str) else " ".join(v) for v in values]
    else:
        strings = list(map(str, values))
    bad = _BAD_TOKEN if ftype == "token" else _LINE_BREAK
    if bad.search("\0".join(strings)) or (ftype == "token" and not all(strings)):
        row = next(r for r, v in enumerate(strings) if bad.search(v) or (ftype == "token" and not v))
        problem = "is empty or holds whitespace" if ftype == "token" else "holds a tab or a newline"
        raise ValueError(f"{path}: row {row + 1} of column {field!r} {problem}: {strings[row]!r}")
    return strings


def write_atomic(path: str | Path, columns: Mapping[str, Sequence[object]]) -> None:
    """Write an atomic file atomically (temp file + rename). Keys are ``name:type``; values are columns.

    ``token_seq`` values may be strings or sequences of tokens. Values containing tabs or newlines (or,
    for ``token``, any whitespace) raise ``ValueError``.
    """
    path = Path(path)
    cols = [_column_strings(path, field, values) for field, values in columns.items()]
    if len({len(c) for c in cols}) > 1:
        raise ValueError(f"{path}: columns have different lengths")
    lines = ["\t".join(columns), *map("\t".join, zip(*cols, strict=True))]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"), point="prepare")
