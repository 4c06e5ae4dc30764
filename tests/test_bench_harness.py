"""The benchmark harness runs on CPU with a stand-in timer: the GPU sessions only have to run it."""

from __future__ import annotations

import json

import torch

from bench.__main__ import write
from bench.catalog import CatalogCase, loss_record, train_step_record, zipf_items
from bench.spectral_fusion import GPU_CASES, floor_bytes


def _timer(step) -> float:
    step()
    return 2.0


def test_zipf_items_are_valid_and_skewed() -> None:
    items = zipf_items(5000, 100)
    assert items.min() >= 1 and items.max() < 100
    assert (items == 1).sum() > (items == 50).sum()


def test_loss_record_schema() -> None:
    record = loss_record(CatalogCase(V=50, B=6, d=8, dtype="float32"), _timer, "cpu", fused_backend="torch-chunked")
    assert record["op"] == "full_catalog_cross_entropy" and record["V"] == 50
    assert record["ms"] == record["ref_ms"] == record["gemm3_ms"] == 2.0 and record["speedup"] == 1.0
    assert record["peak_mem_bytes"] is None and not record["oom"]


def test_train_step_record_schema() -> None:
    record = train_step_record(40, _timer, "cpu", B=4, n=6, text_dim=8, bf16=False,
                               model_args=dict(hidden_size=16, inner_size=32, n_experts=2))
    assert record["op"] == "train_step" and record["items_per_s"] == 2000.0 and not record["oom"]


def test_results_document_is_written_with_its_plot(tmp_path) -> None:
    case = GPU_CASES[0]
    document = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-01-01", "commit": "abc", "torch": torch.__version__,
                "triton": "3.6.0", "copy_gbps": 3000.0,
                "records": [{"op": "spectral_fusion", "backend": case.backend, "direction": case.direction,
                             "dtype": case.dtype, "B": case.B, "n": case.n, "d": case.d, "ms": 0.1, "ref_ms": 1.0,
                             "speedup": 10.0, "gbps": floor_bytes(case) / 0.1 / 1e6, "roofline_frac": 0.5}]}
    path = write(document, tmp_path)
    assert path.name == "2026-01-01_nvidia-h100-80gb-hbm3.json"
    assert json.loads(path.read_text()) == document
    assert path.with_suffix(".png").stat().st_size > 0
