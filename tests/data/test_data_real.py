"""The real Online Retail file (``../shared/data/online_retail.csv.gz`` beside the repository) gives TedRec's counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tedrec_fast.data import load_dataset, prepare_dataset

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail.csv.gz"


@pytest.mark.skipif(not REAL.exists(), reason=f"real Online Retail file not found at {REAL}")
def test_online_retail_real_counts(tmp_path):
    directory = prepare_dataset("online-retail", tmp_path, raw=REAL)
    counts = json.loads((directory / "manifest.json").read_text())["counts"]
    assert counts == {"users": 16520, "items": 3469, "interactions": 519906,
                      "train": 470346, "valid": 16520, "test": 16520}
    data = load_dataset(directory)
    assert (data.n_users, data.n_items) == (16520, 3470)
    assert [len(s.target) for s in (data.train, data.valid, data.test)] == [470346, 16520, 16520]
    assert data.train.item_seq.shape == (470346, 50)
    assert int(data.test.item_seq_len.max()) == 50 and int(data.train.item_seq_len.min()) == 1
    # valid history + its target = the test history (when not truncated)
    short = data.test.item_seq_len < 50
    assert (data.valid.item_seq_len[short] + 1 == data.test.item_seq_len[short]).all()
    assert data.item_text[1] == "white hanging heart t-light holder."
