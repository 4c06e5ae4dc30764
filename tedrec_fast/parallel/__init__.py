"""Model parallelism across processes: the item table sharded by rows (:mod:`tedrec_fast.parallel.catalog`)."""

from tedrec_fast.parallel.catalog import sharded_full_catalog_cross_entropy

__all__ = ["sharded_full_catalog_cross_entropy"]
