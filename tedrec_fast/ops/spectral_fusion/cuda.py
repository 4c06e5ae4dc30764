"""Host side of the CUDA C++ backend of the spectral-fusion op: launch geometry and the launches.

The kernels are in ``csrc/spectral_fusion.cu`` (read its header comment first); this file says how
they are launched, for every loader (:mod:`tedrec_fast.cuda.loaders`):

* ``chunk_width(n, arch)`` channels per chunk, so that the shared-memory buffers (a few ``n x dc`` fp32
  tiles) fit the GPU target's shared memory per block (:mod:`tedrec_fast.kernels.targets`) at every
  ``n <= 512``;
* forward: ``filter_taps`` (h = irfft(W, n), fp32), then ``fusion_forward`` with one block per sequence;
* backward: ``filter_taps``; ``backward_stats`` (one block per sequence: the gates and the two
  per-position coefficients); ``backward_main`` on a ``(chunks, groups)`` grid, each block walking
  the sequences of its group and keeping partial sums of dh and dg in shared memory and registers;
  ``backward_reduce`` and ``backward_bias`` sum the partials in a fixed order; ``filter_taps_backward``
  turns dh into d complex_weight. No atomics anywhere: the backward is always deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tedrec_fast.cuda.loaders import Loader
from tedrec_fast.kernels.targets import INTERPRETER_ARCH, TARGETS, launch_arch, target
from tedrec_fast.ops.spectral_fusion.abi import STORAGE_SUFFIX

__all__ = [
    "THREADS",
    "CUDA_DTYPES",
    "CHUNK_WIDTHS",
    "VALID_CHUNK_WIDTHS",
    "SMEM_LIMIT",
    "chunk_width",
    "chunk_width_why_not",
    "largest_smem",
    "check_chunk_width",
    "forward_smem",
    "stats_smem",
    "main_smem",
    "backward_groups",
    "spectral_fusion_forward_cuda",
    "spectral_fusion_backward_cuda",
]

THREADS = 256  # TEDREC_THREADS in csrc/spectral_fusion.cu
SMEM_LIMIT = TARGETS[90].shared_per_block  # H100 opt-in dynamic shared memory per block (the largest target's)
CUDA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: channels per chunk a launch may use: the kernels take any power of two <= 32 (a chunk's lanes are
#: an aligned group of a warp), narrower chunks only add passes over the sequence; 4 only where the
#: target's shared memory needs it (n > 477 on the 99-KiB targets), so tuning sweeps leave it out
CHUNK_WIDTHS = (8, 16, 32)
VALID_CHUNK_WIDTHS = (4, *CHUNK_WIDTHS)
_F32 = 4


def chunk_width(n: int, arch: int = 90) -> int:
    """Channels per chunk for sequence length ``n`` on ``sm_<arch>``: 32 up to n = 128, 16 up to 256, 8 above,
    narrowed (to 4 at the least) until every kernel's shared memory fits the target's limit per block.
    ``ValueError`` when even the narrowest does not fit (:func:`chunk_width_why_not`)."""
    reason = chunk_width_why_not(n, arch)
    if reason is not None:
        raise ValueError(f"spectral_fusion (cuda): {reason}")
    widest = 32 if n <= 128 else 16 if n <= 256 else 8
    limit = target(arch).shared_per_block
    return max(dc for dc in VALID_CHUNK_WIDTHS if dc <= widest and largest_smem(n, dc) <= limit)


def chunk_width_why_not(n: int, arch: int) -> str | None:
    """Why no chunk width runs length ``n`` within ``sm_<arch>``'s shared memory per block, else ``None``."""
    limit = target(arch).shared_per_block
    need = largest_smem(n, VALID_CHUNK_WIDTHS[0])
    if need <= limit:
        return None
    return (f"n={n} needs {need} bytes of shared memory per block even at dc = {VALID_CHUNK_WIDTHS[0]}, more than "
            f"the {limit} of sm_{arch}")


def forward_smem(n: int, dc: int) -> int:
    """Bytes of shared memory of ``fusion_forward``: T, E, h chunks and two logits per position."""
    return (3 * n * dc + 2 * n) * _F32


def stats_smem(n: int, dc: int) -> int:
    """``backward_stats``: T, E, h, G chunks and four sums per position."""
    return (4 * n * dc + 4 * n) * _F32


