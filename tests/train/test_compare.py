"""``tedrec-fast compare``: the table, its three files, the CLI, and a CPU smoke run of every model."""

from __future__ import annotations

import csv
import json
import sys
import types
from dataclasses import asdict

import pytest
import torch

from tedrec_fast.cli import main
from tedrec_fast.config import SASRecConfig, TedRecConfig, TrainConfig, TSSRConfig
from tedrec_fast.train.compare import (
    check_model_names,
    compare_models,
    comparison_table,
    format_markdown,
    parse_model_list,
    write_comparison,
)
from tests.train.support import TinyRec, make_dataset

TINY = TrainConfig(epochs=2, batch_size=32, max_steps_per_epoch=3, progress=False, patience=2)


def _metrics(r10, r20, n10, n20):
    return {"recall@10": r10, "recall@20": r20, "ndcg@10": n10, "ndcg@20": n20}


def test_parse_and_check_model_names():
    assert parse_model_list(" SASRec, tssr ,,tedrec") == ["sasrec", "tssr", "tedrec"]
    with pytest.raises(ValueError, match="more than once"):
        parse_model_list("sasrec,sasrec")
    with pytest.raises(ValueError, match="at least one"):
        parse_model_list(" , ")
    with pytest.raises(TypeError, match="models"):
        parse_model_list(3)
    with pytest.raises(ValueError, match=r"unknown model\(s\) fmlprec; known models: sasrec, tedrec"):
        check_model_names(["sasrec", "fmlprec"], ("sasrec", "tedrec"))


def test_improvement_over_best_baseline():
    table = comparison_table({"sasrec": _metrics(0.10, 0.20, 0.05, 0.08), "tssr": _metrics(0.12, 0.18, 0.06, 0.0),
                              "tedrec": _metrics(0.15, 0.25, 0.03, 0.0)})
    assert table.improvement["R@10"] == pytest.approx(25.0)
    assert table.improvement["R@20"] == pytest.approx(25.0)
    assert table.improvement["N@10"] == pytest.approx(-50.0)
    assert list(table.values) == ["R@10", "R@20", "N@10", "N@20"]
    md = format_markdown(table)
    assert "| metric | sasrec | tssr | tedrec | Improv. |" in md and "+25.00%" in md and "**0.1500**" in md
    assert comparison_table({"sasrec": _metrics(0.1, 0.2, 0.3, 0.4)}).improvement is None
    with pytest.raises(ValueError, match="lacks ndcg@20"):
        comparison_table({"sasrec": {"recall@10": 0.1, "recall@20": 0.1, "ndcg@10": 0.1}})


def test_compare_models_writes_three_files(tmp_path):
    dataset = make_dataset(max_seq_length=6)
    names = ["sasrec", "tedrec"]
    results = compare_models(dataset, names, lambda name: TinyRec(dataset.n_items, 6, hidden=8 if name == "sasrec"
                             else 12), TINY, device="cpu", output_dir=tmp_path)
    assert list(results) == names and all((tmp_path / n / "best.pt").is_file() for n in names)
    paths = write_comparison(comparison_table({n: r.test for n, r in results.items()}), tmp_path, title="tiny")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    rows = list(csv.reader(paths["csv"].open()))
    assert rows[0] == ["metric", "sasrec", "tedrec", "improvement_percent"] and len(rows) == 5
    assert "Improv." in paths["md"].read_text() and paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_result():
    dataset = make_dataset(max_seq_length=6)
    a, b = (compare_models(dataset, ["x"], lambda _: TinyRec(dataset.n_items, 6), TINY, device="cpu")["x"]
            for _ in range(2))
    assert a.test == b.test


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """Stand-in data, text and model packages for the CLI; records what they were called with."""
    calls = {"build": []}
    data = types.ModuleType("tedrec_fast.data")

    def find_or_prepare(dataset, data_dir, raw=None, max_seq_length=50):
        calls["prepare"] = dataset
        return tmp_path / "prepared"

    def load_dataset(path, max_seq_length=50):
        dataset = make_dataset(max_seq_length=max_seq_length)
        dataset.item_text = [""] + [f"item {i}." for i in range(1, dataset.n_items)]
        return dataset

    data.find_or_prepare, data.load_dataset = find_or_prepare, load_dataset
    models = types.ModuleType("tedrec_fast.models")
    models.MODEL_NAMES = ("sasrec", "tedrec", "tssr")
    models.needs_text_embeddings = lambda name: name != "sasrec"

    def build_model(name, n_items, max_seq_length, text_embeddings, **overrides):
        calls["build"].append((name, text_embeddings is not None, overrides))
        return TinyRec(n_items, max_seq_length)

    models.build_model = build_model
    text = types.ModuleType("tedrec_fast.text")
    text.encode_dataset_texts = lambda item_text, name, encoder, cache: torch.zeros(len(item_text), 4).numpy()
    for name, module in (("tedrec_fast.data", data), ("tedrec_fast.models", models), ("tedrec_fast.text", text)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_cli_compare(stand_ins, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "online-retail", "--models", "sasrec,tssr,tedrec", "--device", "cpu",
            "--max-seq-length", "6", "--epochs", "1", "--batch-size", "32", "--output-dir", str(out),
            "--data-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"), "--record",
            "--no-progress"]
    assert main(argv) == 0
    assert stand_ins["prepare"] == "online-retail"
    auto = {"loss_backend": "auto"}
    assert stand_ins["build"] == [("sasrec", False, {**asdict(SASRecConfig()), **auto}),
                                  ("tssr", True, {**asdict(TSSRConfig()), **auto}),
                                  ("tedrec", True, {**asdict(TedRecConfig()), "fusion_backend": "auto",
                                                    "moe_backend": "auto", **auto})]
    assert {p.name for p in out.iterdir()} >= {"comparison.md", "comparison.csv", "comparison.png", "sasrec", "tedrec"}
    assert "Improv." in capsys.readouterr().out
    (result_file,) = (tmp_path / "results").glob("train_*_cpu.json")
    records = json.loads(result_file.read_text())
    assert [r["model"] for r in records] == ["sasrec", "tssr", "tedrec"] and all(r["op"] == "train" for r in records)
    assert records[0]["encoder"] is None and records[1]["encoder"] == "minilm"
    stand_ins["build"].clear()  # a compared model's run evaluates with the settings it was trained with
    assert main(["evaluate", "--checkpoint", str(out / "tssr"), "--device", "cpu", "--no-progress"]) == 0
    assert stand_ins["build"] == [("tssr", True, {**asdict(TSSRConfig()), **auto})]


