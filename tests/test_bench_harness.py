"""The benchmark harness runs on CPU with a stand-in timer: the GPU sessions only have to run it."""

from __future__ import annotations

import json

import torch

from bench.environment import results_path
from bench.full_catalog_ce import CatalogCase, loss_record, train_step_record, zipf_items
from bench.spectral_fusion import GPU_CASES, floor_bytes
from bench.tables import write
from bench.train_step import batch


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


def test_public_kernels_get_normalised_temperature_scaled_inputs(monkeypatch) -> None:
    """Stand-ins with the public kernels' call signatures: each adapter step computes TedRec's loss."""
    import sys
    import types

    from bench.full_catalog_ce import public_kernel_steps
    from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy_reference

    losses = {}

    class LigerFusedLinearCrossEntropyLoss:  # forward(lin_weight, _input, target)
        def __call__(self, weight, x, target):
            losses["liger_flce"] = torch.nn.functional.cross_entropy(x @ weight.t(), target)
            return losses["liger_flce"]

    def linear_cross_entropy(e, c, targets):  # cut_cross_entropy.linear_cross_entropy(e, c, targets)
        losses["cut_cross_entropy"] = torch.nn.functional.cross_entropy(e @ c.t(), targets)
        return losses["cut_cross_entropy"]

    liger = types.ModuleType("liger_kernel.transformers.fused_linear_cross_entropy")
    liger.LigerFusedLinearCrossEntropyLoss = LigerFusedLinearCrossEntropyLoss
    cce = types.ModuleType("cut_cross_entropy")
    cce.linear_cross_entropy = linear_cross_entropy
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, liger.__name__, liger)
    monkeypatch.setitem(sys.modules, "cut_cross_entropy", cce)

    query = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    items = torch.randn(20, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 20, (6,))
    steps = public_kernel_steps(query, items, targets)
    assert sorted(steps) == ["cut_cross_entropy", "liger_flce"]
    expected = full_catalog_cross_entropy_reference(query, items, targets, temperature=0.07)
    for name, step in steps.items():
        step()
        torch.testing.assert_close(losses[name], expected, msg=name)


def test_public_kernels_are_left_out_when_not_installed(monkeypatch) -> None:
    import sys

    from bench.full_catalog_ce import public_kernel_steps

    for name in ("liger_kernel", "liger_kernel.transformers",
                 "liger_kernel.transformers.fused_linear_cross_entropy", "cut_cross_entropy"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    assert public_kernel_steps(torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 1])) == {}


def test_measure_runs_the_target_shape_first_survives_failures_and_keeps_its_budget(monkeypatch) -> None:
    import bench.tables as main_module
    from bench.spectral_fusion import TARGET_SHAPE

    clock = iter(range(1000))  # each perf_counter() call: one second later
    monkeypatch.setattr(main_module.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(main_module, "copy_gbps", lambda device: 3000.0)
    monkeypatch.setattr(main_module, "run_header", lambda device: {"device": "stand-in"})
    monkeypatch.setattr(main_module, "time_ms", lambda step, device: step())

    def make_step(case, backend=None, device="cuda"):
        if (backend or case.backend) == "cuda":
            raise RuntimeError("launch failed")  # one backend broken: the others are still measured
        return lambda: 1.0

    monkeypatch.setattr(main_module, "make_step", make_step)
    document = main_module.measure(GPU_CASES, budget_s=12.5)
    shapes = {(r["B"], r["n"], r["d"]) for r in document["records"]}
    assert shapes == {TARGET_SHAPE} and {r["backend"] for r in document["records"]} == {"triton", "torch.compile"}
    assert document["incomplete"]["cases"] == len(GPU_CASES) and document["incomplete"]["cases_tried"] < 13
    assert all(w["winner"] == "triton" for w in document["winners"])


def test_a_second_results_document_of_the_day_keeps_the_first(tmp_path) -> None:
    header = {"device": "AMD EPYC", "date": "2026-12-07"}
    first = results_path(tmp_path, header, "_train_step")
    assert first.name == "2026-12-07_amd-epyc_train_step.json"
    first.write_text("{}")
    second = results_path(tmp_path, header, "_train_step")
    assert second.name == "2026-12-07_amd-epyc_train_step_2.json"
    second.write_text("{}")
    assert results_path(tmp_path, header, "_train_step").name == "2026-12-07_amd-epyc_train_step_3.json"


def test_train_step_batches_have_ml100k_like_lengths() -> None:
    seq, lengths, target = batch(4096, 50, "cpu")
    assert lengths.min() >= 1 and lengths.max() == 50
    assert abs((lengths == 50).float().mean().item() - 0.604) < 0.03  # ML-100k's training rows: 60.4 % full
    assert abs(lengths.float().mean().item() - 39.1) < 1.5  # and a mean of 39.1 positions
    assert torch.equal((seq != 0).sum(1), lengths) and bool((target >= 1).all())
