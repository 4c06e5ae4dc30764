"""The compact training set: rows gathered from int32 sequences equal the RecBole prefix rows, on random data,
on ML-100k and Online Retail (against hashes recorded with the code before the compact format), in training."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tedrec_fast.config import TrainConfig
from tedrec_fast.data import CompactSplit, SequenceSplit, load_dataset, prepare_dataset, sequences
from tedrec_fast.data.compact import read_compact, split_rows, write_compact
from tedrec_fast.data.download import DownloadError
from tedrec_fast.data.sequences import RawInteractions, build_sequences, write_prepared
from tedrec_fast.paths import cache_dir
from tedrec_fast.train import Trainer
from tests.train.support import TinyRec

BASELINE = json.loads((Path(__file__).parent / "baseline_hashes.json").read_text())
ONLINE_RETAIL = [Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.csv.gz",
                 Path("/work/shared/data/online_retail.csv.gz")]


def _random_raw(seed: int) -> RawInteractions:
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(3, 30)), int(rng.integers(3, 25))
    n = int(rng.integers(20, 600))
    frame = pd.DataFrame({
        "user": [f"u{v}" for v in rng.integers(0, n_users, n)],
        "item": [f"i{v}" for v in rng.integers(0, n_items, n)],
        "timestamp": rng.integers(0, 50, n).astype(float),  # many ties: the stable order matters
    })
    return RawInteractions(frame, {f"i{v}": f"text {v}." for v in range(n_items)})


def _rows_hash(split) -> str:
    digest = hashlib.sha256()
    for tensor in (split.user, split.item_seq, split.item_seq_len, split.target):
        digest.update(np.ascontiguousarray(tensor.numpy().astype("<i8")).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("seed", range(12))
def test_compact_rows_equal_recbole_rows(tmp_path, seed):
    raw = _random_raw(seed)
    k = 2 + seed % 4
    max_len = [1, 2, 3, 5, 7, 50][seed % 6]
    try:
        prepared = build_sequences(raw, k=k, max_seq_length=max_len)
    except ValueError:
        pytest.skip("nothing survives this k-core")
    if (prepared.lengths < 3).any():
        pytest.skip("a user without a valid history cannot be written as RecBole rows")
    legacy, compact = tmp_path / "legacy", tmp_path / "compact"
    legacy.mkdir()
    compact.mkdir()
    write_prepared(legacy, "r", prepared)
    with pytest.MonkeyPatch.context() as patch:  # streamed in chunks of 2 users: the same bytes
        patch.setattr(sequences, "EXPORT_USERS_PER_CHUNK", 2)
        write_prepared(compact, "r", prepared)
    for name in ("r.inter", "r.train.inter", "r.valid.inter", "r.test.inter"):
        assert (compact / name).read_bytes() == (legacy / name).read_bytes()
    write_compact(compact, "r", prepared)
    for load_len in sorted({max_len, max(1, max_len - 1)}):  # the RecBole rows were cut to max_len at prepare time
        old, new = load_dataset(legacy, load_len), load_dataset(compact, load_len)
        assert (new.n_users, new.n_items, new.item_tokens) == (old.n_users, old.n_items, old.item_tokens)
        for name in ("train", "valid", "test"):
            o, c = getattr(old, name), getattr(new, name)
            assert isinstance(o, SequenceSplit) and isinstance(c, CompactSplit)
            assert len(c) == len(o.target)
            # users are indexed in prepare order; the RecBole reader's first-appearance order is the same whenever
            # every user has a training row (4+ interactions, as the 5-core of prepare guarantees)
            attrs = ("user",) * bool((prepared.lengths >= 4).all()) + ("item_seq", "item_seq_len", "target")
            for attr in attrs:
                assert torch.equal(getattr(c, attr), getattr(o, attr)), (name, attr)
            idx = torch.randint(0, len(c), (17,), generator=torch.Generator().manual_seed(seed))
            for got, want in zip(c.rows(idx), split_rows(o, idx), strict=True):
                assert got.dtype == torch.int64 and torch.equal(got, want)
            for part in (slice(1, None, 2), slice(0, 3), slice(len(c) - 2, len(c) + 5)):
                for got, want in zip(c.rows(part), split_rows(o, part), strict=True):
                    assert torch.equal(got, want)
    # the item order build_sequences derives from split positions equals first appearance in the RecBole stream
    (legacy / "r.text").unlink()
    assert load_dataset(legacy, max_len).item_tokens == new.item_tokens


def test_compact_memory_is_about_four_bytes_per_interaction(tmp_path):
    prepared = build_sequences(_random_raw(3), k=2, max_seq_length=50)
    write_compact(tmp_path, "r", prepared)
    store = read_compact(tmp_path, "r")
    assert store.items.dtype == torch.int32
    n_users = len(prepared.user_tokens)
    split = CompactSplit(store, "train", 50)
    assert split.to("cpu").store is store and store.to("meta") is store.to("meta")  # one copy per device
    assert split.nbytes == 4 * len(prepared.items) + 8 * (n_users + 1) + 8 * n_users + 8 * (n_users + 1)


def _ml100k_raw() -> Path | None:
    cached = cache_dir("raw") / "ml-100k"
    if (cached / "ml-100k.inter").is_file() or os.environ.get("TEDREC_FAST_NETWORK_TESTS") == "1":
        return None
    pytest.skip(f"ML-100k not cached at {cached} (set TEDREC_FAST_NETWORK_TESTS=1 to download it)")


@pytest.mark.parametrize("source", ["ml-100k", "online-retail"])
def test_real_datasets_equal_recorded_files_and_rows(tmp_path, source):
    if source == "ml-100k":
        raw = _ml100k_raw()
    else:
        raw = next((p for p in ONLINE_RETAIL if p.is_file()), None)
        if raw is None:
            pytest.skip(f"Online Retail not found at {ONLINE_RETAIL}")
    try:
        directory = prepare_dataset(source, tmp_path, raw=raw)
    except DownloadError as err:
        pytest.skip(f"offline: {err}")
    expected = BASELINE[source]
    for name, digest in expected["files"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest, name
    data = load_dataset(directory)
    assert isinstance(data.train, CompactSplit)
    assert (data.n_users, data.n_items) == (expected["n_users"], expected["n_items"])
    for name in ("train", "valid", "test"):
        assert _rows_hash(getattr(data, name)) == expected["rows"][name], name


def test_training_on_compact_split_equals_dense(tmp_path):
    prepared = build_sequences(_random_raw(1), k=3, max_seq_length=6)
    write_prepared(tmp_path, "r", prepared)
    write_compact(tmp_path, "r", prepared)
    compact = load_dataset(tmp_path, 6)
    dense = load_dataset(tmp_path, 6)
    for name in ("train", "valid", "test"):
        split = getattr(compact, name)
        setattr(dense, name, SequenceSplit(split.user, split.item_seq, split.item_seq_len, split.target))
    results = []
    for data in (compact, dense):
        torch.manual_seed(0)
        model = TinyRec(data.n_items, 6)
        config = TrainConfig(epochs=2, batch_size=8, seed=0, progress=False, deterministic=True)
        result = Trainer(model, data, config, device="cpu").fit()
        results.append((result.best_valid, result.test, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    assert all(torch.equal(a, b) for a, b in zip(results[0][2], results[1][2], strict=True))