def _record(model, dataset="online-retail", ndcg10=0.1, **extra):
    test = {f"test_{k}": v for k, v in _metrics(2 * ndcg10, 3 * ndcg10, ndcg10, 1.2 * ndcg10).items()}
    return {"op": "train", "dataset": dataset, "model": model, "device": "NVIDIA H100", "date": "2026-11-23",
            "epochs": 30, "stop_reason": "patience", **test, **extra}


def test_cli_compare_from_records_trains_nothing(tmp_path, capsys):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([_record("tedrec", ndcg10=0.05), _record("sasrec", ndcg10=0.07),
                                 {"op": "spectral_fusion"}, _record("tedrec", dataset="ml-100k", ndcg10=0.9)]))
    second.write_text(json.dumps([_record("tedrec", ndcg10=0.13, stop_reason="time budget")]))  # the later run wins
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "online-retail", "--from-records", str(first), str(second),
            "--output-dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Stopped by the time budget, possibly before converging: tedrec." in printed
    rows = {row[0]: row[1:] for row in csv.reader((out / "comparison.csv").read_text().splitlines())}
    assert rows["metric"] == ["tedrec", "sasrec", "improvement_percent"]
    assert float(rows["N@10"][0]) == pytest.approx(0.13) and float(rows["N@10"][2]) == pytest.approx(100 * 0.06 / 0.07)
    assert "time budget" in (out / "comparison.md").read_text()
    with pytest.raises(ValueError, match="no 'op': 'train' record of tssr on dataset 'online-retail'"):
        main(["--debug", *argv, "--models", "sasrec,tssr"])  # --debug: raise, not exit 2
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: expected a JSON list"):
        main(["--debug", "compare", "--dataset", "online-retail", "--from-records", str(tmp_path / "bad.json")])


def test_seeds_give_mean_and_sample_std():
    runs = [_metrics(0.10, 0.20, 0.05, 0.08), _metrics(0.12, 0.22, 0.07, 0.10), _metrics(0.14, 0.21, 0.06, 0.09)]
    table = comparison_table({"sasrec": runs, "tedrec": _metrics(0.15, 0.25, 0.03, 0.05)})
    assert table.runs == {"sasrec": 3, "tedrec": 1}
    assert (table.values["R@10"]["sasrec"], table.spread["R@10"]["sasrec"]) == pytest.approx((0.12, 0.02))
    assert (table.values["N@10"]["sasrec"], table.spread["N@10"]["sasrec"]) == pytest.approx((0.06, 0.01))
    assert "tedrec" not in table.spread["R@10"]  # one run: no spread
    assert table.improvement["R@10"] == pytest.approx(25.0)  # on the means
    md = format_markdown(table)
    assert "| metric | sasrec (3 seeds) | tedrec | Improv. |" in md
    assert "| N@10 | **0.0600 ± 0.0100** | 0.0300 |" in md
    with pytest.raises(ValueError, match=r"test_metrics\['sasrec'\]: no run"):
        comparison_table({"sasrec": []})
    with pytest.raises(ValueError, match=r"test_metrics\['sasrec'\] lacks ndcg@20"):
        comparison_table({"sasrec": [runs[0], {"recall@10": 0.1, "recall@20": 0.1, "ndcg@10": 0.1}]})


