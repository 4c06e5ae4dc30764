"""The full-catalog cross-entropy op: ``reference.py`` is the spec, ``op.py`` the dispatcher, the
chunked torch path and autograd, ``triton.py`` the Triton launchers of the kernels in
``tedrec_fast.kernels.full_catalog_ce``."""

from tedrec_fast.ops.full_catalog_ce.op import BACKENDS, full_catalog_cross_entropy
from tedrec_fast.ops.full_catalog_ce.reference import full_catalog_cross_entropy_reference

__all__ = ["BACKENDS", "full_catalog_cross_entropy", "full_catalog_cross_entropy_reference"]
