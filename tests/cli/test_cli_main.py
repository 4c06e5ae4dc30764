"""The tedrec-fast CLI, with stand-ins for the data, text and model packages."""

import json
import sys
import types
from dataclasses import asdict

import pytest
import torch

from tedrec_fast.cli import main
from tedrec_fast.config import RunConfig, SASRecConfig, TedRecConfig, load_config
from tedrec_fast.train import load_checkpoint
from tedrec_fast.train.run import CPU_SCHEDULE
from tests.train.support import TinyRec, make_dataset


def _with_text(dataset):
    dataset.item_text = [""] + [f"item {i}." for i in range(1, dataset.n_items)]
    return dataset


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """Replace tedrec_fast.data / .models / .data.cli with stand-ins; record what they were called with."""
    calls = {}
    data = types.ModuleType("tedrec_fast.data")

    def find_or_prepare(dataset, data_dir, raw=None, max_seq_length=50):
        calls["prepare"] = (dataset, str(data_dir), raw, max_seq_length)
        return tmp_path / "prepared"

    data.find_or_prepare = find_or_prepare
    data.load_dataset = lambda path, max_seq_length=50: _with_text(make_dataset(max_seq_length=max_seq_length))
    models = types.ModuleType("tedrec_fast.models")

    def build_model(name, n_items, max_seq_length, text_embeddings, **overrides):
        calls["build"] = (name, n_items, max_seq_length, overrides)
        return TinyRec(n_items, max_seq_length)

    models.build_model = build_model
    models.needs_text_embeddings = lambda name: name.lower().startswith("tedrec")
    text = types.ModuleType("tedrec_fast.text")

    def encode_dataset_texts(item_text, dataset_name, encoder, cache_dir):
        calls["encode"] = (len(item_text), dataset_name, encoder)
        return torch.zeros(len(item_text), 4).numpy()

    text.encode_dataset_texts = encode_dataset_texts
    data_cli = types.ModuleType("tedrec_fast.data.cli")
    data_cli.add_prepare_arguments = lambda parser: parser.add_argument("source")
    data_cli.run_prepare = lambda args: calls.setdefault("run_prepare", args.source) and 0
    for name, module in (("tedrec_fast.data", data), ("tedrec_fast.models", models), ("tedrec_fast.text", text),
                         ("tedrec_fast.data.cli", data_cli)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "train" in capsys.readouterr().out


def test_train_then_evaluate(stand_ins, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--model", "sasrec", "--device", "cpu", "--epochs", "2", "--max-seq-length", "6",
            "--data-dir", str(tmp_path / "cache"), "--output-dir", str(run_dir), "--record",
            "--results-dir", str(tmp_path / "results"), "--no-progress", "--deterministic", "--lr", "0.01",
            "--max-minutes", "60"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "CPU short schedule" in out and "'epochs'" not in out.split("CPU short schedule")[1].split("\n")[0]
    assert "spectral_fusion backend: none" in out and "ndcg@10" in out
    assert stand_ins["prepare"] == ("ml-100k", str(tmp_path / "cache"), None, 6)
    assert stand_ins["build"] == ("sasrec", 30, 6, {**asdict(SASRecConfig()), "loss_backend": "auto"})
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    (result_file,) = (tmp_path / "results").glob("train_*_cpu.json")
    (record,) = json.loads(result_file.read_text())
    assert record["op"] == "train" and record["epochs"] == 2 and record["dataset"] == "tiny"
    assert {"seconds_per_epoch", "test_recall@10", "test_ndcg@10", "test_recall@20", "test_ndcg@20"} <= set(record)
    assert record["batch_size"] == CPU_SCHEDULE["batch_size"]
    assert (record["stop_reason"], record["max_minutes"]) == ("epochs", 60.0)
    assert (record["lr"], record["patience"], record["threads"]) == (0.01, 10, torch.get_num_threads())
    assert record["processor"] and record["commit"] and record["torch"] == torch.__version__

    assert main(["evaluate", "--checkpoint", str(run_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    test_line = next(line for line in out.splitlines() if line.startswith("test"))
    assert f"{record['test_ndcg@10']:.4f}" in test_line
    assert record["backends"] == {"spectral_fusion": "none (no fusion layer)"}  # TinyRec runs no op

    # evaluate takes the saved settings and the backend flags of train; the other backends stay as saved
    assert main(["evaluate", "--checkpoint", str(run_dir), "--device", "cpu", "--loss-backend", "torch"]) == 0
    assert stand_ins["build"] == ("sasrec", 30, 6, {**asdict(SASRecConfig()), "loss_backend": "torch"})


def test_backend_flags_fill_the_backends_section():
    from tedrec_fast.cli import _overrides, build_parser

    args = build_parser().parse_args(["train", "--fusion-backend", "torch", "--full-catalog-ce-backend", "triton",
                                      "--spectral-filter-backend", "auto"])
    assert _overrides(args)["backends"] == {"spectral_fusion": "torch", "full_catalog_ce": "triton",
                                            "spectral_filter": "auto"}
    assert "backends" not in _overrides(build_parser().parse_args(["compare"]))
    args = build_parser().parse_args(["compare", "--spectral-fusion-backend", "cuda"])
    assert load_config(None, _overrides(args)).backends.spectral_fusion == "cuda"


def test_max_steps_zero_means_no_cap_and_config_file(stand_ins, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("batch_size: 64\nepochs: 1\n")
    argv = ["train", "--config", str(config), "--max-steps-per-epoch", "0", "--device", "cpu",
            "--output-dir", str(tmp_path / "run"), "--no-progress", "--max-seq-length", "6"]
    assert main(argv) == 0
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["train_config"]["batch_size"] == 64
    assert last["train_config"]["max_steps_per_epoch"] is None
    assert stand_ins["encode"] == (30, "tiny", "minilm")
    assert stand_ins["build"] == ("tedrec", 30, 6, {**asdict(TedRecConfig()), "fusion_backend": "auto",
                                                    "loss_backend": "auto", "moe_backend": "auto"})


def test_prepare_delegates(stand_ins):
    assert main(["prepare", "ml-1m"]) == 0
    assert stand_ins["run_prepare"] == "ml-1m"


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        load_config(bad)
    with pytest.raises(TypeError, match="dataset"):
        RunConfig(dataset=3)
    assert load_config(overrides={"epochs": 5}).train.epochs == 5


def test_backends_lists_every_op_backend_and_loader(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for line in ("spectral_fusion", "full_catalog_cross_entropy", "  cuda ", "  torch          available",
                 "loaders of the CUDA C++ kernels", "  extension ", "  nvrtc ", "  emulator "):
        assert line in out
