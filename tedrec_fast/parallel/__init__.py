"""Model parallelism across processes: the item table sharded by rows.

* :mod:`tedrec_fast.parallel.catalog`: the full-catalog cross-entropy of a row-sharded item table;
* :mod:`tedrec_fast.parallel.sharding`: row shards (:func:`shard_bounds`) and :class:`ShardedEmbedding`;
* :mod:`tedrec_fast.parallel.models`: :func:`to_catalog_parallel`, the catalog-parallel form of a recommender
  (its item table swapped for a :class:`ShardedEmbedding`; ``TrainConfig(catalog_parallel=True)`` under
  ``torchrun``, through :class:`tedrec_fast.train.strategy.CatalogSharded`).
"""

from tedrec_fast.parallel.catalog import sharded_full_catalog_cross_entropy
from tedrec_fast.parallel.models import (
    catalog_shard_of,
    check_replicated,
    merge_catalog_state_dicts,
    sharded_state_keys,
    to_catalog_parallel,
)
from tedrec_fast.parallel.sharding import CatalogShard, ShardedEmbedding, shard_bounds, sharded_embedding_lookup

__all__ = [
    "CatalogShard",
    "ShardedEmbedding",
    "catalog_shard_of",
    "check_replicated",
    "merge_catalog_state_dicts",
    "shard_bounds",
    "sharded_embedding_lookup",
    "sharded_full_catalog_cross_entropy",
    "sharded_state_keys",
    "to_catalog_parallel",
]
