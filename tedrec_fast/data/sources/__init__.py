"""Registry of the public sources that :func:`tedrec_fast.data.prepare_dataset` can prepare."""

from tedrec_fast.data.sources import amazon, movielens, online_retail
from tedrec_fast.data.sources.common import Source

SOURCES: dict[str, Source] = {
    source.name: source for source in (online_retail.SOURCE, movielens.ML_100K, movielens.ML_1M, *amazon.SOURCES)
}

__all__ = ["SOURCES", "Source"]
