"""Loading a prepared directory: the compact sequences (:mod:`tedrec_fast.data.compact`) when present, else the
pre-split RecBole atomic files, plus the item text file; checked against the manifest when there is one."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tedrec_fast.data.atomic import SPLIT_FIELDS, read_atomic
from tedrec_fast.data.compact import SEQ_SUFFIX, USERS_SUFFIX, CompactSplit, read_compact
from tedrec_fast.data.sequences import PAD_TOKEN, SPLITS
from tedrec_fast.data.storage import file_problems, read_manifest

TEXT_FIELDS = ("item_id:token", "text:token_seq")


@dataclass
class SequenceSplit:
    """One split's samples: ``item_seq[r, :item_seq_len[r]]`` is the history (oldest first) of ``target[r]``."""

    user: torch.Tensor  # (N,) int64 user index
    item_seq: torch.Tensor  # (N, max_len) int64, right-padded with 0
    item_seq_len: torch.Tensor  # (N,) int64, >= 1
    target: torch.Tensor  # (N,) int64


@dataclass
class SequentialDataset:
    """A prepared dataset. Users are indexed ``0..n_users-1`` (no padding user) in order of first appearance
    in the train, valid, test files; items ``1..n_items-1`` as in :mod:`tedrec_fast.data.sequences`."""

    name: str
    n_users: int
    n_items: int  # including padding item 0
    max_seq_length: int
    train: SequenceSplit | CompactSplit
    valid: SequenceSplit | CompactSplit
    test: SequenceSplit | CompactSplit
    item_tokens: list[str]  # original item ids, index-aligned; item_tokens[0] = "[PAD]"
    item_text: list[str]  # index-aligned; item_text[0] = ""


def _dataset_name(directory: Path) -> str:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such prepared dataset directory")
    found = sorted(p.name[: -len(SEQ_SUFFIX)] for p in directory.glob(f"*{SEQ_SUFFIX}"))
    if not found:
        found = sorted(p.name[: -len(".train.inter")] for p in directory.glob("*.train.inter"))
    if len(found) != 1:
        raise FileNotFoundError(f"{directory}: expected exactly one *{SEQ_SUFFIX} or *.train.inter file, found {found}")
    return found[0]


def _check_manifest(directory: Path, reads: list[str]) -> None:
    """Sizes of every file the manifest records and row counts of those loaded (``reads``) must match."""
    manifest = read_manifest(directory)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return  # a directory made by hand, or by an older version: nothing recorded to check against
    problems = file_problems(directory, manifest["files"], names=reads)
    if problems:
        raise ValueError(f"{problems[0]}; run `tedrec-fast prepare` again to repair {directory}")


