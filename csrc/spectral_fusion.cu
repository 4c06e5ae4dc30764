// The spectral-fusion op (docs/DESIGN.md section 2) as direct circular convolutions on CUDA cores.
//
// A second idea beside the Triton kernels (real DFTs as tensor-core products): the time form
//
//     F[j]  = n^-1/2 sum_k T[k] E[j-k]        E2[j] = sum_k h[k] E[j-k]      (indices mod n)
//     V[j]  = 2 sigmoid(<E2[j], g_i> + b_i) E2[j] + 2 sigmoid(<F[j], g_f> + b_f) F[j]
//
// with h = irfft(W, n), computed with exact fp32 FMAs (no transform rounding, any n <= 512). Every
// accumulation is fp32 in a fixed order: the backward is deterministic (no atomics), always.
//
// Layout shared by the sequence kernels (TEDREC_THREADS threads per block): the hidden size is cut
// into chunks of `dc` channels (8, 16 or 32, chosen by the host from n so a chunk of each operand fits
// in shared memory); thread `tid` works on channel `tid % dc` of the chunk and on row tiles
// `tid / dc`, `tid / dc + groups`, ... of TEDREC_ROWS consecutive sequence positions, which it
// convolves with a sliding register window (one shared-memory load per step feeds 2 * TEDREC_ROWS FMAs).
// The gates reduce over all d channels: a first pass over the chunks sums the gate logits per
// position, a second pass recomputes the convolutions and writes V.
//
// Kernels (extern "C" entry points; the host-side launch description is
// tedrec_fast/ops/spectral_fusion/cuda.py):
//   tedrec_filter_taps_<S>            h = irfft(W, n), fp32 (n, d)                 grid ceil(n*d/256)
//   tedrec_fusion_forward_<S>         V                                           grid B
//   tedrec_fusion_backward_stats_<S>  per position: a, c, 2a(1-a)<G,E2>, 2c(1-c)<G,F>   grid B
//   tedrec_fusion_backward_main_<S>   dE, dT, per-group partials of dh and dg      grid (chunks, groups)
//   tedrec_fusion_backward_reduce     dh, dg = sums of the partials, in order      grid ceil((n+2)*d/256)
//   tedrec_fusion_backward_bias       db_i, db_f                                   grid 1
//   tedrec_filter_taps_backward       d complex_weight from dh                     grid ceil(K*d/256)
// with <S> the storage type of the op's tensors: f32, bf16 or f16.
#include "common.cuh"

#define TEDREC_THREADS 256
// backward_main's launch bounds: on sm_120 ptxas holds it to 64 registers unless told one block per SM
// suffices, and then spills (4 B in the 16-bit variants); elsewhere it fits in 64 without spilling, which
// leaves room for 4 blocks per SM
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1200
#define TEDREC_MAIN_BOUNDS __launch_bounds__(TEDREC_THREADS, 1)
#else
#define TEDREC_MAIN_BOUNDS __launch_bounds__(TEDREC_THREADS)
#endif
// Rows per thread tile; a build may define it (the tuning sweep compiles 8 too: bench/tune_spectral_fusion.py).
#ifndef TEDREC_ROWS
#define TEDREC_ROWS 4
#endif

// ------------------------------------------------------------------------------------------------
// Building blocks
// ------------------------------------------------------------------------------------------------
struct ChunkLayout {
    int dc;      // channels per chunk
    int lane;    // this thread's channel within the chunk
    int group;   // this thread's first row tile
    int groups;  // row tiles processed at once by the block
};

__device__ __forceinline__ ChunkLayout chunk_layout(int dc) {
    ChunkLayout l;
    l.dc = dc;
    l.lane = (int)threadIdx.x % dc;
    l.group = (int)threadIdx.x / dc;
    l.groups = (int)blockDim.x / dc;
    return l;
}