def test_cli_compare_from_records_averages_seeds(tmp_path, capsys):
    records = tmp_path / "seeds.json"
    records.write_text(json.dumps([
        _record("sasrec", ndcg10=0.5, seed=1, batch_size=256),  # replaced below by the same seed's later run
        _record("sasrec", ndcg10=0.06, seed=1, batch_size=256), _record("sasrec", ndcg10=0.08, seed=2, batch_size=256),
        _record("tedrec", ndcg10=0.07, seed=1, batch_size=256), _record("tedrec", ndcg10=0.09, seed=2, batch_size=256),
        _record("tedrec", ndcg10=0.11, seed=3, batch_size=256)]))
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "online-retail", "--from-records", str(records), "--output-dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "sasrec seeds 1, 2 (30, 30 epochs), tedrec seeds 1, 2, 3 (30, 30, 30 epochs)" in printed
    assert "mean ± sample standard deviation" in printed and "0.0900 ± 0.0200" in printed
    assert "different schedules" not in printed
    rows = {row[0]: row[1:] for row in csv.reader((out / "comparison.csv").read_text().splitlines())}
    assert rows["metric"] == ["sasrec", "tedrec", "sasrec_std", "tedrec_std", "improvement_percent"]
    assert [float(v) for v in rows["N@10"]] == pytest.approx([0.07, 0.09, 2 ** 0.5 / 100, 0.02, 100 * 0.02 / 0.07],
                                                             rel=1e-4)  # six decimals in the file
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([_record("tedrec", seed=1, batch_size=256), _record("tedrec", seed=2, batch_size=128)]))
    apart = tmp_path / "apart.json"
    apart.write_text(json.dumps([_record("sasrec", seed=1, batch_size=128, lr=0.002),
                                 _record("tedrec", seed=1, batch_size=256, lr=0.001)]))
    assert main(["compare", "--dataset", "online-retail", "--from-records", str(apart), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sasrec 2026-11-23 (seed 1, 30 epochs), tedrec 2026-11-23 (seed 1, 30 epochs)." in printed
    assert ("The models were trained on different schedules: batch_size sasrec 128, tedrec 256; lr sasrec 0.002, "
            "tedrec 0.001." in printed)
    with pytest.raises(ValueError, match=r"tedrec: its records on 'online-retail' mix schedules \(batch_size 128 "
                                         r"and 256 across seeds\)"):
        main(["--debug", "compare", "--dataset", "online-retail", "--from-records", str(mixed)])


def test_cli_compare_unknown_model_fails_fast(stand_ins, tmp_path):
    with pytest.raises(ValueError, match=r"fmlprec; known models: sasrec, tedrec, tssr"):
        main(["--debug", "compare", "--models", "sasrec,fmlprec,tedrec", "--device", "cpu", "--data-dir",
              str(tmp_path)])
    assert "prepare" not in stand_ins and not stand_ins["build"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_args: {hidden_size: 8}\n")
    with pytest.warns(FutureWarning, match="model_settings"), pytest.raises(ValueError, match="model_args"):
        main(["--debug", "compare", "--config", str(cfg), "--models", "sasrec", "--device", "cpu",
              "--data-dir", str(tmp_path)])


def test_smoke_every_model_on_ml100k(tmp_path):
    """One capped epoch of sasrec, unisrec, tssr and tedrec on the real ML-100k (random text vectors)."""
    from tedrec_fast.data import load_dataset, prepare_dataset
    from tedrec_fast.models import build_model

    try:
        dataset = load_dataset(prepare_dataset("ml-100k", tmp_path / "data"))
    except Exception as exc:  # offline and not cached: nothing to smoke-test on
        pytest.skip(f"ML-100k unavailable: {exc}")
    text = torch.randn(dataset.n_items, 32)
    sizes = {"hidden_size": 16, "inner_size": 32, "n_layers": 1}
    extra = {"tedrec": {"n_experts": 2, "fusion_backend": "torch"}, "unisrec": {"n_experts": 2}}
    names = ["sasrec", "unisrec", "tssr", "tedrec"]
    config = TrainConfig(epochs=1, batch_size=128, max_steps_per_epoch=2, eval_batch_size=1024, progress=False)
    results = compare_models(
        dataset, names, lambda n: build_model(n, dataset.n_items, 50, text, **sizes, **extra.get(n, {})),
        config, device="cpu")
    table = comparison_table({n: r.test for n, r in results.items()})
    assert table.models == names and table.improvement is not None
    assert all(0.0 <= v <= 1.0 for row in table.values.values() for v in row.values())
