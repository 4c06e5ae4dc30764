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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tedrec_fast.data.atomic import SPLIT_FIELDS, write_atomic

PAD_TOKEN = "[PAD]"
SPLITS = ("train", "valid", "test")
_WHITESPACE = re.compile(r"\s+")


@dataclass
class RawInteractions:
    """What a source reader returns: ``frame`` has columns ``user``, ``item`` (str) and ``timestamp``
    (numeric, sortable) in source order; ``item_text`` maps an item token to its text."""

    frame: pd.DataFrame
    item_text: dict[str, str]


@dataclass
class PreparedSequences:
    """Filtered, ordered sequences. Position arrays are grouped by user, chronological within a user."""

    user_tokens: list[str]
    item_tokens: list[str]  # index-aligned, item_tokens[0] = PAD_TOKEN
    item_text: list[str]  # index-aligned, item_text[0] = ""
    position_user: np.ndarray  # (n_interactions,) user index of each position
    position_item: np.ndarray  # (n_interactions,) item index of each position
    position_time: np.ndarray  # (n_interactions,) timestamp of each position
    rows: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (target position g, history length h)

    def counts(self) -> dict[str, int]:
        """Users, items (without padding), interactions and rows per split."""
        counts = {
            "users": len(self.user_tokens),
            "items": len(self.item_tokens) - 1,
            "interactions": len(self.position_item),
        }
        counts.update({split: len(self.rows[split][0]) for split in SPLITS})
        return counts


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


def _row_token_positions(rows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Positions of every row's history followed by its target, concatenated."""
    target, hist = rows
    counts = hist + 1
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(target - hist, counts) + offsets


def build_sequences(raw: RawInteractions, k: int = 5, max_seq_length: int = 50) -> PreparedSequences:
    """Apply the preparation rules of this module to a source's interactions (``k >= 2``)."""
    if k < 2:
        raise ValueError(f"k = {k}: the k-core needs k >= 2 so that every user has a history before a target")
    texts: dict[str, str] = {}
    for item, text in raw.item_text.items():
        texts.setdefault(clean_token(item), clean_text(text))
    frame = raw.frame.assign(user=clean_tokens(raw.frame["user"]), item=clean_tokens(raw.frame["item"]))
    item_text = frame["item"].map(texts)
    frame = frame[item_text.notna().to_numpy() & (item_text != "").to_numpy()]
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    users = frame["user"].to_numpy(dtype=object)[order]
    items = frame["item"].to_numpy(dtype=object)[order]
    times = frame["timestamp"].to_numpy()[order]
    user_codes, _ = pd.factorize(users)
    item_codes, item_uniques = pd.factorize(items)
    keep = k_core_mask(user_codes, item_codes, k)
    if not keep.any():
        raise ValueError(f"no interactions left after the iterative {k}-core filter")
    user_codes, user_uniques = pd.factorize(users[keep])  # first-interaction order
    item_codes, times = item_codes[keep], times[keep]
    by_user = np.argsort(user_codes, kind="stable")
    user_codes, item_codes, times = user_codes[by_user], item_codes[by_user], times[by_user]
    lengths = np.bincount(user_codes)
    length = np.repeat(lengths, lengths)
    pos = np.arange(len(user_codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = {}
    for split, select in (("train", (pos >= 1) & (pos <= length - 3)), ("valid", pos == length - 2),
                          ("test", pos == length - 1)):
        target = np.flatnonzero(select)
        rows[split] = (target, np.minimum(pos[target], max_seq_length))
    stream = item_codes[np.concatenate([_row_token_positions(rows[s]) for s in SPLITS])]
    ordered_codes = pd.unique(stream)  # first-appearance order
    index_of_code = np.zeros(len(item_uniques), dtype=np.int64)
    index_of_code[ordered_codes] = np.arange(1, len(ordered_codes) + 1)
    ordered_items = [str(item_uniques[c]) for c in ordered_codes]
    return PreparedSequences(
        user_tokens=[str(u) for u in user_uniques],
        item_tokens=[PAD_TOKEN] + ordered_items,
        item_text=[""] + [texts[item] for item in ordered_items],
        position_user=user_codes.astype(np.int64),
        position_item=index_of_code[item_codes],
        position_time=times,
        rows=rows,
    )


def write_prepared(directory: Path, name: str, prepared: PreparedSequences) -> list[str]:
    """Write ``{name}.inter``, ``{name}.text`` and the pre-split ``{name}.{split}.inter`` files; return their names.

    ``{name}.text`` has the header ``item_id:token text:token_seq`` and one row per item in item-index order
    (row ``r`` of the body is item index ``r``; the padding item is not written).
    """
    item_tokens = np.asarray(prepared.item_tokens, dtype=object)
    user_tokens = np.asarray(prepared.user_tokens, dtype=object)
    position_tokens = item_tokens[prepared.position_item].tolist()
    write_atomic(directory / f"{name}.inter", {
        "user_id:token": user_tokens[prepared.position_user],
        "item_id:token": position_tokens,
        "timestamp:float": prepared.position_time,
    })
    write_atomic(directory / f"{name}.text", {
        "item_id:token": prepared.item_tokens[1:],
        "text:token_seq": prepared.item_text[1:],
    })
    names = [f"{name}.inter", f"{name}.text"]
    for split in SPLITS:
        target, hist = prepared.rows[split]
        histories = [" ".join(position_tokens[g - h:g]) for g, h in zip(target.tolist(), hist.tolist(), strict=True)]
        columns = (user_tokens[prepared.position_user[target]], histories, item_tokens[prepared.position_item[target]])
        write_atomic(directory / f"{name}.{split}.inter", dict(zip(SPLIT_FIELDS, columns, strict=True)))
        names.append(f"{name}.{split}.inter")
    return names