// dst[row * dc + cc] = seq[row * row_stride + c0 + cc] as fp32, zero for channels >= d
template <typename S>
__device__ void load_chunk(float* dst, const S* seq, long long row_stride, int n, int d, int c0, int dc) {
    for (int i = threadIdx.x; i < n * dc; i += blockDim.x) {
        const int row = i / dc;
        const int c = c0 + i - row * dc;
        dst[i] = c < d ? to_float(seq[(long long)row * row_stride + c]) : 0.0f;
    }
}

// F[j] (unscaled) and E2[j] for rows j = j0 .. j0+TEDREC_ROWS-1 (mod n) at one channel:
// f[r] = sum_k T[k] E[j0+r-k], e2[r] = sum_k h[k] E[j0+r-k]. Requires 0 <= j0 < n.
__device__ __forceinline__ void convolve_tile(const float* sT, const float* sE, const float* sH, int n, int dc,
                                              int lane, int j0, float* f, float* e2) {
    float w[TEDREC_ROWS];  // w[r] = E[j0 + r - k]
#pragma unroll
    for (int r = 0; r < TEDREC_ROWS; ++r) {
        w[r] = sE[((j0 + r) % n) * dc + lane];
        f[r] = 0.0f;
        e2[r] = 0.0f;
    }
    int next = wrap(j0 - 1, n);
    for (int k = 0; k < n; ++k) {
        const float t = sT[k * dc + lane];
        const float hk = sH[k * dc + lane];
#pragma unroll
        for (int r = 0; r < TEDREC_ROWS; ++r) {
            f[r] = fmaf(t, w[r], f[r]);
            e2[r] = fmaf(hk, w[r], e2[r]);
        }
#pragma unroll
        for (int r = TEDREC_ROWS - 1; r > 0; --r) w[r] = w[r - 1];
        w[0] = sE[next * dc + lane];
        next = next == 0 ? n - 1 : next - 1;
    }
}

// The backward's four circular cross-correlations for rows i = i0 .. i0+TEDREC_ROWS-1 at one channel:
// dt[r] = sum_s E[s] dF[i+s], dtf[r] = sum_s T[s] dF[i+s], dhe[r] = sum_s h[s] dE2[i+s],
// dh[r] = sum_s E[s] dE2[i+s]. Requires 0 <= i0 < n.
__device__ __forceinline__ void correlate_tile(const float* sE, const float* sT, const float* sH, const float* sDF,
                                               const float* sDE2, int n, int dc, int lane, int i0, float* dt,
                                               float* dtf, float* dhe, float* dh) {
    float wf[TEDREC_ROWS], we[TEDREC_ROWS];  // wf[r] = dF[i0 + r + s], we[r] = dE2[i0 + r + s]
#pragma unroll
    for (int r = 0; r < TEDREC_ROWS; ++r) {
        const int idx = ((i0 + r) % n) * dc + lane;
        wf[r] = sDF[idx];
        we[r] = sDE2[idx];
        dt[r] = dtf[r] = dhe[r] = dh[r] = 0.0f;
    }
    int next = (i0 + TEDREC_ROWS) % n;
    for (int s = 0; s < n; ++s) {
        const float e = sE[s * dc + lane];
        const float t = sT[s * dc + lane];
        const float hs = sH[s * dc + lane];
#pragma unroll
        for (int r = 0; r < TEDREC_ROWS; ++r) {
            dt[r] = fmaf(e, wf[r], dt[r]);
            dtf[r] = fmaf(t, wf[r], dtf[r]);
            dhe[r] = fmaf(hs, we[r], dhe[r]);
            dh[r] = fmaf(e, we[r], dh[r]);
        }
#pragma unroll
        for (int r = 0; r + 1 < TEDREC_ROWS; ++r) {
            wf[r] = wf[r + 1];
            we[r] = we[r + 1];
        }
        wf[TEDREC_ROWS - 1] = sDF[next * dc + lane];
        we[TEDREC_ROWS - 1] = sDE2[next * dc + lane];
        next = next + 1 == n ? 0 : next + 1;
    }
}