def main_smem(n: int, dc: int) -> int:
    """``backward_main``: E, T, h, dF, dE2, dh chunks, four coefficients per position, a reduction buffer."""
    return (6 * n * dc + 4 * n + 2 * THREADS) * _F32


def largest_smem(n: int, dc: int) -> int:
    """The most shared memory (bytes) any sequence kernel takes at length ``n`` and chunk width ``dc``."""
    return max(forward_smem(n, dc), stats_smem(n, dc), main_smem(n, dc))


def check_chunk_width(n: int, dc: int, arch: int = 90) -> None:
    """``ValueError`` naming ``dc`` unless it is one of :data:`VALID_CHUNK_WIDTHS` and every kernel's shared
    memory fits ``sm_<arch>``'s limit per block at length ``n``."""
    if dc not in VALID_CHUNK_WIDTHS:
        raise ValueError(f"spectral_fusion (cuda): dc must be one of {VALID_CHUNK_WIDTHS}, got {dc!r}")
    limit = target(arch).shared_per_block
    if largest_smem(n, dc) > limit:
        raise ValueError(f"spectral_fusion (cuda): dc = {dc} needs {largest_smem(n, dc)} bytes of shared memory at "
                         f"n = {n}, more than the {limit} a block may have on sm_{arch}")


def _chunk_width(n: int, dc: int | None, device: torch.device) -> int:
    """``dc`` checked for length ``n``, or the default :func:`chunk_width` of ``n``, on ``device``'s target
    (sm_90's limits for the CPU emulator)."""
    arch = launch_arch(device) or INTERPRETER_ARCH
    if dc is None:
        return chunk_width(n, arch)
    check_chunk_width(n, dc, arch)
    return dc


def backward_groups(B: int, chunks: int, target_blocks: int) -> tuple[int, int]:
    """``(groups, seqs_per_group)`` for ``backward_main``: about ``target_blocks`` blocks in all, no empty group."""
    wanted = min(B, max(1, math.ceil(target_blocks / chunks)))
    per_group = math.ceil(B / wanted)
    return math.ceil(B / per_group), per_group


