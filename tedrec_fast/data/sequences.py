"""The source-independent preparation rules (docs/DESIGN.md §4).

1. Interactions of items without text are dropped; user and item tokens have whitespace runs replaced by ``_``.
2. Iterative k-core (default 5) on users and items, on interaction counts, until stable.
3. Per user, interactions in stable chronological order (ties keep the source order).
4. Every prefix is a sample: the item at position ``p >= 1`` is the target of the history ``items[:p]``
   truncated to its most recent ``max_seq_length`` items. Leave-one-out: the last item of each user is the
   test target, the one before the valid target, all earlier targets (``1 <= p <= len - 3``) are training rows.
5. Users are ordered by their first interaction (global stable chronological order). Rows are written user by
   user, by position. Item indices ``1..n_items-1`` follow the order of first appearance when the train, valid
   and test files are read in that order, each row's history left to right and then its target; index 0 is
   padding. :func:`tedrec_fast.data.loading.load_dataset` re-derives exactly this order when a directory has
   no text file.

Everything after the token clean-up works on integer codes (vectorised numpy), so that tens of millions of
interactions fit in a few GB; a source may hand its user and item columns over as ``pandas.Categorical``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.atomic import SPLIT_FIELDS, write_atomic
from tedrec_fast.data.storage import atomic_write_via

PAD_TOKEN = "[PAD]"
SPLITS = ("train", "valid", "test")
_WHITESPACE = re.compile(r"\s+")
#: users per chunk when streaming the RecBole export
EXPORT_USERS_PER_CHUNK = 50_000


@dataclass
class RawInteractions:
    """What a source reader returns: ``frame`` has columns ``user``, ``item`` (str, or a ``pandas.Categorical`` of
    str) and ``timestamp`` (finite numbers) in source order; ``item_text`` maps an item token to its text."""

    frame: pd.DataFrame
    item_text: dict[str, str]


@dataclass
class PreparedSequences:
    """Filtered, ordered sequences: user ``u``'s items (chronological) are ``items[offsets[u]:offsets[u + 1]]``."""

    user_tokens: list[str]
    item_tokens: list[str]  # index-aligned, item_tokens[0] = PAD_TOKEN
    item_text: list[str]  # index-aligned, item_text[0] = ""
    offsets: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (n_interactions,) int32 item index of each position
    times: np.ndarray  # (n_interactions,) timestamp of each position
    max_seq_length: int

    @property
    def lengths(self) -> np.ndarray:
        """Interactions per user."""
        return np.diff(self.offsets)

    def rows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``split``'s rows as (global target position, history length), user by user, by position."""
        return split_rows_of(self.offsets, split, self.max_seq_length)

    def counts(self) -> dict[str, int]:
        """Users, items (without padding), interactions and rows per split."""
        counts = {"users": len(self.user_tokens), "items": len(self.item_tokens) - 1, "interactions": len(self.items)}
        counts.update({split: len(self.rows(split)[0]) for split in SPLITS})
        return counts


