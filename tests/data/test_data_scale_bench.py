"""``python -m bench --data-scale``: the synthetic log and the record (tiny sizes)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.__main__ import main as bench_main
from bench.data_scale import synthetic_log


def test_synthetic_log_sizes_and_power_law(tmp_path):
    path = synthetic_log(tmp_path / "log.parquet", users=50, items=400, interactions=20_000)
    table = pq.read_table(path)
    assert table.num_rows == 20_000 and table.column_names == ["user", "item", "timestamp"]
    items = table.column("item").to_numpy()
    assert items.min() >= 0 and items.max() < 400 and table.column("user").to_numpy().max() < 50
    counts = np.bincount(items, minlength=400)
    assert counts[:10].sum() > 3 * counts[-10:].sum()  # popular head, long tail


@pytest.mark.slow
def test_data_scale_record(tmp_path, capsys):
    assert bench_main(["--data-scale", "--users", "300", "--items", "200", "--interactions", "9000", "--steps", "1",
                       "--models", "sasrec", "--out-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("data_scale_*_cpu.json")
    (record,) = json.loads(path.read_text())
    assert record["op"] == "data_scale" and record["generated"]["interactions"] == 9000
    assert 0 < record["interactions"] <= 9000 and record["users"] <= 300 and record["items"] <= 200
    for key in ("prepare_s", "load_s", "peak_rss_gb", "bytes_per_interaction"):
        assert record[key] > 0
    assert record["bytes_per_interaction"] < 5 + 24 * record["users"] / record["interactions"]
    assert set(record["step_ms"]) == {"sasrec"} and record["date"] and record["device"] and record["commit"]