// Per-position sums over all d channels, for one sequence:
//   sums[j] = <E2[j], g_i>, sums[n + j] = <F[j], g_f>, and with GRAD also
//   sums[2n + j] = <G[j], E2[j]>, sums[3n + j] = <G[j], F[j]>.
// Uses the shared buffers sT, sE, sH (and sG with GRAD), n * dc floats each. Ends with a barrier.
template <typename S, bool GRAD>
__device__ void position_sums(float* sums, float* sT, float* sE, float* sH, float* sG, const S* item_seq,
                              long long item_sn, const S* text_seq, long long text_sn, const S* grad_seq,
                              long long grad_sn, const float* h, const S* gi_w, const S* gf_w, int n, int d, int dc) {
    const ChunkLayout l = chunk_layout(dc);
    const float rn = 1.0f / sqrtf((float)n);
    const int tiles = (n + TEDREC_ROWS - 1) / TEDREC_ROWS;
    for (int i = threadIdx.x; i < (GRAD ? 4 : 2) * n; i += blockDim.x) sums[i] = 0.0f;
    for (int c0 = 0; c0 < d; c0 += dc) {
        load_chunk(sT, text_seq, text_sn, n, d, c0, dc);
        load_chunk(sE, item_seq, item_sn, n, d, c0, dc);
        load_chunk(sH, h, (long long)d, n, d, c0, dc);
        if (GRAD) load_chunk(sG, grad_seq, grad_sn, n, d, c0, dc);
        __syncthreads();
        const int c = c0 + l.lane;
        const float gi = c < d ? to_float(gi_w[c]) : 0.0f;
        const float gf = c < d ? to_float(gf_w[c]) : 0.0f;
        // every thread runs the same number of tiles: the group sums are warp-wide shuffles
        for (int t0 = 0; t0 < tiles; t0 += l.groups) {
            const int t = t0 + l.group;
            const bool active = t < tiles;
            const int j0 = active ? t * TEDREC_ROWS : 0;
            float f[TEDREC_ROWS], e2[TEDREC_ROWS];
            convolve_tile(sT, sE, sH, n, dc, l.lane, j0, f, e2);
#pragma unroll
            for (int r = 0; r < TEDREC_ROWS; ++r) {
                const int j = j0 + r;
                const bool owned = active && j < n;
                const float fj = f[r] * rn;
                const float zi = group_sum(e2[r] * gi, dc);
                const float zf = group_sum(fj * gf, dc);
                float si = 0.0f, sf = 0.0f;
                if (GRAD) {
                    const float g = owned ? sG[j * dc + l.lane] : 0.0f;
                    si = group_sum(g * e2[r], dc);
                    sf = group_sum(g * fj, dc);
                }
                if (owned && l.lane == 0) {
                    sums[j] += zi;
                    sums[n + j] += zf;
                    if (GRAD) {
                        sums[2 * n + j] += si;
                        sums[3 * n + j] += sf;
                    }
                }
            }
        }
        __syncthreads();
    }
}

// ------------------------------------------------------------------------------------------------
// Kernels
// ------------------------------------------------------------------------------------------------
template <typename S>
__device__ void filter_taps(float* h, const S* cw, int n, int d) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * d) return;
    const int t = i / d, c = i - t * d, K = n / 2 + 1;
    const bool even = n % 2 == 0;
    float acc = to_float(cw[2 * c]);  // the DC bin's real part (irfft ignores its imaginary part)
    if (even) acc += (t % 2 ? -1.0f : 1.0f) * to_float(cw[2 * ((K - 1) * d + c)]);  // Nyquist, likewise
    const int doubled_end = even ? K - 1 : K;
    for (int m = 1; m < doubled_end; ++m) {
        float s, co;
        sincospif(2.0f * (float)((m * t) % n) / (float)n, &s, &co);
        acc += 2.0f * (to_float(cw[2 * (m * d + c)]) * co - to_float(cw[2 * (m * d + c) + 1]) * s);
    }
    h[i] = acc / (float)n;
}

