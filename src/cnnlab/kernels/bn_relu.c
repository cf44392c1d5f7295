/* Fused training-mode BatchNorm -> ReLU on bf16 NHWC rows (cnnlab.kernels.bn_relu drives these).
 *
 * Why: at mini_xception's first stage one bf16 activation is 63 MB and BN and ReLU are separate
 * memory-bound passes (forward 2 + 1 reads/writes, backward more). Fused, forward is one read for the
 * statistics and one read + write for y = relu(x * scale + shift); backward is one read of x and dy
 * for the two reductions and one read of both + write of dx.
 *
 * Layout: `rows` rows of `C` contiguous bf16 values (a channels_last NCHW tensor's memory). Every
 * entry point takes (..., chunk, start, end) last, the calling convention of
 * cnnlab.kernels.parallel_chunks: it handles rows [start, end) and writes its partial sums to
 * row `chunk` of a [chunks, C] double array.
 *
 * Accuracy: sums run in fp32 within blocks of BLOCK rows and in double across blocks, so a million
 * rows stay accurate; the statistics pass subtracts a per-channel shift (the tensor's first row) so
 * the variance does not come from the difference of two large sums.
 *
 * The ReLU mask of the backward pass is recomputed as fmaf(x, scale, shift) > 0 with the forward's
 * scale and shift: fmaf in both (and _mm512_fmadd_ps, the same single rounding) makes it bit-identical.
 * The AVX-512 path and the portable one give bit-identical y and dx (the same fma and rounding);
 * their partial sums differ only in summation order.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define BN_RELU_SIMD 1
#else
#define BN_RELU_SIMD 0
#endif

#define BLOCK 128

/* Tests switch the SIMD path off to check the portable one on the same machine. */
static int force_portable = 0;

void bn_relu_set_portable(int on) { force_portable = on; }

int bn_relu_has_simd(void) { return BN_RELU_SIMD; }


/* ---------------------------------------------------------------- portable C ------------------ */

static void stats_portable(const uint16_t *x, int64_t C, double *s1, double *s2, int64_t start,
                           int64_t end) {
    float *k = malloc(3 * (size_t)C * sizeof(float));
    if (!k) abort();
    float *a1 = k + C, *a2 = a1 + C;
    for (int64_t c = 0; c < C; c++) k[c] = bf16_to_f32(x[c]);
    for (int64_t r0 = start; r0 < end; r0 += BLOCK) {
        int64_t r1 = r0 + BLOCK < end ? r0 + BLOCK : end;
        memset(a1, 0, 2 * (size_t)C * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const uint16_t *row = x + r * C;
            for (int64_t c = 0; c < C; c++) {
                float d = bf16_to_f32(row[c]) - k[c];
                a1[c] += d;
                a2[c] += d * d;
            }
        }
        for (int64_t c = 0; c < C; c++) {
            s1[c] += a1[c];
            s2[c] += a2[c];
        }
    }
    free(k);
}

static void fwd_portable(const uint16_t *x, uint16_t *y, const float *scale, const float *shift,
                         int64_t C, int64_t start, int64_t end) {
    for (int64_t r = start; r < end; r++) {
        const uint16_t *xr = x + r * C;
        uint16_t *yr = y + r * C;
        for (int64_t c = 0; c < C; c++) {
            float v = fmaf(bf16_to_f32(xr[c]), scale[c], shift[c]);
            yr[c] = f32_to_bf16(v < 0.0f ? 0.0f : v); /* NaN passes through, like torch.relu */
        }
    }
}

