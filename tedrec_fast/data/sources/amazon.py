"""Amazon Reviews 2018 (Ni, Li & McAuley): per-category ratings CSV + metadata JSON lines.

Ratings ``{Category}.csv`` (no header: item, user, rating, unix time); exact duplicate rows are dropped.
Metadata ``meta_{Category}.json.gz`` (one JSON object a line). Item text = title, category and brand, each
HTML-unescaped, with quotes and newlines removed, ending in one "."; a field of 2000 characters or more is
left out; items without metadata or with an empty text are dropped.
"""

from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.download import fetch_url
from tedrec_fast.data.sequences import RawInteractions, clean_text
from tedrec_fast.data.sources.common import Source, find_file

MIRRORS = ("https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2", "https://jmcauley.ucsd.edu/data/amazon_v2")
TEXT_FIELDS = ("title", "category", "brand")
MAX_FIELD_CHARS = 2000


def clean_field(value: object) -> str:
    """One metadata field as text: lists joined by spaces, HTML-unescaped, quotes/newlines removed, ending in "."."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = clean_text(html.unescape(str(value or "")).replace('"', "").replace("\n", " ").replace("\r", " "))
    text = text.rstrip(".").rstrip()
    return text + "." if text and len(text) + 1 < MAX_FIELD_CHARS else ""


def item_text(meta: dict) -> str:
    """Title, category and brand of one metadata record, cleaned, joined by spaces."""
    return " ".join(part for part in (clean_field(meta.get(f)) for f in TEXT_FIELDS) if part)


def read_meta(path: Path) -> dict[str, str]:
    """Item texts from a metadata JSON-lines file (gzip or plain)."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                asin = record["asin"]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}, line {number}: not a JSON object with an 'asin' ({err})") from None
            texts.setdefault(str(asin), item_text(record))
    return texts


def read_ratings(path: Path) -> pd.DataFrame:
    """The ratings CSV as ``user, item, timestamp`` without exact duplicates."""
    try:
        frame = pd.read_csv(path, header=None, names=["item", "user", "rating", "timestamp"], dtype=str,
                            keep_default_na=False)
    except pd.errors.ParserError as err:
        raise ValueError(f"{path}: {err}") from None
    timestamp = pd.to_numeric(frame["timestamp"], errors="coerce")
    bad = ~np.isfinite(timestamp.to_numpy(dtype=np.float64)) | (frame["item"] == "") | (frame["user"] == "")
    if bad.any():
        line = int(bad.argmax()) + 1
        raise ValueError(f"{path}, line {line}: expected item,user,rating,unix-time (a finite number)")
    frame = frame.assign(timestamp=timestamp).drop_duplicates(["item", "user", "timestamp"])
    return frame[["user", "item", "timestamp"]].reset_index(drop=True)


def _source(name: str, category: str) -> Source:
    ratings, meta = f"{category}.csv", f"meta_{category}.json.gz"

    def fetch(cache: Path) -> Path:
        fetch_url([f"{m}/categoryFilesSmall/{ratings}" for m in MIRRORS], cache / ratings)
        fetch_url([f"{m}/metaFiles2/{meta}" for m in MIRRORS], cache / meta)
        return cache

    def locate(raw: Path) -> list[Path]:
        if raw.is_file():
            raise FileNotFoundError(f"{raw}: pass the directory holding {ratings} and {meta}")
        return [find_file(raw, [ratings]), find_file(raw, [meta, f"meta_{category}.json"])]

    return Source(
        name=name,
        description=f"Amazon Reviews 2018, {category.replace('_', ' ')}",
        locate=locate,
        read=lambda paths: RawInteractions(read_ratings(paths[0]), read_meta(paths[1])),
        fetch=fetch,
    )


SOURCES = [
    _source("amazon-office", "Office_Products"),
    _source("amazon-food", "Grocery_and_Gourmet_Food"),
    _source("amazon-movies", "Movies_and_TV"),
]