def split_rows_of(offsets: np.ndarray, split: str, max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (global target position, history length) of ``split`` for the users whose sequences start at
    ``offsets[:-1]`` and end at ``offsets[1:]`` (any contiguous run of users)."""
    lengths = np.diff(offsets)
    starts = offsets[:-1]
    if split == "train":
        counts = np.maximum(lengths - 3, 0)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        return np.repeat(starts, counts) + within, np.minimum(within, max_seq_length)
    back = {"valid": 2, "test": 1}[split]
    present = lengths >= back
    pos = (lengths - back)[present]
    return starts[present] + pos, np.minimum(pos, max_seq_length)


def clean_token(token: str) -> str:
    """A token usable in an atomic file: stripped, whitespace runs replaced by ``_``."""
    return _WHITESPACE.sub("_", token.strip())


def clean_tokens(tokens: pd.Series) -> pd.Series:
    """:func:`clean_token` applied to a Series of strings (vectorised)."""
    tokens = tokens.astype(str)
    if tokens.str.contains(r"\s", regex=True).any():
        tokens = tokens.str.strip().str.replace(_WHITESPACE.pattern, "_", regex=True)
    return tokens.astype(object)


def clean_text(text: str) -> str:
    """Text usable in an atomic ``token_seq`` field: whitespace runs (tabs, newlines) collapsed to one space."""
    return _WHITESPACE.sub(" ", text).strip()


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the interactions kept by the iterative k-core on users and items (integer codes)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_count = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_count = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new_keep = keep & (user_count[users] >= k) & (item_count[items] >= k)
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def _cleaned_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the cleaned tokens of ``column`` and the cleaned uniques (tokens cleaned once each)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = column.cat.codes.to_numpy(), pd.Series(column.cat.categories.astype(str))
    else:
        codes, uniques = pd.factorize(column.to_numpy(dtype=object))
        uniques = pd.Series(uniques, dtype=object)
    if (codes < 0).any():
        raise ValueError(f"interaction {int(np.flatnonzero(codes < 0)[0]) + 1}: the {column.name} id is missing")
    remap, cleaned = pd.factorize(clean_tokens(uniques).to_numpy(dtype=object))
    return remap.astype(np.int32)[codes], np.asarray(cleaned, dtype=object)  # int32: half the memory of int64


def _first_emission_order(offsets: np.ndarray) -> np.ndarray:
    """Positions ordered by where they first appear when the train, valid and test rows are read in turn.

    Within one split a user's rows read positions in increasing order; the train rows of a user cover positions
    ``0..len-3`` (when it has any), the valid row ``..len-2`` and the test row ``..len-1``. So a position's first
    appearance is keyed by (first split holding it, user, position): a stable sort on that split.
    """
    lengths = np.diff(offsets)
    length = np.repeat(lengths, lengths)
    pos = np.arange(len(length)) - np.repeat(offsets[:-1], lengths)
    first = np.where((length >= 4) & (pos <= length - 3), 0, np.where(pos <= length - 2, 1, 2)).astype(np.int8)
    return np.argsort(first, kind="stable")


def build_sequences(raw: RawInteractions, k: int = 5, max_seq_length: int = 50) -> PreparedSequences:
    """Apply the preparation rules of this module to a source's interactions (``k >= 2``, ``max_seq_length >= 1``)."""
    if k < 2:
        raise ValueError(f"k = {k}: the k-core needs k >= 2 so that every user has a history before a target")
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
        raise ValueError(f"max_seq_length must be an int >= 1 (every row needs a history), got {max_seq_length!r}")
    texts: dict[str, str] = {}
    for item, text in raw.item_text.items():
        texts.setdefault(clean_token(item), clean_text(text))
    times = np.asarray(raw.frame["timestamp"].to_numpy(), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(times))
    if len(bad):
        raise ValueError(f"interaction {bad[0] + 1}: timestamp {float(times[bad[0]])!r} is not a finite number")
    user_codes, user_uniques = _cleaned_codes(raw.frame["user"])
    item_codes, item_uniques = _cleaned_codes(raw.frame["item"])
    item_text = pd.Series(item_uniques, dtype=object).map(texts)
    has_text = (item_text.notna() & (item_text != "")).to_numpy()
    kept = np.flatnonzero(has_text[item_codes])
    order = kept[np.argsort(times[kept], kind="stable")]
    del kept
    users, items, times = user_codes[order], item_codes[order], times[order]
    del order, user_codes, item_codes
    keep = k_core_mask(users, items, k)
    if not keep.any():
        raise ValueError(f"no interactions left after the iterative {k}-core filter")
    users, user_order = pd.factorize(users[keep])  # first-interaction order
    users = users.astype(np.int32)
    items, times = items[keep], times[keep]
    del keep
    by_user = np.argsort(users, kind="stable")
    items, times = items[by_user], times[by_user]
    offsets = np.zeros(len(user_order) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(user_order)), out=offsets[1:])
    del users, by_user
    ordered_codes = pd.unique(items[_first_emission_order(offsets)])  # first-appearance order
    index_of_code = np.zeros(len(item_uniques), dtype=np.int32)
    index_of_code[ordered_codes] = np.arange(1, len(ordered_codes) + 1)
    ordered_items = item_uniques[ordered_codes].tolist()
    return PreparedSequences(
        user_tokens=user_uniques[user_order].tolist(),
        item_tokens=[PAD_TOKEN, *ordered_items],
        item_text=["", *item_text.to_numpy()[ordered_codes].tolist()],
        offsets=offsets,
        items=index_of_code[items],
        times=times,
        max_seq_length=max_seq_length,
    )