def _histories(frame: pd.DataFrame, path: Path, items: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """0-based item codes of the flattened histories (-1 for unknown tokens) and per-row lengths.

    pandas' C reader factorises the tokens (one per line) without a Python string per token; each token gets a
    "_" prefix so that no category is inferred as a number or a date.
    """
    lists = frame["item_id_list"].tolist()
    if not lists:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    joined = " ".join(lists)
    if "  " in joined or joined.startswith(" ") or joined.endswith(" ") or not all(lists):
        lists = [" ".join(tokens.split()) for tokens in lists]
        if not all(lists):
            raise ValueError(f"{path}, line {lists.index('') + 2}: empty item_id_list")
        joined = " ".join(lists)
    lengths = np.fromiter((tokens.count(" ") for tokens in lists), dtype=np.int64, count=len(lists)) + 1
    tokens = pd.read_csv(io.StringIO("_" + joined.replace(" ", "\n_")), header=None, na_filter=False, sep="\t",
                         quoting=csv.QUOTE_NONE, dtype="category")[0]
    category_codes = items.get_indexer(tokens.cat.categories.str.slice(1))
    return category_codes[tokens.cat.codes.to_numpy()].astype(np.int64), lengths


def _check_known(codes: np.ndarray, rows: np.ndarray, tokens: pd.Series, path: Path) -> None:
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        row = rows[unknown[0]]
        raise ValueError(f"{path}, line {row + 2}: an item of {tokens.iloc[row]!r} is not in the item list")


def _split(frame: pd.DataFrame, path: Path, users: pd.Index, items: pd.Index, max_len: int) -> SequenceSplit:
    if frame.empty:
        raise ValueError(f"{path}: no rows (only a header): every split needs at least one row")
    history, lengths = _histories(frame, path, items)
    row_of = np.repeat(np.arange(len(frame)), lengths)
    _check_known(history, row_of, frame["item_id_list"], path)
    target = items.get_indexer(frame["item_id"].to_numpy(dtype=object))
    _check_known(target, np.arange(len(frame)), frame["item_id"], path)
    history, target = history + 1, target + 1
    kept = np.minimum(lengths, max_len)
    within = np.arange(len(history)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    column = within - np.repeat(lengths - kept, lengths)
    keep = column >= 0
    item_seq = np.zeros((len(frame), max_len), dtype=np.int64)
    item_seq[row_of[keep], column[keep]] = history[keep]
    return SequenceSplit(
        user=torch.from_numpy(users.get_indexer(frame["user_id"].to_numpy(dtype=object)).astype(np.int64)),
        item_seq=torch.from_numpy(item_seq),
        item_seq_len=torch.from_numpy(kept),
        target=torch.from_numpy(target.astype(np.int64)),
    )


def _item_order(frames: dict[str, pd.DataFrame]) -> tuple[list[str], list[str]]:
    """Items in order of first appearance, reading each row's history then its target, train/valid/test."""
    pairs = (zip(frames[s]["item_id_list"], frames[s]["item_id"], strict=True) for s in SPLITS)
    stream = " ".join(f"{history} {target}" for split in pairs for history, target in split)
    tokens = pd.unique(np.asarray(stream.split(), dtype=object)).tolist()
    return tokens, [""] * len(tokens)


def _item_table(text_path: Path) -> tuple[list[str], list[str]]:
    text = read_atomic(text_path, TEXT_FIELDS)
    duplicated = np.flatnonzero(text["item_id"].duplicated().to_numpy())
    if len(duplicated):
        token = text["item_id"].iloc[duplicated[0]]
        raise ValueError(f"{text_path}, line {duplicated[0] + 2}: item {token!r} is listed twice")
    return text["item_id"].tolist(), text["text"].tolist()


def _load_compact(directory: Path, name: str, max_seq_length: int) -> SequentialDataset:
    text_path = directory / f"{name}.text"
    if not text_path.is_file():
        raise FileNotFoundError(f"{text_path}: missing (the item list of the compact sequences)")
    tokens, texts = _item_table(text_path)
    store = read_compact(directory, name)
    if len(store.items) and int(store.items.max()) > len(tokens):
        raise ValueError(f"{directory / (name + SEQ_SUFFIX)}: item index {int(store.items.max())} is beyond the "
                         f"{len(tokens)} items of {text_path}")
    n_users = store.valid.shape[0]
    if n_users == 0:
        raise ValueError(f"{directory / (name + USERS_SUFFIX)}: no users: the splits would be empty")
    return SequentialDataset(
        name=name,
        n_users=n_users,
        n_items=len(tokens) + 1,
        max_seq_length=max_seq_length,
        item_tokens=[PAD_TOKEN, *tokens],
        item_text=["", *texts],
        **{split: CompactSplit(store, split, max_seq_length) for split in SPLITS},
    )


def load_dataset(path: str | Path, max_seq_length: int = 50) -> SequentialDataset:
    """Load a prepared dataset directory.

    With the compact files (``{ds}.seq.parquet``, ``{ds}.users.parquet``, written by :func:`prepare_dataset`) the
    splits are :class:`~tedrec_fast.data.compact.CompactSplit` objects (int32 sequences, rows gathered on demand);
    otherwise the pre-split ``{ds}.train/valid/test.inter`` files are read into :class:`SequenceSplit` tensors.
    Either way row ``r`` of a split is the same. When the directory has a manifest, every recorded file's size and
    the row counts of the files read must match it (a truncated or changed file is an error naming it).

    Histories longer than ``max_seq_length`` keep their most recent items. Item indices follow the rows of
    ``{ds}.text`` (row ``r`` of its body is index ``r``); without a text file they follow first appearance in the
    split files (the same order :func:`prepare_dataset` writes) and texts are empty. Raises ``ValueError``
    naming the file and line for malformed input or items missing from the text file.
    """
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
        raise ValueError(f"max_seq_length must be an int >= 1, got {max_seq_length!r}")
    directory = Path(path)
    name = _dataset_name(directory)
    if (directory / f"{name}{SEQ_SUFFIX}").is_file():
        _check_manifest(directory, [f"{name}{SEQ_SUFFIX}", f"{name}{USERS_SUFFIX}", f"{name}.text"])
        return _load_compact(directory, name, max_seq_length)
    files = {split: directory / f"{name}.{split}.inter" for split in SPLITS}
    text_path = directory / f"{name}.text"
    _check_manifest(directory, [p.name for p in (*files.values(), text_path)])
    frames = {split: read_atomic(files[split], SPLIT_FIELDS) for split in SPLITS}
    if text_path.exists():
        tokens, texts = _item_table(text_path)
    else:
        tokens, texts = _item_order(frames)
    users = pd.Index(pd.unique(np.concatenate([frames[s]["user_id"].to_numpy(dtype=object) for s in SPLITS])))
    items = pd.Index(tokens)
    splits = {s: _split(frames[s], files[s], users, items, max_seq_length) for s in SPLITS}
    return SequentialDataset(
        name=name,
        n_users=len(users),
        n_items=len(tokens) + 1,
        max_seq_length=max_seq_length,
        item_tokens=[PAD_TOKEN, *tokens],
        item_text=["", *texts],
        **splits,
    )
