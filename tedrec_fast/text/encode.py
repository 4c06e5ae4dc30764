"""``encode_texts``: sentence vectors from any Hugging Face encoder, batched, fp16 on GPU."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tedrec_fast.text.resolve import EXTRA_HINT, resolve_encoder

__all__ = ["encode_texts", "pool_hidden_states", "POOLINGS"]

POOLINGS = ("mean", "cls")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"text encoding needs the transformers package: {EXTRA_HINT}") from err
    return transformers


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``(B, T, H)`` token states to ``(B, H)`` float32: ``"cls"`` = token 0, ``"mean"`` = mean over
    the tokens whose ``attention_mask`` is 1 (padding excluded)."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def encode_texts(
    texts: list[str],
    model_name_or_path: str = "minilm",
    pooling: str = "mean",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    fp16_on_gpu: bool = True,
    progress: bool = True,
    max_length: int | None = None,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Encode ``texts`` into a float32 array ``(len(texts), hidden_size)``, rows in input order.

    Args:
        texts: the sentences.
        model_name_or_path: ``"minilm"`` (all-MiniLM-L6-v2, 384-d, offline from PyPI), ``"mpnet"``
            (all-mpnet-base-v2, 768-d, offline from PyPI), a hub name or a local directory; see
            :func:`~tedrec_fast.text.resolve.resolve_encoder`.
        pooling: ``"mean"`` over non-padding tokens (sentence-transformers' pooling for MiniLM / MPNet)
            or ``"cls"`` (the first token, as TedRec uses BERT). No L2 normalisation is applied.
        batch_size: sentences per forward pass (sorted by length to cut padding).
        device: defaults to CUDA when available, else CPU.
        fp16_on_gpu: run the encoder in float16 on CUDA (pooling is done in float32).
        progress: say on stderr which encoder is loaded, then show a tqdm bar of the texts encoded.
        max_length: token limit per sentence; default ``min(tokenizer.model_max_length, 512)``.
        cache_dir: where ``"mpnet"`` is extracted (default ``~/.cache/tedrec_fast``).

    Raises:
        ImportError: transformers or the model package is missing (names the ``tedrec_fast[text]`` extra).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    transformers = _transformers()
    path, local_only = resolve_encoder(model_name_or_path, cache_dir)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    name = Path(str(model_name_or_path)).name
    if progress:
        tqdm.write(f"encode: loading {name} on {device} for {len(texts)} texts", file=sys.stderr)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=local_only).to(device).eval()
    if fp16_on_gpu and device.type == "cuda":
        model = model.half()
    limit = max_length or min(int(tokenizer.model_max_length), 512)

    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    bar = tqdm(total=len(texts), desc=f"encode {name}", unit="text", disable=not progress)
    with bar, torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            tokens = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=limit, return_tensors="pt"
            ).to(device)
            hidden = model(**tokens).last_hidden_state
            out[rows] = pool_hidden_states(hidden, tokens["attention_mask"], pooling).cpu().numpy()
            bar.update(len(rows))
    return out