static void bwd_stats_portable(const uint16_t *x, const uint16_t *dy, const float *scale,
                               const float *shift, const float *mean, int64_t C, double *s1,
                               double *s2, int64_t start, int64_t end) {
    float *a1 = malloc(2 * (size_t)C * sizeof(float));
    if (!a1) abort();
    float *a2 = a1 + C;
    for (int64_t r0 = start; r0 < end; r0 += BLOCK) {
        int64_t r1 = r0 + BLOCK < end ? r0 + BLOCK : end;
        memset(a1, 0, 2 * (size_t)C * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const uint16_t *xr = x + r * C, *gr = dy + r * C;
            for (int64_t c = 0; c < C; c++) {
                float xv = bf16_to_f32(xr[c]);
                float g = fmaf(xv, scale[c], shift[c]) > 0.0f ? bf16_to_f32(gr[c]) : 0.0f;
                a1[c] += g;
                a2[c] += g * (xv - mean[c]);
            }
        }
        for (int64_t c = 0; c < C; c++) {
            s1[c] += a1[c];
            s2[c] += a2[c];
        }
    }
    free(a1);
}

static void bwd_dx_portable(const uint16_t *x, const uint16_t *dy, uint16_t *dx, const float *scale,
                            const float *shift, const float *cx, const float *c0, int64_t C,
                            int64_t start, int64_t end) {
    for (int64_t r = start; r < end; r++) {
        const uint16_t *xr = x + r * C, *gr = dy + r * C;
        uint16_t *dr = dx + r * C;
        for (int64_t c = 0; c < C; c++) {
            float xv = bf16_to_f32(xr[c]);
            float g = fmaf(xv, scale[c], shift[c]) > 0.0f ? bf16_to_f32(gr[c]) : 0.0f;
            dr[c] = f32_to_bf16(fmaf(scale[c], g, fmaf(cx[c], xv, c0[c])));
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 -------------------- */
#if BN_RELU_SIMD

static inline __mmask16 tail_mask(int64_t C, int64_t c) {
    int64_t n = C - c;
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

static inline __m512 load_bf16(const uint16_t *p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Store 16 fp32 lanes as bf16 with f32_to_bf16's rounding (bf16.h). */
static inline void store_bf16(uint16_t *p, __m512 v, __mmask16 m) {
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(f32_to_bf16_x16(v)));
}

static inline void add_to_double(double *s, __m512 a, __mmask16 m) {
    __mmask8 lo = (__mmask8)(m & 0xff), hi = (__mmask8)(m >> 8);
    __m512d dlo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    __m512d dhi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    _mm512_mask_storeu_pd(s, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, s), dlo));
    _mm512_mask_storeu_pd(s + 8, hi, _mm512_add_pd(_mm512_maskz_loadu_pd(hi, s + 8), dhi));
}

/* Channel vectors outer, rows of a block inner: the accumulators stay in registers and the block
 * (BLOCK rows x C bf16, 8 KB at C=32) stays in L1 between channel vectors. */
static void stats_simd(const uint16_t *x, int64_t C, double *s1, double *s2, int64_t start,
                       int64_t end) {
    for (int64_t r0 = start; r0 < end; r0 += BLOCK) {
        int64_t r1 = r0 + BLOCK < end ? r0 + BLOCK : end;
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 m = tail_mask(C, c);
            __m512 k = load_bf16(x + c, m);
            __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
            for (int64_t r = r0; r < r1; r++) {
                __m512 d = _mm512_sub_ps(load_bf16(x + r * C + c, m), k);
                a1 = _mm512_add_ps(a1, d);
                a2 = _mm512_fmadd_ps(d, d, a2);
            }
            add_to_double(s1 + c, a1, m);
            add_to_double(s2 + c, a2, m);
        }
    }
}

static void fwd_simd(const uint16_t *x, uint16_t *y, const float *scale, const float *shift,
                     int64_t C, int64_t start, int64_t end) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = start; r < end; r++) {
        const uint16_t *xr = x + r * C;
        uint16_t *yr = y + r * C;
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 m = tail_mask(C, c);
            __m512 v = _mm512_fmadd_ps(load_bf16(xr + c, m), _mm512_maskz_loadu_ps(m, scale + c),
                                       _mm512_maskz_loadu_ps(m, shift + c));
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
            store_bf16(yr + c, v, m);
        }
    }
}

