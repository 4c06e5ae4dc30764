// Every op's CUDA C++ kernels as one translation unit: what NVRTC (tedrec_fast/cuda/nvrtc.py), the
// extension (extension.cu) and the CPU emulator (emulate/emulate.cpp) compile, so the generic runtime in
// tedrec_fast/cuda/ names no op. An op's kernels: its own .cu file, included here.
#pragma once

#include "spectral_fusion.cu"
