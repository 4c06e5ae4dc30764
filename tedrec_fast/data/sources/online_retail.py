"""UCI Online Retail (Chen, Sain & Guo, 2012), prepared as TedRec does (docs/DESIGN.md §4).

user = InvoiceNo, item = StockCode; rows with an empty Description are dropped; interactions are de-duplicated
on (InvoiceNo, StockCode, Quantity, InvoiceDate at minute resolution), keeping the first in file order;
timestamps are minutes (as epoch seconds). Item text = the item's first Description in stable chronological
order, stripped, lower-cased, plus ".". Accepted inputs: the CSV (optionally gzipped; ISO
``YYYY-mm-dd HH:MM:SS`` or Kaggle ``m/d/YYYY H:MM`` dates; UTF-8, or latin-1 as in the Kaggle copy), the UCI
``Online Retail.xlsx``, or the UCI zip.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.download import fetch_url
from tedrec_fast.data.sequences import RawInteractions
from tedrec_fast.data.sources.common import Source, find_file

URLS = ("https://archive.ics.uci.edu/static/public/352/online+retail.zip",)
COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate"]
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M")
CANDIDATES = ["online_retail.csv.gz", "online_retail.csv", "Online Retail.xlsx", "online+retail.zip"]


def _load_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            member = next((m for m in archive.namelist() if m.endswith((".xlsx", ".csv"))), None)
            if member is None:
                raise ValueError(f"{path}: no .xlsx or .csv member")
            data = io.BytesIO(archive.read(member))
        suffix = Path(member).suffix
    else:
        data, suffix = path, path.suffixes[0] if path.suffixes else ""
    if suffix == ".xlsx":
        return pd.read_excel(data, engine="openpyxl", dtype=object)
    compression = "infer" if data is path else None
    try:
        try:
            return pd.read_csv(data, dtype=str, keep_default_na=False, compression=compression)
        except UnicodeDecodeError:  # the Kaggle copy is latin-1
            if not isinstance(data, Path):
                data.seek(0)
            return pd.read_csv(data, dtype=str, keep_default_na=False, compression=compression, encoding="latin-1")
    except pd.errors.ParserError as err:
        raise ValueError(f"{path}: {err}") from None


def _as_text(column: pd.Series) -> pd.Series:
    """Strings from CSV cells or Excel values (integral floats lose their ``.0``; missing becomes "")."""
    if pd.api.types.is_string_dtype(column) and column.dtype != object:
        return column.fillna("").str.strip().astype(object)

    def convert(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return column.map(convert).astype(object)


def _parse_dates(path: Path, column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
    else:
        values = _as_text(column.map(lambda v: v.isoformat(sep=" ") if hasattr(v, "isoformat") else v)
                          if column.dtype == object else column)
        parsed = pd.to_datetime(values, format=DATE_FORMATS[0], errors="coerce")
        for fmt in DATE_FORMATS[1:]:
            missing = parsed.isna()
            parsed = parsed.where(~missing, pd.to_datetime(values.where(missing), format=fmt, errors="coerce"))
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise ValueError(f"{path}, line {bad[0] + 2}: InvoiceDate {column.iloc[bad[0]]!r} is not a date "
                         f"in any of the formats {DATE_FORMATS}")
    return parsed


def read(paths: list[Path]) -> RawInteractions:
    """Read the Online Retail table into de-duplicated interactions and first-seen item descriptions."""
    path = paths[0]
    table = _load_table(path)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}, line 1: missing columns {missing}")
    frame = pd.DataFrame({c: _as_text(table[c]) for c in ("InvoiceNo", "StockCode", "Description")})
    quantity = pd.to_numeric(table["Quantity"], errors="coerce")
    bad = np.flatnonzero(quantity.isna().to_numpy())
    if len(bad):
        raise ValueError(f"{path}, line {bad[0] + 2}: Quantity {table['Quantity'].iloc[bad[0]]!r} is not a number")
    minute = _parse_dates(path, table["InvoiceDate"]).dt.floor("min")
    frame["Quantity"] = quantity
    frame["timestamp"] = (minute - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    frame = frame[frame["Description"] != ""]
    frame = frame.drop_duplicates(["InvoiceNo", "StockCode", "Quantity", "timestamp"])
    chronological = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")]
    first = chronological.drop_duplicates("StockCode")
    texts = dict(zip(first["StockCode"], first["Description"].str.strip().str.lower() + ".", strict=True))
    interactions = frame[["InvoiceNo", "StockCode", "timestamp"]].set_axis(["user", "item", "timestamp"], axis=1)
    return RawInteractions(interactions.reset_index(drop=True), texts)


def fetch(cache: Path) -> Path:
    """Download the UCI zip (holding ``Online Retail.xlsx``) into ``cache``."""
    return fetch_url(URLS, cache / "online+retail.zip")


SOURCE = Source(
    name="online-retail",
    description="UCI Online Retail: user = invoice, item = stock code, text = description",
    locate=lambda raw: [find_file(raw, CANDIDATES)],
    read=read,
    fetch=fetch,
)
