#!/usr/bin/env bash
# Everything a lent GPU machine should do, in as few device calls as possible (each call <= 10 min).
#
#   bash bench/gpu_session.sh tests     install, list backends/loaders, GPU correctness tests
#   bash bench/gpu_session.sh bench     the spectral-fusion table (triton and cuda vs torch.fft)
#   bash bench/gpu_session.sh catalog   the large-catalog table
#
# Results and logs go to $OUT (the device tool brings them back) or bench/results/.
# Wheels carried in .whl/ (git-ignored; e.g. the public fused cross-entropy kernels the catalog table
# compares with: `pip download --no-deps -d .whl liger-kernel cut-cross-entropy`) are installed first.
# The install builds the extension tedrec_fast._C when torch is a CUDA build and a toolkit is found
# (setup.py: cuda_extension_wanted); the NVRTC loader needs CuPy (preinstalled on the lent machines).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
stage="${1:-tests}"

if compgen -G ".whl/*.whl" > /dev/null; then
  pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -5
fi
pip install -q -e . --no-deps --no-build-isolation 2>&1 | tail -5
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
tedrec-fast backends | tee "$out/backends.txt"

case "$stage" in
  tests)
    python -m pytest -q -n 8 --maxfail=30 tests/test_spectral_fusion_gpu.py tests/test_spectral_fusion_cuda.py \
      tests/test_spectral_fusion.py tests/test_full_catalog_ce.py 2>&1 | tee "$out/tests.log" | tail -40
    ;;
  bench)
    python -m bench --out-dir "$out" 2>&1 | tee "$out/bench.log" | tail -40
    ;;
  catalog)
    python -m bench --catalog --out-dir "$out" 2>&1 | tee "$out/catalog.log" | tail -40
    ;;
  *)
    echo "unknown stage '$stage': tests, bench or catalog" >&2
    exit 2
    ;;
esac