def _stream_atomic(path: Path, header: str, chunks: Iterator[list[str]]) -> None:
    """Write an atomic file from chunks of body lines, atomically, never holding more than one chunk."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(header + "\n")
            for lines in chunks:
                if lines:
                    handle.write("\n".join(lines) + "\n")

    atomic_write_via(path, write)


def _user_chunks(prepared: PreparedSequences) -> Iterator[tuple[int, int]]:
    n_users = len(prepared.user_tokens)
    for start in range(0, n_users, EXPORT_USERS_PER_CHUNK):
        yield start, min(start + EXPORT_USERS_PER_CHUNK, n_users)


def write_prepared(directory: Path, name: str, prepared: PreparedSequences) -> list[str]:
    """Write the RecBole files ``{name}.inter``, ``{name}.text`` and ``{name}.{split}.inter``; return their names.

    ``{name}.text`` has the header ``item_id:token text:token_seq`` and one row per item in item-index order
    (row ``r`` of the body is item index ``r``; the padding item is not written). The files are streamed,
    :data:`EXPORT_USERS_PER_CHUNK` users at a time, in exactly the format of
    :func:`tedrec_fast.data.atomic.write_atomic` (tokens are clean; a float column is written as integers when
    every value is an integer).
    """
    item_tokens = np.asarray(prepared.item_tokens, dtype=object)
    user_tokens = prepared.user_tokens
    times = np.asarray(prepared.times, dtype=np.float64)
    integral = bool(np.all(np.isfinite(times)) and np.array_equal(times, np.round(times)))

    def time_strings(values: np.ndarray) -> list[str]:
        return values.astype(np.int64).astype(str).tolist() if integral else [repr(float(v)) for v in values]

    def inter_lines() -> Iterator[list[str]]:
        for u0, u1 in _user_chunks(prepared):
            p0, p1 = int(prepared.offsets[u0]), int(prepared.offsets[u1])
            users = np.repeat(np.asarray(user_tokens[u0:u1], dtype=object), prepared.lengths[u0:u1]).tolist()
            items = item_tokens[prepared.items[p0:p1]].tolist()
            yield list(map("\t".join, zip(users, items, time_strings(times[p0:p1]), strict=True)))

    def split_lines(split: str) -> Iterator[list[str]]:
        for u0, u1 in _user_chunks(prepared):
            offsets = prepared.offsets[u0:u1 + 1]
            p0 = int(offsets[0])
            tokens = item_tokens[prepared.items[p0:int(offsets[-1])]].tolist()
            target, hist = split_rows_of(offsets, split, prepared.max_seq_length)
            owner = np.searchsorted(offsets, target, side="right") - 1
            users = [user_tokens[u0 + o] for o in owner.tolist()]
            yield [f"{user}\t{' '.join(tokens[g - h:g])}\t{tokens[g]}"
                   for user, g, h in zip(users, (target - p0).tolist(), hist.tolist(), strict=True)]

    _stream_atomic(directory / f"{name}.inter", "user_id:token\titem_id:token\ttimestamp:float", inter_lines())
    names = [f"{name}.inter", write_text(directory, name, prepared)]
    for split in SPLITS:
        _stream_atomic(directory / f"{name}.{split}.inter", "\t".join(SPLIT_FIELDS), split_lines(split))
        names.append(f"{name}.{split}.inter")
    return names


def write_text(directory: Path, name: str, prepared: PreparedSequences) -> str:
    """Write ``{name}.text`` (item tokens and texts in item-index order); return its name."""
    write_atomic(directory / f"{name}.text", {
        "item_id:token": prepared.item_tokens[1:],
        "text:token_seq": prepared.item_text[1:],
    })
    return f"{name}.text"
