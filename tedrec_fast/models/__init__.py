"""Sequential recommenders: TedRec (and its paper ablations) and the SASRec, FMLP-Rec, UniSRec-style and TSSR
baselines.

Public API::

    from tedrec_fast.models import TedRec, SASRec, FMLPRec, UniSRecStyle, TSSR, build_model
    from tedrec_fast.models import load_public_tedrec_state_dict
"""

from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.fmlprec import FMLPRec
from tedrec_fast.models.public import load_public_tedrec_state_dict
from tedrec_fast.models.registry import MODEL_NAMES, build_model, needs_text_embeddings
from tedrec_fast.models.sasrec import SASRec
from tedrec_fast.models.tedrec import TedRec
from tedrec_fast.models.tssr import TSSR
from tedrec_fast.models.unisrec import UniSRecStyle

__all__ = ["SequentialRecommender", "TedRec", "SASRec", "FMLPRec", "UniSRecStyle", "TSSR", "build_model",
           "needs_text_embeddings", "load_public_tedrec_state_dict", "MODEL_NAMES"]
