"""RecBole atomic files, feat1CLS files and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tedrec_fast.data import read_feat1cls, write_feat1cls
from tedrec_fast.data.atomic import SPLIT_FIELDS, read_atomic, write_atomic
from tedrec_fast.data.storage import atomic_directory

TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x85\xa0"), min_size=1,
                max_size=8)


def test_round_trip_all_field_types(tmp_path):
    path = tmp_path / "x.inter"
    write_atomic(path, {"user_id:token": ["u1", "é2"], "item_id_list:token_seq": [["a", "b"], "c"],
                        "rating:float": [1.0, 2.5], "item_id:token": ["b", "d"]})
    assert path.read_text(encoding="utf-8").splitlines() == [
        "user_id:token\titem_id_list:token_seq\trating:float\titem_id:token",
        "u1\ta b\t1.0\tb",
        "é2\tc\t2.5\td",
    ]
    frame = read_atomic(path)
    assert list(frame.columns) == ["user_id", "item_id_list", "rating", "item_id"]
    assert frame["user_id"].tolist() == ["u1", "é2"]
    assert frame["item_id_list"].tolist() == ["a b", "c"]
    assert frame["rating"].tolist() == [1.0, 2.5]


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(TOKEN, st.lists(TOKEN, min_size=1, max_size=5), TOKEN), max_size=20))
def test_round_trip_property(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rt") / "d.train.inter"
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], []]
    write_atomic(path, dict(zip(SPLIT_FIELDS, columns, strict=True)))
    frame = read_atomic(path, SPLIT_FIELDS)
    assert frame["user_id"].tolist() == [r[0] for r in rows]
    assert frame["item_id_list"].tolist() == [" ".join(r[1]) for r in rows]
    assert frame["item_id"].tolist() == [r[2] for r in rows]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("u1\ta b\tc\nu2\ta\tb\textra\n", "line 3: expected 3 tab-separated fields, found 4"),
        ("u1\ta b\tc\nu2\ta\n", "line 3: expected 3 tab-separated fields, found 2"),
        ("u1\ta b\tc\n\nu2\ta\tb\n", "line 3: expected 3 tab-separated fields, found 1"),
        ("u1\ta b\tc\nu 2\ta\tb\n", "line 3: token field 'user_id' is empty or has whitespace"),
        ("u1\ta b\t\n", "line 2: token field 'item_id' is empty"),
    ],
)
def test_malformed_split_file_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.train.inter"
    path.write_text("\t".join(SPLIT_FIELDS) + "\n" + body, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.train.inter, {message}"):
        read_atomic(path, SPLIT_FIELDS)


def test_malformed_float_header_and_encoding(tmp_path):
    path = tmp_path / "r.inter"
    path.write_text("user_id:token\trating:float\nu1\t3\nu2\tfive\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.inter, line 3: field 'rating' is not a number"):
        read_atomic(path)
    path.write_text("user_id:token\trating:int\nu1\t3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.inter, line 1: bad header field 'rating:int'"):
        read_atomic(path)
    path.write_bytes(b"user_id:token\nu1\nu\xff2\n")
    with pytest.raises(ValueError, match=r"r.inter, line 3: not valid UTF-8"):
        read_atomic(path)
    path.write_text("user_id:token\titem_id:token\nu1\ta\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.inter, line 1: header .* differs from the expected"):
        read_atomic(path, SPLIT_FIELDS)


def test_write_rejects_unwritable_values(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_atomic(tmp_path / "a.inter", {"item_id:token": ["ok", "not ok"]})
    with pytest.raises(ValueError, match="tab or a newline"):
        write_atomic(tmp_path / "a.text", {"text:token_seq": ["line\nbreak"]})
    assert not list(tmp_path.iterdir())


def test_feat1cls_round_trip_and_size_check(tmp_path):
    array = np.arange(3 * 8, dtype=np.float64).reshape(3, 8)
    path = tmp_path / "ds.feat1CLS"
    write_feat1cls(path, array)
    assert path.stat().st_size == 3 * 8 * 4
    loaded = read_feat1cls(path, dim=8)
    assert loaded.dtype == np.float32 and loaded.shape == (3, 8)
    np.testing.assert_array_equal(loaded, array.astype(np.float32))
    with pytest.raises(ValueError, match=r"ds.feat1CLS: size 96 bytes is not a multiple of 4 \* dim = 40"):
        read_feat1cls(path, dim=10)
    with pytest.raises(ValueError, match="2-D"):
        write_feat1cls(path, np.zeros(4))
    assert [p.name for p in tmp_path.iterdir()] == ["ds.feat1CLS"]


def test_atomic_directory_keeps_old_contents_on_failure(tmp_path):
    final = tmp_path / "ds"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a").write_text("new, half")
        raise RuntimeError("crash")
    assert (final / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    with atomic_directory(final) as tmp:
        (tmp / "b").write_text("new")
    assert [p.name for p in final.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
