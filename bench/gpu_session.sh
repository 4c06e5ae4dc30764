#!/usr/bin/env bash
# Everything a lent GPU machine should do, in as few device calls as possible (each call <= 10 min).
#
#   bash bench/gpu_session.sh stage     HERE, before the session: data + text embeddings into .gpu_data/
#   bash bench/gpu_session.sh tests     install, list backends/loaders, GPU correctness tests
#   bash bench/gpu_session.sh bench     the spectral-fusion table (triton and cuda vs torch.fft; BUDGET_S=480)
#   bash bench/gpu_session.sh tune      the tuning sweeps (spectral fusion, then the full-catalog loss)
#   bash bench/gpu_session.sh catalog   the large-catalog table
#   bash bench/gpu_session.sh train     Online Retail TedRec and SASRec, then ML-100k TedRec vs SASRec
#   bash bench/gpu_session.sh compare   Online Retail: the TedRec ablations and the comparison models
#                                       (MINUTES=1.1 each), then the table of every recorded run
#
# The device machine has no internet and gets only the checkout: `stage` (run on the development
# machine) puts the raw Online Retail and ML-100k files and their MiniLM text embeddings into the
# git-ignored .gpu_data/ (≈ 17 MB); the device call names it in `carry` (carry: [".gpu_data"]).
# Results and logs go to $OUT (the device tool brings back at most 8 files) or bench/results/.
# Wheels carried in .whl/ (git-ignored; e.g. the public fused cross-entropy kernels the catalog table
# compares with: `pip download --no-deps -d .whl liger-kernel cut-cross-entropy`) are installed first.
# The install builds the extension tedrec_fast._C when torch is a CUDA build and a toolkit is found
# (setup.py: cuda_extension_wanted); the NVRTC loader needs CuPy (preinstalled on the lent machines).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
data=.gpu_data
export PYTHONUNBUFFERED=1
stage="${1:-tests}"

if [ "$stage" = stage ]; then
  set -e
  mkdir -p "$data/raw/ml-100k"
  install -m 644 ../shared/data/online_retail.csv.gz "$data/raw/"
  tedrec-fast prepare ml-100k --out "$data/staging" > /dev/null  # fetches the recbole wheel once
  cp "${TEDREC_FAST_CACHE_DIR:-${TEDREC_FAST_CACHE:-$HOME/.cache/tedrec_fast}}"/ml-100k/ml-100k.{inter,item} "$data/raw/ml-100k/"
  tedrec-fast encode --dataset online-retail --raw "$data/raw/online_retail.csv.gz" --data-dir "$data"
  tedrec-fast encode --dataset ml-100k --raw "$data/raw/ml-100k" --data-dir "$data"
  rm -rf "$data/datasets" "$data/staging"  # prepared again on the device (seconds); only raw/ and text/ travel
  du -sh "$data"
  exit 0
fi

mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -5
fi
pip install -q -e . --no-deps --no-build-isolation 2>&1 | tail -5
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; tedrec-fast backends; } | tee "$out/env.txt"

# train MODEL DATASET MINUTES [extra flags]: the paper protocol, stopped by patience or the time budget
train() {
  local model=$1 dataset=$2 minutes=$3
  shift 3
  local raw="$data/raw/online_retail.csv.gz"
  [ "$dataset" = ml-100k ] && raw="$data/raw/ml-100k"
  tedrec-fast train --dataset "$dataset" --raw "$raw" --data-dir "$data" --model "$model" \
    --max-minutes "$minutes" --output-dir "runs/$dataset-$model" --results-dir "$out" --no-progress "$@"
}

need_data() {
  if [ ! -d "$data/text" ]; then
    echo "no $data/text: run 'bash bench/gpu_session.sh stage' here first and carry .gpu_data" >&2
    exit 2
  fi
}

case "$stage" in
  tests)
    # every test whose kernels run on the `device` fixture (the GPU here), and the GPU-only ones
    python -m pytest -q -n 8 --maxfail=30 tests/ops tests/cuda/test_cuda_nvrtc.py tests/kernels/test_kernels_common.py \
      2>&1 | tee "$out/tests.log" | tail -40
    ;;
  bench)
    python -m bench --out-dir "$out" --budget-s "${BUDGET_S:-480}" 2>&1 | tee "$out/bench.log" | tail -40
    ;;
  tune)
    { python -m bench.tune_spectral_fusion --out-dir "$out" --budget-s 270
      python -m bench.tune_full_catalog_ce --out-dir "$out" --budget-s 240; } 2>&1 | tee "$out/tune.log" | tail -40
    ;;
  catalog)
    python -m bench --catalog --out-dir "$out" 2>&1 | tee "$out/catalog.log" | tail -40
    ;;
  train)
    need_data
    { train tedrec online-retail 4
      train sasrec online-retail 2.5
      train tedrec ml-100k 1
      train sasrec ml-100k 0.5; } 2>&1 | tee "$out/train.log" | grep -v "^epoch" | tail -60
    ;;
  compare)
    # the rest of the Online Retail table; then the table of every recorded Online Retail run (this call's and
    # those committed to bench/results/ from earlier calls, e.g. the train stage's TedRec and SASRec)
    need_data
    { for model in tedrec-wo-mm tedrec-wo-ag tedrec-wo-if tedrec-wo-tf fmlprec unisrec tssr; do
        train "$model" online-retail "${MINUTES:-1.1}"
      done
      tedrec-fast compare --dataset online-retail --output-dir runs/compare-online-retail \
        --from-records $(ls bench/results/train_*.json "$out"/train_*.json 2>/dev/null)
      cp runs/compare-online-retail/comparison.* "$out/"; } 2>&1 | tee "$out/compare.log" | grep -v "^epoch" | tail -60
    ;;
  *)
    echo "unknown stage '$stage': stage, tests, bench, tune, catalog, train or compare" >&2
    exit 2
    ;;
esac
