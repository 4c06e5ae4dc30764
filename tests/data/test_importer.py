"""The table importer: atomic, CSV and Parquet give the same dataset; items with missing fields; bad raw data is a
clear error naming the file and line; the prepare CLI shows presets and the table mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tedrec_fast.config import TrainConfig
from tedrec_fast.data import TableSpec, load_dataset, prepare_dataset, prepare_table
from tedrec_fast.data.cli import prepare_main
from tedrec_fast.data.table import read_table
from tedrec_fast.models import build_model
from tedrec_fast.train import Trainer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
SMALL = FIXTURES / "ml-latest-small"


def _rows(directory: Path) -> dict[str, list]:
    data = load_dataset(directory)
    return {"tokens": data.item_tokens, "text": data.item_text,
            **{s: [t.tolist() for t in getattr(data, s).rows(slice(None))] for s in ("train", "valid", "test")}}


def _write_csv_and_parquet(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    inter = [line.split("\t") for line in (SMALL / "ml-latest-small.inter").read_text().splitlines()[1:]]
    items = [line.split("\t") for line in (SMALL / "ml-latest-small.item").read_text().splitlines()[1:]]
    csv_inter, csv_item = tmp_path / "log.csv", tmp_path / "movies.csv"
    csv_inter.write_text("uid,mid,stars,ts\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in inter))
    csv_item.write_text("mid,title,year,genres\n" + "".join(",".join(f'"{v}"' if v else "" for v in row) + "\n"
                                                          for row in items))
    pq_inter, pq_item = tmp_path / "log.parquet", tmp_path / "movies.parquet"
    pq.write_table(pa.table({"uid": [int(r[0]) for r in inter], "mid": [int(r[1]) for r in inter],
                             "ts": [int(r[3]) for r in inter]}), pq_inter)
    pq.write_table(pa.table({"mid": [int(r[0]) for r in items], "title": [r[1] or None for r in items],
                             "year": [r[2] or None for r in items], "genres": [r[3] or None for r in items]}), pq_item)
    return csv_inter, csv_item, pq_inter, pq_item


def test_items_with_missing_fields_prepare_with_the_preset_and_as_a_table(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(SMALL / "ml-latest-small.inter", raw / "ml-100k.inter")
    shutil.copy(SMALL / "ml-latest-small.item", raw / "ml-100k.item")
    preset = prepare_dataset("ml-100k", tmp_path / "preset", raw=raw)
    table = prepare_table(TableSpec(inter=str(SMALL / "ml-latest-small.inter"),
                                    item_table=str(SMALL / "ml-latest-small.item")), tmp_path / "table")
    assert table.name == "ml-latest-small"
    got = _rows(table)
    assert got == _rows(preset)
    assert "Untitled Reel Documentary." in got["text"]  # no release year
    assert "Blue Meadow 1999." in got["text"]  # no genre
    assert "2005." in got["text"]  # year only
    assert "8" not in got["tokens"] and "9" not in got["tokens"]  # no text at all / not in the item table


def test_csv_parquet_and_atomic_give_the_same_dataset(tmp_path):
    csv_inter, csv_item, pq_inter, pq_item = _write_csv_and_parquet(tmp_path)
    atomic = prepare_table(TableSpec(inter=str(SMALL / "ml-latest-small.inter"),
                                     item_table=str(SMALL / "ml-latest-small.item")), tmp_path / "a", name="d")
    columns = dict(user="uid", item="mid", timestamp="ts", text=("title", "year", "genres"))
    from_csv = prepare_table(TableSpec(inter=str(csv_inter), item_table=str(csv_item), **columns), tmp_path / "c",
                             name="d")
    from_parquet = prepare_table(TableSpec(inter=str(pq_inter), item_table=str(pq_item), **columns), tmp_path / "p",
                                 name="d")
    expected = _rows(atomic)
    assert _rows(from_csv) == expected and _rows(from_parquet) == expected
    for name in ("d.text", "d.train.inter", "d.valid.inter", "d.test.inter", "d.inter"):
        assert (from_csv / name).read_bytes() == (atomic / name).read_bytes() == (from_parquet / name).read_bytes()


def test_cli_table_flags_config_and_help(tmp_path, capsys):
    csv_inter, csv_item, _, _ = _write_csv_and_parquet(tmp_path)
    with pytest.raises(SystemExit):
        prepare_main(["--help"])
    help_text = capsys.readouterr().out
    assert "ml-100k" in help_text and "online-retail" in help_text and "--user-col" in help_text
    assert "prepare table --inter" in help_text
    assert prepare_main(["table", "--inter", str(csv_inter), "--item", str(csv_item), "--user-col", "uid",
                         "--item-col", "mid", "--time-col", "ts", "--text-cols", "title,year,genres",
                         "--out", str(tmp_path / "flags")]) == 0
    flags_out = capsys.readouterr().out
    assert str(tmp_path / "flags" / "log") in flags_out and "users=" in flags_out
    config = tmp_path / "log.yaml"
    config.write_text("inter: log.csv\nitem_table: movies.csv\nuser: uid\nitem: mid\ntimestamp: ts\n"
                      "text: title,year,genres\n")
    assert prepare_main(["table", "--config", str(config), "--name", "log", "--out", str(tmp_path / "cfg")]) == 0
    assert _rows(tmp_path / "cfg" / "log") == _rows(tmp_path / "flags" / "log")
    with pytest.raises(ValueError, match="--user-col: only for 'prepare table'"):
        prepare_main(["ml-100k", "--user-col", "x", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--inter"):
        prepare_main(["table", "--out", str(tmp_path)])


def test_without_item_table_the_text_is_the_id(tmp_path):
    directory = prepare_table(TableSpec(inter=str(SMALL / "ml-latest-small.inter")), tmp_path,
                              recbole_export=False)
    assert not (directory / "ml-latest-small.train.inter").exists()
    data = load_dataset(directory)
    assert data.item_text[1:] == data.item_tokens[1:]


def _atomic(tmp_path: Path, header: str, rows: list[str]) -> Path:
    path = tmp_path / "bad.inter"
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def _good_rows(n_users: int = 6, n_items: int = 6) -> list[str]:
    return [f"u{u}\ti{(u + j) % n_items}\t{100 * u + j}" for u in range(n_users) for j in range(n_items)]


@pytest.mark.parametrize("value, message", [
    ("nan", r"bad.inter, line 9: timestamp is nan, not a finite number"),
    ("inf", r"bad.inter, line 9: timestamp is inf, not a finite number"),
    ("yesterday", r"bad.inter, line 9: timestamp 'yesterday' is not a number"),
    ("", r"bad.inter, line 9: timestamp"),
])
def test_bad_timestamps_name_file_and_line(tmp_path, value, message):
    rows = _good_rows()
    rows[7] = rows[7].rsplit("\t", 1)[0] + "\t" + value
    path = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:float", rows)
    with pytest.raises(ValueError, match=message):
        read_table(TableSpec(inter=str(path)))


def test_token_timestamps_sort_as_numbers(tmp_path):
    rows = [f"u{u}\t{item}\t{time}" for u in range(5) for item, time in zip("abcde", (9, 10, 100, 11, 8))]
    path = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:token", rows)
    raw = read_table(TableSpec(inter=str(path)))
    assert raw.frame["timestamp"].tolist()[:5] == [9.0, 10.0, 100.0, 11.0, 8.0]
    directory = prepare_table(TableSpec(inter=str(path)), tmp_path / "out")
    assert (directory / "bad.test.inter").read_text().splitlines()[1] == "u0\te a b d\tc"  # 8 9 10 11 | 100


def test_float_ids_are_an_error_naming_the_file(tmp_path):
    path = _atomic(tmp_path, "user_id:token\titem_id:float\ttimestamp:float", _good_rows())
    with pytest.raises(ValueError, match=r"bad.inter, line 1: the id field item_id:float must hold tokens"):
        prepare_table(TableSpec(inter=str(path)), tmp_path / "out")
    parquet = tmp_path / "f.parquet"
    pq.write_table(pa.table({"user_id": ["a"], "item_id": [1.0], "timestamp": [1]}), parquet)
    with pytest.raises(ValueError, match=r"f.parquet, line 1: the id field item_id \(double\)"):
        read_table(TableSpec(inter=str(parquet)))


def test_malformed_rows_and_headers_name_file_and_line(tmp_path):
    rows = _good_rows()
    rows[3] = "u0\ti3"
    path = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:float", rows)
    with pytest.raises(ValueError, match=r"bad.inter, line 5: expected 3 fields, found 2"):
        read_table(TableSpec(inter=str(path)))
    empty_id = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:float", ["u\t\t1"])
    with pytest.raises(ValueError, match=r"bad.inter, line 2: item_id is empty"):
        read_table(TableSpec(inter=str(empty_id)))
    header_only = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:float", [])
    with pytest.raises(ValueError, match=r"bad.inter: no interactions \(only a header\)"):
        read_table(TableSpec(inter=str(header_only)))
    with pytest.raises(ValueError, match=r"bad.inter, line 1: no column 'when'"):
        read_table(TableSpec(inter=str(header_only), timestamp="when"))


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_unloadable_max_seq_length_is_an_error(tmp_path, bad):
    with pytest.raises(ValueError, match="max_seq_length must be an int >= 1"):
        prepare_dataset("ml-100k", tmp_path, raw=FIXTURES / "ml-100k", max_seq_length=bad)
    with pytest.raises(ValueError, match="max_seq_length must be an int >= 1"):
        prepare_table(TableSpec(inter=str(SMALL / "ml-latest-small.inter")), tmp_path, max_seq_length=bad)
    assert not any(tmp_path.iterdir())


def test_missing_attribute_dataset_trains(tmp_path):
    directory = prepare_table(TableSpec(inter=str(SMALL / "ml-latest-small.inter"),
                                        item_table=str(SMALL / "ml-latest-small.item")), tmp_path)
    data = load_dataset(directory, max_seq_length=8)
    torch.manual_seed(0)
    model = build_model("sasrec", data.n_items, 8, None, hidden_size=16, n_layers=1, n_heads=1, inner_size=32)
    config = TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=3, progress=False)
    result = Trainer(model, data, config, device="cpu").fit()
    assert set(result.test) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_preset_readers_refuse_non_finite_timestamps(tmp_path, value):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("meta_Office_Products.json", "Office_Products.csv"):
        shutil.copy(FIXTURES / "amazon" / name, raw / name)
    ratings = (raw / "Office_Products.csv").read_text().splitlines()
    ratings[3] = ratings[3].rsplit(",", 1)[0] + "," + value
    (raw / "Office_Products.csv").write_text("\n".join(ratings) + "\n")
    with pytest.raises(ValueError, match=r"Office_Products.csv, line 4: expected item,user,rating,unix-time"):
        prepare_dataset("amazon-office", tmp_path / "out", raw=raw)
    ml1m = tmp_path / "ml-1m"
    shutil.copytree(FIXTURES / "ml-1m", ml1m)
    lines = (ml1m / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[2] = lines[2].rsplit("::", 1)[0] + "::" + value
    (ml1m / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(ValueError, match=rf"ratings.dat, line 3: timestamp '{value}' is not a finite number"):
        prepare_dataset("ml-1m", tmp_path / "out", raw=ml1m)


def test_gzipped_csv_with_default_text_columns(tmp_path):
    import gzip

    csv_inter, csv_item, _, _ = _write_csv_and_parquet(tmp_path)
    for path in (csv_inter, csv_item):
        with gzip.open(path.with_suffix(".csv.gz"), "wb") as handle:
            handle.write(path.read_bytes())
    columns = dict(user="uid", item="mid", timestamp="ts")
    plain = prepare_table(TableSpec(inter=str(csv_inter), item_table=str(csv_item), **columns), tmp_path / "p")
    zipped = prepare_table(TableSpec(inter=str(csv_inter.with_suffix(".csv.gz")),
                                     item_table=str(csv_item.with_suffix(".csv.gz")), **columns), tmp_path / "z")
    assert zipped.name == plain.name == "log"
    assert _rows(zipped) == _rows(plain)
    assert "Untitled Reel Documentary." in _rows(plain)["text"]  # all item columns but the id, in order


def test_nothing_left_after_the_k_core_names_the_files(tmp_path):
    path = _atomic(tmp_path, "user_id:token\titem_id:token\ttimestamp:float", ["u\ta\t1", "u\tb\t2"])
    with pytest.raises(ValueError, match=r"bad.inter: no interactions left after the iterative 5-core filter"):
        prepare_table(TableSpec(inter=str(path)), tmp_path / "out")
