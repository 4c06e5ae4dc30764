"""One route per setting: typed model settings, per-op backends, old keys, and modules that name their backend."""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import pytest
import torch

from tedrec_fast.config import (
    MODEL_CONFIGS,
    OpBackends,
    RunConfig,
    TedRecConfig,
    load_config,
    model_config_class,
)
from tedrec_fast.models import MODEL_NAMES, build_model
from tedrec_fast.models.fmlprec import FMLPRec
from tedrec_fast.models.sasrec import SASRec
from tedrec_fast.models.tedrec import TedRec
from tedrec_fast.models.tssr import TSSR
from tedrec_fast.models.unisrec import UniSRecStyle
from tedrec_fast.nn import FusedSpectralFusion, SpectralFilter, model_backends
from tedrec_fast.train.run import build_recommender, op_backends, train_run

#: constructor arguments that are not model settings: sizes of the data, and the ablation flags of the model name
_NOT_SETTINGS = {"self", "n_items", "text_embeddings", "max_seq_length", "use_moe_modulation", "use_gates",
                 "use_item_filter", "use_spectral_fusion"}
_CLASSES = {"tedrec": TedRec, "sasrec": SASRec, "fmlprec": FMLPRec, "unisrec": UniSRecStyle, "tssr": TSSR}
SMALL = {"hidden_size": 8, "inner_size": 16, "n_layers": 1}


def test_every_model_has_settings_and_the_constructors_share_their_defaults():
    assert set(MODEL_CONFIGS) == set(MODEL_NAMES)
    for name, model_class in _CLASSES.items():
        config = model_config_class(name)
        params = {p.name: p.default for p in inspect.signature(model_class.__init__).parameters.values()
                  if p.name not in _NOT_SETTINGS}
        fields = {f.name: f.default for f in dataclasses.fields(config)}
        backend_args = set(config.BACKEND_ARGS.values())
        assert set(params) == set(fields) | backend_args, name
        assert {k: v for k, v in params.items() if k not in backend_args} == fields, name
        assert all(params[arg] == "auto" for arg in backend_args)
        assert set(config.BACKEND_ARGS) <= {f.name for f in dataclasses.fields(OpBackends)}


