"""Data preparation and loading for sequential recommendation (RecBole atomic files, docs/DESIGN.md §4).

Public API::

    from tedrec_fast.data import prepare_dataset, load_dataset, read_feat1cls, write_feat1cls, SOURCES

``prepare_dataset(source, out_dir)`` writes ``out_dir/source/`` with (``ds`` = the source name):

* ``ds.train.inter``, ``ds.valid.inter``, ``ds.test.inter``: ``user_id:token item_id_list:token_seq item_id:token``,
  one row per sample (every prefix; leave-one-out), histories of at most ``max_seq_length`` items, oldest first;
* ``ds.inter``: ``user_id:token item_id:token timestamp:float``, the filtered interactions, user by user;
* ``ds.text``: ``item_id:token text:token_seq``, one row per item **in item-index order** (body row ``r`` is item
  index ``r``; index 0 is padding and not written). A ``ds.feat1CLS`` file for the dataset must use the same order
  (row 0 = padding);
* ``manifest.json``: content hash, parameters, raw files' sha256, counts, file list.

Item order, user order and the filtering rules are documented in :mod:`tedrec_fast.data.sequences`.
"""

from tedrec_fast.data.features import read_feat1cls, write_feat1cls
from tedrec_fast.data.loading import SequenceSplit, SequentialDataset, load_dataset
from tedrec_fast.data.prepare import prepare_dataset
from tedrec_fast.data.sources import SOURCES

__all__ = [
    "SOURCES",
    "SequenceSplit",
    "SequentialDataset",
    "load_dataset",
    "prepare_dataset",
    "read_feat1cls",
    "write_feat1cls",
]
