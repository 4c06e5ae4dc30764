"""Sequential recommenders: TedRec (and its paper ablations) and the SASRec baseline.

Public API::

    from tedrec_fast.models import TedRec, SASRec, build_model, load_public_tedrec_state_dict
"""

from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.public import load_public_tedrec_state_dict
from tedrec_fast.models.registry import MODEL_NAMES, build_model
from tedrec_fast.models.sasrec import SASRec
from tedrec_fast.models.tedrec import TedRec

__all__ = ["SequentialRecommender", "TedRec", "SASRec", "build_model", "load_public_tedrec_state_dict", "MODEL_NAMES"]