def test_yaml_and_flags_set_settings_and_backends_op_by_op(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: sasrec\nmodel_settings: {sasrec: {hidden_size: 16, n_layers: 1}, tssr: {n_heads: 4}}\n"
                    "backends: {full_catalog_ce: torch, spectral_filter: triton}\n")
    cfg = load_config(path, {"backends": {"spectral_filter": "torch"}, "model_settings": {"sasrec": {"n_heads": 1}}})
    assert cfg.backends == OpBackends(spectral_fusion="auto", spectral_filter="torch", full_catalog_ce="torch")
    assert cfg.model_config().hidden_size == 16 and cfg.model_config().n_heads == 1
    assert cfg.model_config("tssr").n_heads == 4 and cfg.model_config("TSSR").hidden_size == 64
    assert cfg.model_kwargs() == {"hidden_size": 16, "n_layers": 1, "n_heads": 1, "inner_size": 256,
                                  "hidden_dropout": 0.5, "attn_dropout": 0.5, "reference": False,
                                  "loss_backend": "torch"}
    assert cfg.model_kwargs("fmlprec")["filter_backend"] == "torch"
    kwargs = cfg.model_kwargs("tedrec-wo-ag")
    assert (kwargs["fusion_backend"], kwargs["hidden_size"]) == ("auto", 300) and "use_gates" not in kwargs
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize("text, match", [
    ("model_settings: {tedrec: {hiden_size: 8}}", r"model_settings.tedrec: unknown setting 'hiden_size'; "
                                                  r"TedRecConfig has hidden_size"),
    ("model_settings: {tedrec: {fusion_backend: torch}}", r"set the backend with backends: \{spectral_fusion"),
    ("model_settings: {fmlprec: {loss_backend: torch}}", r"backends: \{full_catalog_ce"),
    ("model_settings: {gru4rec: {}}", r"unknown model 'gru4rec'; choose one of tedrec"),
    ("model_settings: {sasrec: {hidden_size: 8.5}}", r"model_settings.sasrec: .*hidden_size must be an int"),
    ("model_settings: {sasrec: {hidden_size: 0}}", r"model_settings.sasrec: .*hidden_size must be >= 1"),
    ("model: sasrek", r"unknown model 'sasrek'; choose one of tedrec, tedrec-wo-mm"),
    ("backends: {spectral_fuzion: torch}", r"backends: unknown op\(s\) \['spectral_fuzion'\]"),
    ("backends: {spectral_fusion: 3}", r"backends: spectral_fusion must be str"),
])
def test_bad_settings_name_the_setting(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises((ValueError, TypeError), match=match):
        load_config(path)


def test_old_keys_still_work_with_a_warning_naming_the_new_route(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model: fmlprec\nfusion_backend: torch\nmodel_args: {hidden_size: 8, filter_backend: triton}\n")
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(path)
    messages = " ".join(str(w.message) for w in caught)
    assert "backends: {spectral_fusion: torch}" in messages
    assert "model_settings: {'fmlprec': {'hidden_size': 8}}" in messages
    assert cfg.backends == OpBackends(spectral_fusion="torch", spectral_filter="triton")
    assert cfg.model_settings == {"fmlprec": {"hidden_size": 8}}
    # a flag (new route) wins over the file's old key; flat model_args belong to the final model
    with pytest.warns(FutureWarning):
        cfg = load_config(path, {"backends": {"spectral_fusion": "triton"}, "model": "sasrec"})
    assert cfg.backends.spectral_fusion == "triton" and cfg.model_settings == {"sasrec": {"hidden_size": 8}}
    # compare's old schema: a map from model name to arguments
    path.write_text("model_args: {tssr: {hidden_size: 32}, tedrec: {n_experts: 2, fusion_backend: cuda}}\n")
    with pytest.warns(FutureWarning):
        cfg = load_config(path)
    assert cfg.model_settings == {"tssr": {"hidden_size": 32}, "tedrec": {"n_experts": 2}}
    assert cfg.backends.spectral_fusion == "cuda"


def test_old_checkpoint_metadata_reads_silently():
    """The metadata of runs saved before (train: flat model_args; compare: resolved arguments) still builds."""
    old = {**RunConfig().to_dict(), "model": "tedrec", "fusion_backend": "auto",
           "model_args": {"hidden_size": 8, "fusion_backend": "torch", "n_experts": 2}}
    del old["backends"], old["model_settings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = RunConfig.from_dict(old)
    # the model_args' fusion_backend won over the top-level one then, and does now
    assert cfg.model_kwargs()["fusion_backend"] == "torch" and cfg.model_config().n_experts == 2


def test_every_op_backend_reaches_the_model_and_the_module_names_what_it_runs():
    cfg = load_config(overrides={"model": "tedrec", "model_settings": {"tedrec": {**SMALL, "n_experts": 2}},
                                 "max_seq_length": 6,
                                 "backends": {"spectral_fusion": "torch", "full_catalog_ce": "torch"}})
    text = torch.randn(20, 5)
    model = build_recommender(cfg, 20, text)
    assert isinstance(model.fusion, FusedSpectralFusion)
    assert (model.fusion.backend, model.loss_backend) == ("torch", "torch")
    assert model_backends(model, 4, "cpu", torch.float32) == {"spectral_fusion": ("torch", "torch"),
                                                              "full_catalog_ce": ("torch", "torch"),
                                                              "moe_modulation": (model.moe_adaptor.chosen_backend(
                                                                  4, "cpu", torch.float32), "auto")}
    auto = build_recommender(load_config(overrides={"model": "fmlprec", "max_seq_length": 6,
                                                    "model_settings": {"fmlprec": SMALL}}), 20, None)
    assert model_backends(auto, 4, "cpu", torch.float32) == {"spectral_filter": ("torch", "auto"),
                                                             "full_catalog_ce": ("torch-chunked", "auto")}
    assert op_backends(auto, torch.device("cpu"), 4, False) == {
        "spectral_fusion": "none (no fusion layer)", "spectral_filter": "torch (requested 'auto')",
        "full_catalog_ce": "torch-chunked (requested 'auto')"}
    # named backends: Triton runs CPU tensors under the interpreter (tests/conftest.py sets TRITON_INTERPRET=1)
    assert SpectralFilter(6, 8, backend="triton").chosen_backend(3, "cpu", torch.float32) == "triton"
    ablation = build_model("tedrec-wo-tf", 20, 6, text, **SMALL, n_experts=2)
    assert op_backends(ablation, torch.device("cpu"), 4, False)["spectral_fusion"].startswith(
        "torch (AblatedSpectralFusion")


def test_a_named_backend_that_cannot_run_says_why():
    fusion = FusedSpectralFusion(6, 8, backend="torch")
    assert fusion.chosen_backend(2, "cpu", torch.float64) == "torch"
    with pytest.raises(ValueError, match=r"spectral_fusion: backend='triton' cannot run this call: dtype"):
        FusedSpectralFusion(6, 8, backend="triton").chosen_backend(2, "cpu", torch.int32)


@pytest.mark.parametrize("name", ["sasrec", "fmlprec", "unisrec", "tssr", "tedrec"])
def test_unknown_loss_backend_fails_at_build(name):
    with pytest.raises(ValueError, match=r"full_catalog_ce backend must be one of \['auto', 'triton', "
                                         r"'torch-chunked', 'torch'\], got 'fast'"):
        build_model(name, 20, 6, torch.randn(20, 5), **SMALL, loss_backend="fast")


@pytest.mark.parametrize("name", ["sasrec", "fmlprec", "unisrec", "tssr", "tedrec"])
def test_loss_backend_is_the_one_the_loss_runs(name, monkeypatch):
    """Each model's loss calls the op with its ``loss_backend``; the reference and the chunked path agree."""
    import tedrec_fast.ops.full_catalog_ce.op as ce_op

    seen = []
    original = ce_op.choose_backend
    monkeypatch.setattr(ce_op, "choose_backend", lambda b, requested, p, op: seen.append(requested)
                        or original(b, requested, p, op=op))
    seq = torch.tensor([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    lens, target = torch.tensor([3, 6]), torch.tensor([4, 10])
    losses = []
    for backend in ("torch", "torch-chunked"):
        torch.manual_seed(0)
        extra = {"n_experts": 2, "fusion_backend": "torch"} if name == "tedrec" else {}
        model = build_model(name, 20, 6, torch.randn(20, 5), **SMALL, **extra, loss_backend=backend).eval()
        losses.append(model.calculate_loss(seq, lens, target))
    assert seen == ["torch", "torch-chunked"]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_typed_settings_check_their_types():
    assert TedRecConfig().hidden_size == 300
    with pytest.raises(TypeError, match="TedRecConfig: hidden_size must be an int, got str"):
        TedRecConfig(hidden_size="8")
    with pytest.raises(TypeError, match="TedRecConfig: temperature must be int or float, got bool"):
        TedRecConfig(temperature=True)
    with pytest.raises(ValueError, match=r"model_settings.tedrec-wo-ag: unknown setting 'use_gates'"):
        RunConfig(model_settings={"tedrec-wo-ag": {"use_gates": True}})  # the ablations are model names


def test_catalog_parallel_refuses_a_loss_backend_it_would_ignore():
    cfg = load_config(overrides={"catalog_parallel": True, "device": "cpu", "backends": {"full_catalog_ce": "torch"}})
    with pytest.raises(ValueError, match=r"backends.full_catalog_ce='torch' does not apply to catalog_parallel"):
        train_run(cfg)
