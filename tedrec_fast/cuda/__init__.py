"""Runtime of the CUDA C++ kernels in ``csrc/``: their launch ABI, sources and loaders.

Loaders, in the order ``backend="cuda"`` tries them: the ahead-of-time extension ``tedrec_fast._C``,
then NVRTC through CuPy (compiled on first use, cached on disk). The CPU emulator runs the same kernels
on CPU tensors for the tests (``TEDREC_FAST_CUDA_EMULATE=1``).
"""