template <typename S>
__device__ void fusion_forward(S* out, const S* item, long long item_sb, long long item_sn, const S* text,
                               long long text_sb, long long text_sn, const float* h, const S* gi_w, const S* gi_b,
                               const S* gf_w, const S* gf_b, int n, int d, int dc) {
    TEDREC_DYNAMIC_SMEM(smem);
    float* sT = smem;
    float* sE = sT + n * dc;
    float* sH = sE + n * dc;
    float* gates = sH + n * dc;  // 2n: logits, then gates
    const long long b = blockIdx.x;
    const S* item_seq = item + b * item_sb;
    const S* text_seq = text + b * text_sb;
    position_sums<S, false>(gates, sT, sE, sH, nullptr, item_seq, item_sn, text_seq, text_sn, nullptr, 0, h, gi_w,
                            gf_w, n, d, dc);
    const float bi = to_float(gi_b[0]), bf = to_float(gf_b[0]);
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        gates[j] = sigmoid(gates[j] + bi);
        gates[n + j] = sigmoid(gates[n + j] + bf);
    }
    const ChunkLayout l = chunk_layout(dc);
    const float rn = 1.0f / sqrtf((float)n);
    const int tiles = (n + TEDREC_ROWS - 1) / TEDREC_ROWS;
    S* out_seq = out + b * n * d;
    for (int c0 = 0; c0 < d; c0 += dc) {
        load_chunk(sT, text_seq, text_sn, n, d, c0, dc);
        load_chunk(sE, item_seq, item_sn, n, d, c0, dc);
        load_chunk(sH, h, (long long)d, n, d, c0, dc);
        __syncthreads();
        const int c = c0 + l.lane;
        for (int t = l.group; t < tiles; t += l.groups) {
            const int j0 = t * TEDREC_ROWS;
            float f[TEDREC_ROWS], e2[TEDREC_ROWS];
            convolve_tile(sT, sE, sH, n, dc, l.lane, j0, f, e2);
#pragma unroll
            for (int r = 0; r < TEDREC_ROWS; ++r) {
                const int j = j0 + r;
                if (j < n && c < d) {
                    out_seq[(long long)j * d + c] = from_float<S>(2.0f * (gates[j] * e2[r] + gates[n + j] * f[r] * rn));
                }
            }
        }
        __syncthreads();
    }
}

template <typename S>
__device__ void fusion_backward_stats(float* coef, const S* grad, long long grad_sb, long long grad_sn,
                                      const S* item, long long item_sb, long long item_sn, const S* text,
                                      long long text_sb, long long text_sn, const float* h, const S* gi_w,
                                      const S* gi_b, const S* gf_w, const S* gf_b, int n, int d, int dc) {
    TEDREC_DYNAMIC_SMEM(smem);
    float* sT = smem;
    float* sE = sT + n * dc;
    float* sH = sE + n * dc;
    float* sG = sH + n * dc;
    float* sums = sG + n * dc;  // 4n
    const long long b = blockIdx.x;
    position_sums<S, true>(sums, sT, sE, sH, sG, item + b * item_sb, item_sn, text + b * text_sb, text_sn,
                           grad + b * grad_sb, grad_sn, h, gi_w, gf_w, n, d, dc);
    const float bi = to_float(gi_b[0]), bf = to_float(gf_b[0]);
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float a = sigmoid(sums[j] + bi);
        const float c = sigmoid(sums[n + j] + bf);
        float* out = coef + (b * n + j) * 4;
        out[0] = a;
        out[1] = c;
        out[2] = 2.0f * a * (1.0f - a) * sums[2 * n + j];
        out[3] = 2.0f * c * (1.0f - c) * sums[3 * n + j];
    }
}

