"""The compact prepared format and the compact training set: per-user item sequences, gathered into rows on demand.

On disk (written with pyarrow, no Python loop over interactions):

* ``{ds}.seq.parquet``: one row per interaction, user by user, chronological: ``item`` (int32 item index),
  ``timestamp`` (float64);
* ``{ds}.users.parquet``: one row per user in user-index order: ``user`` (token), ``offset`` (int64, first row of
  the user in ``{ds}.seq.parquet``), ``length`` (int32), ``valid`` and ``test`` (int32 split positions within the
  user's sequence: the valid and test targets; positions ``1 .. valid - 1`` are the training targets).

In memory a :class:`CompactSplit` holds the int32 item array, the int64 user offsets and the split positions
(about 4 bytes per interaction plus a few per user) and gathers a batch's ``(item_seq, item_seq_len, target)`` on
the array's device: row ``r`` equals row ``r`` of the pre-split ``{ds}.{split}.inter`` file as
:func:`tedrec_fast.data.loading.load_dataset` reads it (history = the ``max_seq_length`` most recent items before
the target, oldest first, right-padded with 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tedrec_fast.data.sequences import PreparedSequences
from tedrec_fast.data.storage import atomic_write_via

SEQ_SUFFIX, USERS_SUFFIX = ".seq.parquet", ".users.parquet"


def write_compact(directory: Path, name: str, prepared: PreparedSequences) -> list[str]:
    """Write ``{name}.seq.parquet`` and ``{name}.users.parquet`` into ``directory``; return their names."""
    if len(prepared.item_tokens) > np.iinfo(np.int32).max:
        raise ValueError(f"{len(prepared.item_tokens)} items do not fit the int32 item index")
    lengths = prepared.lengths
    seq = pa.table({"item": pa.array(prepared.items.astype(np.int32)),
                    "timestamp": pa.array(np.asarray(prepared.times, dtype=np.float64))})
    users = pa.table({
        "user": pa.array(prepared.user_tokens, type=pa.string()),
        "offset": pa.array(prepared.offsets[:-1]),
        "length": pa.array(lengths.astype(np.int32)),
        "valid": pa.array((lengths - 2).astype(np.int32)),
        "test": pa.array((lengths - 1).astype(np.int32)),
    })
    names = []
    for suffix, table in ((SEQ_SUFFIX, seq), (USERS_SUFFIX, users)):
        atomic_write_via(directory / f"{name}{suffix}", lambda tmp, t=table: pq.write_table(t, tmp))
        names.append(f"{name}{suffix}")
    return names


@dataclass
class CompactSequences:
    """All users' sequences: ``items[offsets[u] + p]`` is user ``u``'s item at position ``p``."""

    items: torch.Tensor  # (n_interactions,) int32 item index
    offsets: torch.Tensor  # (n_users + 1,) int64
    valid: torch.Tensor  # (n_users,) int32 position of the valid target
    test: torch.Tensor  # (n_users,) int32 position of the test target
    _copies: dict = field(default_factory=dict, repr=False, compare=False)

    def to(self, device: torch.device | str) -> CompactSequences:
        """This store on ``device``: one copy per device, shared by the splits that move there."""
        device = torch.device(device)
        if device == self.items.device:
            return self
        key = str(device)
        if key not in self._copies:
            self._copies[key] = CompactSequences(*(t.to(device) for t in (self.items, self.offsets, self.valid,
                                                                          self.test)))
        return self._copies[key]

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.items, self.offsets, self.valid, self.test))


def read_compact(directory: Path, name: str) -> CompactSequences:
    """Read ``{name}.seq.parquet`` and ``{name}.users.parquet`` (numeric columns only) from ``directory``.

    Raises ``ValueError`` naming the file when it is unreadable or its columns are inconsistent.
    """
    seq_path, users_path = directory / f"{name}{SEQ_SUFFIX}", directory / f"{name}{USERS_SUFFIX}"
    try:
        items = pq.read_table(seq_path, columns=["item"]).column("item").to_numpy()
        users = pq.read_table(users_path, columns=["offset", "length", "valid", "test"])
    except (pa.ArrowException, KeyError, OSError) as err:
        raise ValueError(f"{seq_path.parent}: cannot read the compact sequence files ({err})") from None
    offset, length, valid, test = (users.column(c).to_numpy() for c in ("offset", "length", "valid", "test"))
    offsets = np.append(offset, offset[-1] + length[-1] if len(offset) else 0).astype(np.int64)
    if (offsets[0] != 0 or (np.diff(offsets) != length).any() or offsets[-1] != len(items)
            or (valid < 0).any() or (test <= valid).any() or (test >= length).any()):
        raise ValueError(f"{users_path}: offsets, lengths and split positions do not describe {seq_path.name}")
    if len(items) and items.min() < 1:
        raise ValueError(f"{seq_path}: item indices must be >= 1 (0 is padding)")
    items, valid, test = (torch.from_numpy(np.require(a, np.int32, "W")) for a in (items, valid, test))
    return CompactSequences(items, torch.from_numpy(offsets), valid, test)


class CompactSplit:
    """One split's rows over a :class:`CompactSequences`, gathered on demand on the store's device.

    ``split`` is ``"train"`` (every target position ``1 .. valid - 1`` of every user, user by user), ``"valid"`` or
    ``"test"`` (one row per user). The attributes ``user``, ``item_seq``, ``item_seq_len`` and ``target``
    materialise every row (for small data and tests); training and evaluation call :meth:`rows`.
    """

    def __init__(self, store: CompactSequences, split: str, max_seq_length: int) -> None:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"CompactSplit: split must be 'train', 'valid' or 'test', got {split!r}")
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
            raise ValueError(f"CompactSplit: max_seq_length must be an int >= 1, got {max_seq_length!r}")
        self.store, self.split, self.max_seq_length = store, split, max_seq_length
        self.row_offsets = None
        if split == "train":
            counts = (store.valid.long() - 1).clamp_min(0)
            self.row_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            self._n = int(self.row_offsets[-1])
        else:
            self._n = store.valid.shape[0]

    def __len__(self) -> int:
        return self._n

    @property
    def device(self) -> torch.device:
        """Where the rows are gathered."""
        return self.store.items.device

    @property
    def nbytes(self) -> int:
        """Bytes held by this split's tensors, the shared store included."""
        extra = self.row_offsets.numel() * 8 if self.row_offsets is not None else 0
        return self.store.nbytes + extra

    def to(self, device: torch.device | str) -> CompactSplit:
        """This split with its store on ``device``."""
        return CompactSplit(self.store.to(device), self.split, self.max_seq_length)

    def users_and_positions(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """User index and target position (within the user's sequence) of rows ``idx``."""
        if self.row_offsets is not None:
            user = torch.searchsorted(self.row_offsets, idx, right=True) - 1
            return user, idx - self.row_offsets[user] + 1
        return idx, getattr(self.store, self.split)[idx].long()

    def rows(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(item_seq (B, max_seq_length), item_seq_len (B,), target (B,))`` int64 of rows ``idx``, on the device."""
        if isinstance(idx, slice):
            idx = torch.arange(*idx.indices(self._n), device=self.device)
        idx = idx.to(self.device, torch.long)  # in [0, len(self)): not checked, to stay free of host syncs
        user, pos = self.users_and_positions(idx)
        target_at = self.store.offsets[user] + pos
        length = pos.clamp(max=self.max_seq_length)
        column = torch.arange(self.max_seq_length, device=self.device)
        inside = column < length[:, None]
        source = torch.where(inside, target_at[:, None] - length[:, None] + column, 0)
        item_seq = torch.where(inside, self.store.items[source].long(), 0)
        return item_seq, length, self.store.items[target_at].long()

    @property
    def user(self) -> torch.Tensor:
        """User index of every row (int64)."""
        return self.users_and_positions(torch.arange(self._n, device=self.device))[0]

    @property
    def item_seq(self) -> torch.Tensor:
        """Every row's history ``(N, max_seq_length)`` (materialised)."""
        return self.rows(slice(None))[0]

    @property
    def item_seq_len(self) -> torch.Tensor:
        """Every row's history length (materialised)."""
        return self.rows(slice(None))[1]

    @property
    def target(self) -> torch.Tensor:
        """Every row's target (materialised)."""
        return self.rows(slice(None))[2]


def split_size(split: object) -> int:
    """Rows of a split: a :class:`CompactSplit` or any object with a ``target`` tensor."""
    return len(split) if isinstance(split, CompactSplit) else split.target.shape[0]


def split_rows(split: object, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(item_seq, item_seq_len, target)`` of rows ``idx`` of a :class:`CompactSplit` or a tensor split."""
    if isinstance(split, CompactSplit):
        return split.rows(idx)
    return split.item_seq[idx], split.item_seq_len[idx], split.target[idx]
