"""The tolerances of :mod:`tedrec_fast.testing`, under the name the test files import."""

from tedrec_fast.testing import BACKWARD, FORWARD, FULL_CATALOG_CE_BACKWARD, FULL_CATALOG_CE_FORWARD, TF32

__all__ = ["FORWARD", "BACKWARD", "TF32", "FULL_CATALOG_CE_FORWARD", "FULL_CATALOG_CE_BACKWARD"]
