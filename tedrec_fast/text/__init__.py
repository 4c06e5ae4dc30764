"""Frozen text embeddings of items from Hugging Face encoders (needs the ``tedrec_fast[text]`` extra).

Public API::

    from tedrec_fast.text import encode_texts, encode_dataset_texts, resolve_encoder
"""

from tedrec_fast.text.cache import encode_dataset_texts
from tedrec_fast.text.encode import encode_texts, pool_hidden_states
from tedrec_fast.text.resolve import resolve_encoder

__all__ = ["encode_texts", "encode_dataset_texts", "resolve_encoder", "pool_hidden_states"]