// Block (chunk, group): channels [chunk * dc, chunk * dc + dc) of sequences
// [group * seqs_per_group, (group + 1) * seqs_per_group). Writes dE, dT there, and the group's partial
// sums of dh (n x d) and of dg_i, dg_f (2 x d).
template <typename S>
__device__ void fusion_backward_main(S* d_item, S* d_text, float* dh_part, float* dg_part, const float* coef,
                                     const S* grad, long long grad_sb, long long grad_sn, const S* item,
                                     long long item_sb, long long item_sn, const S* text, long long text_sb,
                                     long long text_sn, const float* h, const S* gi_w, const S* gf_w, int B, int n,
                                     int d, int dc, int seqs_per_group) {
    TEDREC_DYNAMIC_SMEM(smem);
    float* sE = smem;
    float* sT = sE + n * dc;
    float* sH = sT + n * dc;
    float* sDF = sH + n * dc;
    float* sDE2 = sDF + n * dc;
    float* sDH = sDE2 + n * dc;
    float* sCoef = sDH + n * dc;     // 4n
    float* sRed = sCoef + 4 * n;     // 2 * blockDim.x
    const ChunkLayout l = chunk_layout(dc);
    const int c0 = blockIdx.x * dc;
    const int c = c0 + l.lane;
    const int group = blockIdx.y;
    const int b_begin = group * seqs_per_group;
    const int b_end = b_begin + seqs_per_group < B ? b_begin + seqs_per_group : B;
    const float rn = 1.0f / sqrtf((float)n);
    const int tiles = (n + TEDREC_ROWS - 1) / TEDREC_ROWS;

    load_chunk(sH, h, (long long)d, n, d, c0, dc);
    for (int i = threadIdx.x; i < n * dc; i += blockDim.x) sDH[i] = 0.0f;
    float dgi = 0.0f, dgf = 0.0f;
    for (int b = b_begin; b < b_end; ++b) {
        __syncthreads();  // the previous sequence's readers are done
        for (int i = threadIdx.x; i < 4 * n; i += blockDim.x) sCoef[i] = coef[(long long)b * n * 4 + i];
        load_chunk(sE, item + b * item_sb, item_sn, n, d, c0, dc);
        load_chunk(sT, text + b * text_sb, text_sn, n, d, c0, dc);
        __syncthreads();
        // dE2 = 2 a G + alpha_i g_i, dF = 2 c G + alpha_f g_f
        const S* grad_seq = grad + b * grad_sb;
        for (int i = threadIdx.x; i < n * dc; i += blockDim.x) {
            const int row = i / dc;
            const int cc = c0 + i - row * dc;
            float de2 = 0.0f, df = 0.0f;
            if (cc < d) {
                const float g = to_float(grad_seq[(long long)row * grad_sn + cc]);
                const float* k = sCoef + 4 * row;
                de2 = 2.0f * k[0] * g + k[2] * to_float(gi_w[cc]);
                df = 2.0f * k[1] * g + k[3] * to_float(gf_w[cc]);
            }
            sDE2[i] = de2;
            sDF[i] = df;
        }
        __syncthreads();
        S* d_item_seq = d_item + (long long)b * n * d;
        S* d_text_seq = d_text + (long long)b * n * d;
        for (int t = l.group; t < tiles; t += l.groups) {
            const int j0 = t * TEDREC_ROWS;
            float f[TEDREC_ROWS], e2[TEDREC_ROWS];
            convolve_tile(sT, sE, sH, n, dc, l.lane, j0, f, e2);
            float dt[TEDREC_ROWS], dtf[TEDREC_ROWS], dhe[TEDREC_ROWS], dh[TEDREC_ROWS];
            correlate_tile(sE, sT, sH, sDF, sDE2, n, dc, l.lane, j0, dt, dtf, dhe, dh);
#pragma unroll
            for (int r = 0; r < TEDREC_ROWS; ++r) {
                const int j = j0 + r;
                if (j >= n) continue;
                dgi = fmaf(sCoef[4 * j + 2], e2[r], dgi);
                dgf = fmaf(sCoef[4 * j + 3], f[r] * rn, dgf);
                sDH[j * dc + l.lane] += dh[r];
                if (c < d) {
                    d_text_seq[(long long)j * d + c] = from_float<S>(dt[r] * rn);
                    d_item_seq[(long long)j * d + c] = from_float<S>(fmaf(dtf[r], rn, dhe[r]));
                }
            }
        }
    }
    // the group's partial sums, each written by one thread, reduced over row tiles in a fixed order
    sRed[threadIdx.x] = dgi;
    sRed[blockDim.x + threadIdx.x] = dgf;
    __syncthreads();
    for (int i = threadIdx.x; i < n * dc; i += blockDim.x) {
        const int row = i / dc;
        const int cc = c0 + i - row * dc;
        if (cc < d) dh_part[((long long)group * n + row) * d + cc] = sDH[i];
    }
    if ((int)threadIdx.x < dc && c < d) {
        float si = 0.0f, sf = 0.0f;
        for (int g = 0; g < l.groups; ++g) {
            si += sRed[g * dc + l.lane];
            sf += sRed[blockDim.x + g * dc + l.lane];
        }
        dg_part[(long long)group * 2 * d + c] = si;
        dg_part[(long long)group * 2 * d + d + c] = sf;
    }
}

