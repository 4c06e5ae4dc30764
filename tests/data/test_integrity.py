"""Prepared data is checked: the manifest records each file's size, rows and sha256; loading detects truncated
files; prepare repairs them; an empty split is an error; prepared data is found before any download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tedrec_fast.data.prepare as prepare_module
from tedrec_fast.data import find_or_prepare, load_dataset, prepare_dataset
from tedrec_fast.data.download import DownloadError
from tedrec_fast.data.sources import SOURCES
from tedrec_fast.data.storage import sha256_file

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


@pytest.fixture
def prepared(tmp_path) -> Path:
    return prepare_dataset("ml-100k", tmp_path / "data", raw=FIXTURES / "ml-100k")


def _cut_at_line_boundary(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: len(lines) // 2]))


def _cut_inside_last_field(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-2])


def test_manifest_records_size_rows_and_hash(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    files = manifest["files"]
    assert set(files) == {"ml-100k.seq.parquet", "ml-100k.users.parquet", "ml-100k.text", "ml-100k.inter",
                          "ml-100k.train.inter", "ml-100k.valid.inter", "ml-100k.test.inter"}
    counts = manifest["counts"]
    assert files["ml-100k.train.inter"]["rows"] == counts["train"]
    assert files["ml-100k.seq.parquet"]["rows"] == files["ml-100k.inter"]["rows"] == counts["interactions"]
    assert files["ml-100k.users.parquet"]["rows"] == counts["users"]
    for name, record in files.items():
        assert record["bytes"] == (prepared / name).stat().st_size
        assert record["sha256"] == sha256_file(prepared / name)


@pytest.mark.parametrize("cut", [_cut_at_line_boundary, _cut_inside_last_field])
@pytest.mark.parametrize("name", ["ml-100k.test.inter", "ml-100k.train.inter", "ml-100k.text", "ml-100k.seq.parquet"])
def test_truncated_file_is_detected_on_load_and_repaired_by_prepare(prepared, cut, name):
    path = prepared / name
    good = path.read_bytes()
    cut(path)
    with pytest.raises(ValueError, match=rf"{name} has \d+ (bytes|rows), the manifest records"):
        load_dataset(prepared)
    again = prepare_dataset("ml-100k", prepared.parent, raw=FIXTURES / "ml-100k")
    assert again == prepared and path.read_bytes() == good
    load_dataset(prepared)


def test_changed_byte_is_repaired_by_prepare(prepared, monkeypatch):
    path = prepared / "ml-100k.valid.inter"
    good = path.read_bytes()
    data = bytearray(good)
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")
    path.write_bytes(bytes(data))  # same size, same rows: only the hash tells
    calls = []
    real = prepare_module.build_sequences
    monkeypatch.setattr(prepare_module, "build_sequences", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepare_dataset("ml-100k", prepared.parent, raw=FIXTURES / "ml-100k")
    assert calls == [1] and path.read_bytes() == good
    prepare_dataset("ml-100k", prepared.parent, raw=FIXTURES / "ml-100k")
    assert calls == [1]  # intact now: nothing redone


def test_missing_file_is_detected(prepared):
    (prepared / "ml-100k.users.parquet").unlink()
    with pytest.raises(ValueError, match=r"ml-100k.users.parquet is missing"):
        load_dataset(prepared)


def test_header_only_split_is_an_error_naming_the_file(prepared, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("ml-100k.train.inter", "ml-100k.valid.inter", "ml-100k.test.inter", "ml-100k.text"):
        shutil.copy(prepared / name, legacy / name)
    test = legacy / "ml-100k.test.inter"
    test.write_text(test.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"ml-100k.test.inter: no rows \(only a header\)"):
        load_dataset(legacy)


def test_prepared_data_is_used_before_any_download(prepared, monkeypatch, capsys):
    def offline(cache):
        raise DownloadError("offline")

    monkeypatch.setitem(SOURCES, "ml-100k", SOURCES["ml-100k"].__class__(
        **{**SOURCES["ml-100k"].__dict__, "fetch": offline}))
    assert find_or_prepare("ml-100k", prepared.parent) == prepared
    assert f"data: {prepared}" in capsys.readouterr().err
    with pytest.raises(DownloadError, match=r"no prepared data at .*other/ml-100k or .*other/datasets/ml-100k"):
        find_or_prepare("ml-100k", prepared.parent.parent / "other")
    with pytest.raises(ValueError, match=r"dataset 'mine': no prepared data at .* not a preset"):
        find_or_prepare("mine", prepared.parent)
    legacy_root = prepared.parent.parent / "legacy"
    (legacy_root / "datasets").mkdir(parents=True)
    shutil.copytree(prepared, legacy_root / "datasets" / "ml-100k")
    assert find_or_prepare("ml-100k", legacy_root) == legacy_root / "datasets" / "ml-100k"


def test_an_earlier_versions_prepared_directory_is_used(prepared, tmp_path):
    old = tmp_path / "old" / "datasets" / "ml-100k"
    old.mkdir(parents=True)
    names = ["ml-100k.inter", "ml-100k.text", "ml-100k.train.inter", "ml-100k.valid.inter", "ml-100k.test.inter"]
    for name in names:
        shutil.copy(prepared / name, old / name)
    (old / "manifest.json").write_text(json.dumps({"content_hash": "0" * 64, "files": names}))
    assert find_or_prepare("ml-100k", tmp_path / "old") == old
    assert load_dataset(old).n_users == load_dataset(prepared).n_users