def _target_blocks(device: torch.device) -> int:
    """Blocks that fill the device: four per SM on a GPU; four on the CPU emulator (exercises several groups)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4


@dataclass(frozen=True)
class _Rows:
    """A ``(B, n, d)`` tensor as the kernels read it: a pointer and the strides of its batch and row dims."""

    tensor: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor) -> _Rows:
        return cls(x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous())

    def args(self) -> tuple[int, int, int]:
        return self.tensor.data_ptr(), self.tensor.stride(0), self.tensor.stride(1)


def _flat(x: torch.Tensor) -> int:
    return x.contiguous().data_ptr()


def _launch_filter_taps(loader: Loader, complex_weight: torch.Tensor, n: int, d: int) -> torch.Tensor:
    h = torch.empty((n, d), dtype=torch.float32, device=complex_weight.device)
    cw = complex_weight.contiguous()
    suffix = STORAGE_SUFFIX[str(cw.dtype).removeprefix("torch.")]
    loader.launch(f"tedrec_filter_taps_{suffix}", (math.ceil(n * d / THREADS), 1, 1), (THREADS, 1, 1), 0,
                  [h.data_ptr(), cw.data_ptr(), n, d], h.device)
    return h


def _gate_args(*params: torch.Tensor) -> tuple[list[int], list[torch.Tensor]]:
    """Pointers of the gate parameters as contiguous vectors, and the tensors to keep alive until the launch."""
    flat = [p.reshape(-1).contiguous() for p in params]
    return [p.data_ptr() for p in flat], flat


def spectral_fusion_forward_cuda(
    loader: Loader,
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    dc: int | None = None,
) -> torch.Tensor:
    """``V`` from the CUDA C++ kernels (written into ``out``, contiguous, if given). Inputs validated by the caller.

    ``dc`` overrides the channels per chunk (default :func:`chunk_width` of ``n``), for tuning
    (bench/tune_spectral_fusion.py); ``ValueError`` from :func:`check_chunk_width` if it cannot run.
    """
    B, n, d = item_emb.shape
    device, dtype = item_emb.device, item_emb.dtype
    dc = _chunk_width(n, dc, item_emb.device)
    if out is None:
        out = torch.empty((B, n, d), dtype=dtype, device=device)
    if B == 0:
        return out
    suffix = STORAGE_SUFFIX[str(dtype).removeprefix("torch.")]
    h = _launch_filter_taps(loader, complex_weight, n, d)
    item, text = _Rows.of(item_emb), _Rows.of(text_emb)
    gates, _keep = _gate_args(item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias)
    loader.launch(f"tedrec_fusion_forward_{suffix}", (B, 1, 1), (THREADS, 1, 1), forward_smem(n, dc),
                  [out.data_ptr(), *item.args(), *text.args(), h.data_ptr(), *gates, n, d, dc], device)
    return out


def spectral_fusion_backward_cuda(
    loader: Loader,
    grad_out: torch.Tensor,
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    d_item: torch.Tensor | None = None,
    d_text: torch.Tensor | None = None,
    *,
    dc: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """Gradients of ``(item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias,
    fusion_gate_weight, fusion_gate_bias)``, each shaped and typed like its input (``d_item`` and
    ``d_text`` written into the given contiguous tensors if any). Parameter gradients are summed in
    fp32 in a fixed order. ``dc`` as for :func:`spectral_fusion_forward_cuda`."""
    B, n, d = item_emb.shape
    device, dtype = item_emb.device, item_emb.dtype
    dc = _chunk_width(n, dc, item_emb.device)
    K = n // 2 + 1
    if d_item is None:
        d_item = torch.empty((B, n, d), dtype=dtype, device=device)
    if d_text is None:
        d_text = torch.empty((B, n, d), dtype=dtype, device=device)
    if B == 0:
        params = (complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias)
        return (d_item, d_text, *(torch.zeros_like(p) for p in params))
    suffix = STORAGE_SUFFIX[str(dtype).removeprefix("torch.")]
    f32 = {"dtype": torch.float32, "device": device}
    h = _launch_filter_taps(loader, complex_weight, n, d)
    grad, item, text = _Rows.of(grad_out), _Rows.of(item_emb), _Rows.of(text_emb)
    (gi_w, gi_b, gf_w, gf_b), _keep = _gate_args(item_gate_weight, item_gate_bias, fusion_gate_weight,
                                                 fusion_gate_bias)
    block = (THREADS, 1, 1)

    coef = torch.empty((B, n, 4), **f32)
    loader.launch(f"tedrec_fusion_backward_stats_{suffix}", (B, 1, 1), block, stats_smem(n, dc),
                  [coef.data_ptr(), *grad.args(), *item.args(), *text.args(), h.data_ptr(), gi_w, gi_b, gf_w,
                   gf_b, n, d, dc], device)

    chunks = math.ceil(d / dc)
    groups, per_group = backward_groups(B, chunks, _target_blocks(device))
    dh_part = torch.empty((groups, n, d), **f32)
    dg_part = torch.empty((groups, 2, d), **f32)
    loader.launch(f"tedrec_fusion_backward_main_{suffix}", (chunks, groups, 1), block, main_smem(n, dc),
                  [d_item.data_ptr(), d_text.data_ptr(), dh_part.data_ptr(), dg_part.data_ptr(), coef.data_ptr(),
                   *grad.args(), *item.args(), *text.args(), h.data_ptr(), gi_w, gf_w, B, n, d, dc, per_group],
                  device)

    dh = torch.empty((n, d), **f32)
    dg = torch.empty((2, d), **f32)
    loader.launch("tedrec_fusion_backward_reduce", (math.ceil((n + 2) * d / THREADS), 1, 1), block, 0,
                  [dh.data_ptr(), dg.data_ptr(), dh_part.data_ptr(), dg_part.data_ptr(), groups, n, d], device)
    db = torch.empty(2, **f32)
    loader.launch("tedrec_fusion_backward_bias", (1, 1, 1), block, 2 * THREADS * _F32,
                  [db.data_ptr(), coef.data_ptr(), B * n], device)
    d_weight = torch.empty((K, d, 2), **f32)
    loader.launch("tedrec_filter_taps_backward", (math.ceil(K * d / THREADS), 1, 1), block, 0,
                  [d_weight.data_ptr(), dh.data_ptr(), n, d], device)
    return (
        d_item,
        d_text,
        _param_grad(d_weight, complex_weight),
        _param_grad(dg[0], item_gate_weight),
        _param_grad(db[0], item_gate_bias),
        _param_grad(dg[1], fusion_gate_weight),
        _param_grad(db[1], fusion_gate_bias),
    )


def _param_grad(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``grad`` (fp32) shaped and typed like ``param``, in its own memory (custom-op outputs may not alias)."""
    return grad.reshape(param.shape).to(param.dtype, copy=True)