// ------------------------------------------------------------------------------------------------
// Entry points
// ------------------------------------------------------------------------------------------------
#define TEDREC_SEQUENCE_ENTRY_POINTS(suffix, S)                                                                     \
    extern "C" __global__ void tedrec_filter_taps_##suffix(float* h, const S* cw, int n, int d) {                  \
        filter_taps<S>(h, cw, n, d);                                                                               \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(TEDREC_THREADS) tedrec_fusion_forward_##suffix(                   \
        S* out, const S* item, long long item_sb, long long item_sn, const S* text, long long text_sb,             \
        long long text_sn, const float* h, const S* gi_w, const S* gi_b, const S* gf_w, const S* gf_b, int n,      \
        int d, int dc) {                                                                                           \
        fusion_forward<S>(out, item, item_sb, item_sn, text, text_sb, text_sn, h, gi_w, gi_b, gf_w, gf_b, n, d,    \
                          dc);                                                                                     \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(TEDREC_THREADS) tedrec_fusion_backward_stats_##suffix(            \
        float* coef, const S* grad, long long grad_sb, long long grad_sn, const S* item, long long item_sb,        \
        long long item_sn, const S* text, long long text_sb, long long text_sn, const float* h, const S* gi_w,     \
        const S* gi_b, const S* gf_w, const S* gf_b, int n, int d, int dc) {                                       \
        fusion_backward_stats<S>(coef, grad, grad_sb, grad_sn, item, item_sb, item_sn, text, text_sb, text_sn, h,  \
                                 gi_w, gi_b, gf_w, gf_b, n, d, dc);                                                \
    }                                                                                                              \
    extern "C" __global__ void TEDREC_MAIN_BOUNDS tedrec_fusion_backward_main_##suffix(                            \
        S* d_item, S* d_text, float* dh_part, float* dg_part, const float* coef, const S* grad, long long grad_sb,  \
        long long grad_sn, const S* item, long long item_sb, long long item_sn, const S* text, long long text_sb,  \
        long long text_sn, const float* h, const S* gi_w, const S* gf_w, int B, int n, int d, int dc,              \
        int seqs_per_group) {                                                                                      \
        fusion_backward_main<S>(d_item, d_text, dh_part, dg_part, coef, grad, grad_sb, grad_sn, item, item_sb,     \
                                item_sn, text, text_sb, text_sn, h, gi_w, gf_w, B, n, d, dc, seqs_per_group);      \
    }

