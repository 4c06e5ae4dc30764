"""Loading the public TedRec (RecBole) model's weights into :class:`~tedrec_fast.models.TedRec`."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tedrec_fast.models.tedrec import TedRec

__all__ = ["load_public_tedrec_state_dict", "PUBLIC_TO_TEDREC_RENAMES"]

#: public name -> tedrec_fast name, for the names that differ; every other name is the same in both
PUBLIC_TO_TEDREC_RENAMES: dict[str, str] = {
    "plm_embedding.weight": "text_embeddings",
    "complex_weight": "fusion.complex_weight",
    "item_gating.weight": "fusion.item_gating.weight",
    "item_gating.bias": "fusion.item_gating.bias",
    "fusion_gating.weight": "fusion.fusion_gating.weight",
    "fusion_gating.bias": "fusion.fusion_gating.bias",
}


def load_public_tedrec_state_dict(model: TedRec, state_dict: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy the public TedRec model's weights into ``model`` (non-strict); return ``(missing, unexpected)``.

    Name mapping (public RecBole TedRec -> tedrec_fast):

    * identity for ``item_embedding.weight``, ``position_embedding.weight``, ``LayerNorm.{weight,bias}``,
      ``trm_encoder.layer.{i}.multi_head_attention.{query,key,value,dense,LayerNorm}.{weight,bias}``,
      ``trm_encoder.layer.{i}.feed_forward.{dense_1,dense_2,LayerNorm}.{weight,bias}``,
      ``moe_adaptor.experts.{k}.bias``, ``moe_adaptor.experts.{k}.lin.weight``, ``moe_adaptor.w_gate``,
      ``moe_adaptor.w_noise``;
    * ``complex_weight``, ``item_gating.*``, ``fusion_gating.*`` -> ``fusion.complex_weight``,
      ``fusion.item_gating.*``, ``fusion.fusion_gating.*``;
    * ``plm_embedding.weight`` (the frozen text table) -> the buffer ``text_embeddings``.

    Names already in tedrec_fast form load as they are. A RecBole checkpoint dict (with a
    ``"state_dict"`` entry) is accepted too.

    Returns:
        ``missing``: tedrec_fast names that got no value; ``unexpected``: input names that were not used
        (in the input's own spelling), e.g. ``complex_weight`` for a model built without the item filter.

    Raises:
        RuntimeError: a shared name has a different shape (e.g. another ``hidden_size`` or
            ``max_seq_length``).
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    renamed: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for name, value in state_dict.items():
        target = PUBLIC_TO_TEDREC_RENAMES.get(name, name)
        renamed[target] = value
        original[target] = name
    result = model.load_state_dict(renamed, strict=False)
    return list(result.missing_keys), [original[name] for name in result.unexpected_keys]