static void bwd_stats_simd(const uint16_t *x, const uint16_t *dy, const float *scale,
                           const float *shift, const float *mean, int64_t C, double *s1, double *s2,
                           int64_t start, int64_t end) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r0 = start; r0 < end; r0 += BLOCK) {
        int64_t r1 = r0 + BLOCK < end ? r0 + BLOCK : end;
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 m = tail_mask(C, c);
            __m512 sc = _mm512_maskz_loadu_ps(m, scale + c), sh = _mm512_maskz_loadu_ps(m, shift + c);
            __m512 mu = _mm512_maskz_loadu_ps(m, mean + c);
            __m512 a1 = zero, a2 = zero;
            for (int64_t r = r0; r < r1; r++) {
                __m512 xv = load_bf16(x + r * C + c, m);
                __mmask16 on = _mm512_cmp_ps_mask(_mm512_fmadd_ps(xv, sc, sh), zero, _CMP_GT_OQ);
                __m512 g = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(on & m, dy + r * C + c)), 16));
                a1 = _mm512_add_ps(a1, g);
                a2 = _mm512_fmadd_ps(g, _mm512_sub_ps(xv, mu), a2);
            }
            add_to_double(s1 + c, a1, m);
            add_to_double(s2 + c, a2, m);
        }
    }
}

static void bwd_dx_simd(const uint16_t *x, const uint16_t *dy, uint16_t *dx, const float *scale,
                        const float *shift, const float *cx, const float *c0, int64_t C,
                        int64_t start, int64_t end) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = start; r < end; r++) {
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 m = tail_mask(C, c);
            __m512 sc = _mm512_maskz_loadu_ps(m, scale + c);
            __m512 xv = load_bf16(x + r * C + c, m);
            __mmask16 on = _mm512_cmp_ps_mask(
                _mm512_fmadd_ps(xv, sc, _mm512_maskz_loadu_ps(m, shift + c)), zero, _CMP_GT_OQ);
            __m512 g = load_bf16(dy + r * C + c, on & m);
            __m512 base = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, cx + c), xv,
                                          _mm512_maskz_loadu_ps(m, c0 + c));
            store_bf16(dx + r * C + c, _mm512_fmadd_ps(sc, g, base), m);
        }
    }
}
#endif

/* ---------------------------------------------------------------- entry points ---------------- */

/* Per-channel sums of (x - x[row 0]) and its square over rows [start, end), into row `chunk`. */
void bn_relu_stats(const uint16_t *x, int64_t C, double *sum, double *sumsq, int64_t chunk,
                   int64_t start, int64_t end) {
    double *s1 = sum + chunk * C, *s2 = sumsq + chunk * C;
    memset(s1, 0, (size_t)C * sizeof(double));
    memset(s2, 0, (size_t)C * sizeof(double));
#if BN_RELU_SIMD
    if (!force_portable) {
        stats_simd(x, C, s1, s2, start, end);
        return;
    }
#endif
    stats_portable(x, C, s1, s2, start, end);
}

/* y = relu(fmaf(x, scale, shift)) in bf16. */
void bn_relu_forward(const uint16_t *x, uint16_t *y, const float *scale, const float *shift,
                     int64_t C, int64_t chunk, int64_t start, int64_t end) {
    (void)chunk;
#if BN_RELU_SIMD
    if (!force_portable) {
        fwd_simd(x, y, scale, shift, C, start, end);
        return;
    }
#endif
    fwd_portable(x, y, scale, shift, C, start, end);
}

/* Per-channel sums of g and g * (x - mean), g = dy where the forward's ReLU passed, else 0. */
void bn_relu_backward_stats(const uint16_t *x, const uint16_t *dy, const float *scale,
                            const float *shift, const float *mean, int64_t C, double *sum_g,
                            double *sum_gx, int64_t chunk, int64_t start, int64_t end) {
    double *s1 = sum_g + chunk * C, *s2 = sum_gx + chunk * C;
    memset(s1, 0, (size_t)C * sizeof(double));
    memset(s2, 0, (size_t)C * sizeof(double));
#if BN_RELU_SIMD
    if (!force_portable) {
        bwd_stats_simd(x, dy, scale, shift, mean, C, s1, s2, start, end);
        return;
    }
#endif
    bwd_stats_portable(x, dy, scale, shift, mean, C, s1, s2, start, end);
}

