"""Data preparation and loading for sequential recommendation (RecBole atomic files, docs/DESIGN.md §4).

Public API::

    from tedrec_fast.data import prepare_dataset, prepare_table, TableSpec, load_dataset, find_or_prepare, SOURCES

``prepare_dataset(source, out_dir)`` (a preset) or ``prepare_table(TableSpec(...), out_dir)`` (any interactions
table, :mod:`tedrec_fast.data.table`) writes ``out_dir/name/`` with (``ds`` = the name):

* ``ds.seq.parquet``, ``ds.users.parquet``: the compact sequences (:mod:`tedrec_fast.data.compact`), which
  :func:`load_dataset` reads into :class:`CompactSplit` rows gathered on demand;
* ``ds.train.inter``, ``ds.valid.inter``, ``ds.test.inter``: ``user_id:token item_id_list:token_seq item_id:token``,
  one row per sample (every prefix; leave-one-out), histories of at most ``max_seq_length`` items, oldest first;
* ``ds.inter``: ``user_id:token item_id:token timestamp:float``, the filtered interactions, user by user;
* ``ds.text``: ``item_id:token text:token_seq``, one row per item **in item-index order** (body row ``r`` is item
  index ``r``; index 0 is padding and not written). A ``ds.feat1CLS`` file for the dataset must use the same order
  (row 0 = padding);
* ``manifest.json``: content hash, parameters, raw files' sha256, counts, each file's size, rows and sha256.

The RecBole ``.inter`` files are skipped with ``recbole_export=False``.

Item order, user order and the filtering rules are documented in :mod:`tedrec_fast.data.sequences`.
"""

from typing import TYPE_CHECKING

from tedrec_fast._lazy import lazy_exports

if TYPE_CHECKING:
    from tedrec_fast.data.compact import CompactSplit
    from tedrec_fast.data.features import read_feat1cls, write_feat1cls
    from tedrec_fast.data.loading import SequenceSplit, SequentialDataset, load_dataset
    from tedrec_fast.data.locate import find_or_prepare
    from tedrec_fast.data.prepare import prepare_dataset, prepare_table
    from tedrec_fast.data.sources import SOURCES
    from tedrec_fast.data.table import TableSpec, read_table

#: public name -> the module it comes from (imported on first use: ``tedrec-fast prepare --help`` loads no torch)
_EXPORTS = {
    "CompactSplit": "tedrec_fast.data.compact",
    "read_feat1cls": "tedrec_fast.data.features",
    "write_feat1cls": "tedrec_fast.data.features",
    "SequenceSplit": "tedrec_fast.data.loading",
    "SequentialDataset": "tedrec_fast.data.loading",
    "load_dataset": "tedrec_fast.data.loading",
    "find_or_prepare": "tedrec_fast.data.locate",
    "prepare_dataset": "tedrec_fast.data.prepare",
    "prepare_table": "tedrec_fast.data.prepare",
    "SOURCES": "tedrec_fast.data.sources",
    "TableSpec": "tedrec_fast.data.table",
    "read_table": "tedrec_fast.data.table",
}

__all__ = [
    "SOURCES",
    "CompactSplit",
    "SequenceSplit",
    "SequentialDataset",
    "TableSpec",
    "find_or_prepare",
    "load_dataset",
    "prepare_dataset",
    "prepare_table",
    "read_table",
    "read_feat1cls",
    "write_feat1cls",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