TEDREC_SEQUENCE_ENTRY_POINTS(f32, float)
TEDREC_SEQUENCE_ENTRY_POINTS(bf16, tedrec_bf16)
TEDREC_SEQUENCE_ENTRY_POINTS(f16, tedrec_f16)

// dh = sum over groups of dh_part, dg likewise (fixed order: deterministic)
extern "C" __global__ void tedrec_fusion_backward_reduce(float* dh, float* dg, const float* dh_part,
                                                         const float* dg_part, int parts, int n, int d) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long nd = (long long)n * d;
    if (i < nd) {
        float s = 0.0f;
        for (int p = 0; p < parts; ++p) s += dh_part[p * nd + i];
        dh[i] = s;
    } else if (i < nd + 2 * d) {
        const long long k = i - nd;
        float s = 0.0f;
        for (int p = 0; p < parts; ++p) s += dg_part[(long long)p * 2 * d + k];
        dg[k] = s;
    }
}

// db_i = sum of alpha_i over every (sequence, position), db_f likewise: one block (blockDim.x a power of
// two), fixed-order tree
extern "C" __global__ void tedrec_fusion_backward_bias(float* db, const float* coef, int rows) {
    TEDREC_DYNAMIC_SMEM(red);  // 2 * blockDim.x
    float si = 0.0f, sf = 0.0f;
    for (int i = threadIdx.x; i < rows; i += blockDim.x) {
        si += coef[(long long)i * 4 + 2];
        sf += coef[(long long)i * 4 + 3];
    }
    red[threadIdx.x] = si;
    red[blockDim.x + threadIdx.x] = sf;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            red[threadIdx.x] += red[threadIdx.x + stride];
            red[blockDim.x + threadIdx.x] += red[blockDim.x + threadIdx.x + stride];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        db[0] = red[0];
        db[1] = red[blockDim.x];
    }
}

// d complex_weight (K, d, 2) from dh (n, d): the vjp of h = irfft(W, n)
extern "C" __global__ void tedrec_filter_taps_backward(float* dcw, const float* dh, int n, int d) {
    const int K = n / 2 + 1;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * d) return;
    const int m = i / d, c = i - m * d;
    float re = 0.0f, im = 0.0f;
    for (int t = 0; t < n; ++t) {
        float s, co;
        sincospif(2.0f * (float)((m * t) % n) / (float)n, &s, &co);
        const float g = dh[t * d + c];
        re = fmaf(g, co, re);
        im = fmaf(-g, s, im);
    }
    const bool single = m == 0 || (n % 2 == 0 && m == K - 1);  // bins whose imaginary part irfft ignores
    const float scale = (single ? 1.0f : 2.0f) / (float)n;
    dcw[2 * i] = re * scale;
    dcw[2 * i + 1] = single ? 0.0f : im * scale;
}

// Every entry point, for the loaders' kernel tables.
#define TEDREC_KERNELS(X)                \
    X(tedrec_filter_taps_f32)            \
    X(tedrec_filter_taps_bf16)           \
    X(tedrec_filter_taps_f16)            \
    X(tedrec_fusion_forward_f32)         \
    X(tedrec_fusion_forward_bf16)        \
    X(tedrec_fusion_forward_f16)         \
    X(tedrec_fusion_backward_stats_f32)  \
    X(tedrec_fusion_backward_stats_bf16) \
    X(tedrec_fusion_backward_stats_f16)  \
    X(tedrec_fusion_backward_main_f32)   \
    X(tedrec_fusion_backward_main_bf16)  \
    X(tedrec_fusion_backward_main_f16)   \
    X(tedrec_fusion_backward_reduce)     \
    X(tedrec_fusion_backward_bias)       \
    X(tedrec_filter_taps_backward)