/* dx = fmaf(scale, g, fmaf(cx, x, c0)) in bf16: BN's input gradient with its two reductions folded
 * into the per-channel cx and c0 by the caller. */
void bn_relu_backward_dx(const uint16_t *x, const uint16_t *dy, uint16_t *dx, const float *scale,
                         const float *shift, const float *cx, const float *c0, int64_t C,
                         int64_t chunk, int64_t start, int64_t end) {
    (void)chunk;
#if BN_RELU_SIMD
    if (!force_portable) {
        bwd_dx_simd(x, dy, dx, scale, shift, cx, c0, C, start, end);
        return;
    }
#endif
    bwd_dx_portable(x, dy, dx, scale, shift, cx, c0, C, start, end);
}

/* ---------------------------------------------------------------- per-channel finishing ------- */
/* These run once per call on C-long vectors; in C rather than torch ops because at the small late
 * shapes (256 x 11 x 11) a dozen tiny torch ops cost as much as the passes over the tensor. */

/* From the partial sums [chunks, C] of bn_relu_stats: stats = [scale, shift, mean, invstd] (4 x C
 * floats) for y = relu(x * scale + shift), and the running statistics updated like torch's
 * (running_var with the unbiased variance, factor rows / (rows - 1)). */
void bn_relu_finish_stats(const double *sum, const double *sumsq, int64_t chunks, int64_t C,
                          int64_t rows, const uint16_t *x, const float *weight, const float *bias,
                          float *running_mean, float *running_var, double momentum, double eps,
                          float *stats) {
    float *scale = stats, *shift = stats + C, *mean_out = stats + 2 * C, *invstd_out = stats + 3 * C;
    for (int64_t c = 0; c < C; c++) {
        double s1 = 0.0, s2 = 0.0;
        for (int64_t k = 0; k < chunks; k++) {
            s1 += sum[k * C + c];
            s2 += sumsq[k * C + c];
        }
        double m1 = s1 / (double)rows, m2 = s2 / (double)rows;
        double mean = (double)bf16_to_f32(x[c]) + m1; /* the kernels' shift: the first row */
        double var = m2 - m1 * m1;
        if (var < 0.0) var = 0.0;
        double invstd = 1.0 / sqrt(var + eps);
        float sc = (float)((double)weight[c] * invstd);
        scale[c] = sc;
        shift[c] = (float)((double)bias[c] - mean * (double)sc);
        mean_out[c] = (float)mean;
        invstd_out[c] = (float)invstd;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                 momentum * var * ((double)rows / (double)(rows - 1)));
    }
}

/* From the partial sums of bn_relu_backward_stats: grads = [dweight, dbias, cx, c0] (4 x C floats),
 * with dx = scale * g + cx * x + c0 the input gradient
 * scale * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * invstd. */
void bn_relu_finish_grads(const double *sum_g, const double *sum_gx, int64_t chunks, int64_t C,
                          int64_t rows, const float *stats, float *grads) {
    const float *scale = stats, *mean = stats + 2 * C, *invstd = stats + 3 * C;
    for (int64_t c = 0; c < C; c++) {
        double sg = 0.0, sgx = 0.0;
        for (int64_t k = 0; k < chunks; k++) {
            sg += sum_g[k * C + c];
            sgx += sum_gx[k * C + c];
        }
        double dweight = sgx * (double)invstd[c];
        double cx = -(double)scale[c] * (double)invstd[c] * dweight / (double)rows;
        grads[c] = (float)dweight;
        grads[C + c] = (float)sg;
        grads[2 * C + c] = (float)cx;
        grads[3 * C + c] = (float)(-(double)scale[c] * sg / (double)rows - cx * (double)mean[c]);
    }
}
