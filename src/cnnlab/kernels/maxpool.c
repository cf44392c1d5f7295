/* 'same' max pooling (Keras padding="same") on bf16 NHWC tensors, forward and backward
 * (cnnlab.kernels.maxpool drives these).
 *
 * Why: PyTorch's CPU max pool for bf16 channels_last runs at 5-10x its memory floor in the lecture's
 * mini_xception (32ch x 176^2 -> 88^2: forward 25 ms, backward 16.5 ms, where reading the 63 MB
 * input takes ~2 ms). Here the forward reads x once (windows overlap in cache) and writes y plus a
 * one-byte argmax per output; the backward is in GATHER form: each input element sums dy over the
 * (at most ceil(k/s)^2) windows that cover it and whose argmax points at it, so dx is written once,
 * with no zero fill and no races between threads.
 *
 * Layout: x is N x H x W x C bf16 (a channels_last NCHW tensor's memory), y and the argmax are
 * N x OH x OW x C. Window (oy, ox) covers rows oy*s - pt .. + k - 1 and columns ox*s - pl .. + k - 1;
 * positions outside the input count as -inf (never chosen). The argmax is ky*k + kx inside the window.
 *
 * Semantics follow torch's CPU max pool: scan (ky, kx) in order, replace the running max when
 * v > max or v is NaN, so ties keep the FIRST max and a NaN wins (the LAST NaN in scan order holds
 * the argmax); the argmax starts at the first in-bounds position (an all -inf window points there).
 * dx sums in fp32 in (oy, ox) order and rounds once to bf16 (round to nearest even). With
 * AVX512-BF16 the SIMD path rounds with VCVTNE2PS2BF16 (one instruction for 32 lanes, ~20% of the
 * backward); unlike the portable path it flushes a denormal sum to zero (dy below 1e-38: never seen
 * in training), otherwise the two paths agree bit for bit.
 *
 * Every entry point takes (..., chunk, start, end) last, the convention of
 * cnnlab.kernels.parallel_chunks: forward handles output rows [start, end) of N * OH, backward input
 * rows [start, end) of N * H.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define MAXPOOL_SIMD 1
#else
#define MAXPOOL_SIMD 0
#endif

/* Tests switch the SIMD path off to check the portable one on the same machine. */
static int force_portable = 0;

void maxpool_set_portable(int on) { force_portable = on; }

int maxpool_has_simd(void) { return MAXPOOL_SIMD; }


static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* Floor division for a possibly negative numerator and a positive divisor. */
static inline int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The outputs along one axis whose window covers input index i: [*lo, *hi). */
static inline void covering(int64_t i, int64_t k, int64_t s, int64_t pad, int64_t out, int64_t *lo,
                            int64_t *hi) {
    /* o*s - pad <= i  and  i <= o*s - pad + k - 1 */
    *lo = imax(0, floordiv(i + pad - k, s) + 1);
    *hi = imin(out, floordiv(i + pad, s) + 1);
}

/* ---------------------------------------------------------------- portable C ------------------ */

static void fwd_portable(const uint16_t *x, uint16_t *y, uint8_t *arg, int64_t H, int64_t W,
                         int64_t C, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH,
                         int64_t OW, int64_t start, int64_t end) {
    for (int64_t r = start; r < end; r++) {
        int64_t n = r / OH, oy = r % OH;
        int64_t y0 = oy * s - pt, ky0 = imax(0, -y0), ky1 = imin(k, H - y0);
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t x0 = ox * s - pl, kx0 = imax(0, -x0), kx1 = imin(k, W - x0);
            uint16_t *yo = y + (r * OW + ox) * C;
            uint8_t *ao = arg + (r * OW + ox) * C;
            for (int64_t c = 0; c < C; c++) {
                float best = -__builtin_inff();
                uint16_t bits = 0xff80u; /* -inf */
                uint8_t at = (uint8_t)(ky0 * k + kx0);
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    const uint16_t *xr = x + ((n * H + y0 + ky) * W + x0) * C + c;
                    for (int64_t kx = kx0; kx < kx1; kx++) {
                        uint16_t b = xr[kx * C];
                        float v = bf16_to_f32(b);
                        if (v > best || v != v) {
                            best = v;
                            bits = b;
                            at = (uint8_t)(ky * k + kx);
                        }
                    }
                }
                yo[c] = bits;
                ao[c] = at;
            }
        }
    }
}

static void bwd_portable(const uint16_t *dy, const uint8_t *arg, uint16_t *dx, int64_t H, int64_t W,
                         int64_t C, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH,
                         int64_t OW, int64_t start, int64_t end) {
    for (int64_t r = start; r < end; r++) {
        int64_t n = r / H, iy = r % H, oy0, oy1;
        covering(iy, k, s, pt, OH, &oy0, &oy1);
        for (int64_t ix = 0; ix < W; ix++) {
            int64_t ox0, ox1;
            covering(ix, k, s, pl, OW, &ox0, &ox1);
            uint16_t *d = dx + (r * W + ix) * C;
            for (int64_t c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int64_t oy = oy0; oy < oy1; oy++) {
                    int64_t ky = iy - (oy * s - pt);
                    for (int64_t ox = ox0; ox < ox1; ox++) {
                        int64_t o = ((n * OH + oy) * OW + ox) * C + c;
                        if (arg[o] == (uint8_t)(ky * k + ix - (ox * s - pl))) acc += bf16_to_f32(dy[o]);
                    }
                }
                d[c] = f32_to_bf16(acc);
            }
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 -------------------- */
#if MAXPOOL_SIMD

static inline __mmask32 tail_mask32(int64_t C, int64_t c) {
    int64_t n = C - c;
    return n >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << n) - 1u);
}

static inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The int16 key of 32 bf16 values (see fwd_simd); a NaN's key is 0x7fff, which no number reaches. */
static inline __m512i bf16_key(__m512i b, __m512i mag, __m512i inf) {
    __m512i sign = _mm512_srai_epi16(b, 15);
    __m512i a = _mm512_and_si512(b, mag);
    __m512i key = _mm512_sub_epi16(_mm512_xor_si512(a, sign), sign);
    return _mm512_mask_mov_epi16(key, _mm512_cmpgt_epi16_mask(a, inf), mag);
}

/* 32 channels per step, compared as int16 keys instead of widened fp32 (half the work on Zen 4's
 * double-pumped AVX-512): key = +magnitude for a positive bf16, -magnitude for a negative one, so
 * signed key order is float order and -0 == +0 (a tie, as in float); a NaN gets key 0x7fff, above
 * every number, and always replaces the running max (torch's `v > max || isnan(v)`), so once a NaN
 * is held only a later NaN replaces it. y is the chosen input's own bits (a max is exact). */
static void fwd_simd(const uint16_t *x, uint16_t *y, uint8_t *arg, int64_t H, int64_t W, int64_t C,
                     int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH, int64_t OW,
                     int64_t start, int64_t end) {
    const __m512i mag = _mm512_set1_epi16(0x7fff), inf = _mm512_set1_epi16(0x7f80);
    for (int64_t r = start; r < end; r++) {
        int64_t n = r / OH, oy = r % OH;
        int64_t y0 = oy * s - pt, ky0 = imax(0, -y0), ky1 = imin(k, H - y0);
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t x0 = ox * s - pl, kx0 = imax(0, -x0), kx1 = imin(k, W - x0);
            uint16_t *yo = y + (r * OW + ox) * C;
            uint8_t *ao = arg + (r * OW + ox) * C;
            for (int64_t c = 0; c < C; c += 32) {
                __mmask32 m = tail_mask32(C, c);
                __m512i best = _mm512_set1_epi16((short)-0x7f80); /* -inf's key */
                __m512i bits = _mm512_set1_epi16((short)0xff80);
                __m256i at = _mm256_set1_epi8((char)(ky0 * k + kx0));
                /* each row is folded on its own (first tap, then the rest), then the rows into the
                 * running max: the rows' chains are independent, so the CPU overlaps them (one chain
                 * through all k * k taps was latency-bound). Folding contiguous segments in order
                 * keeps torch's result: a later segment wins on a greater key or a NaN. */
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    const uint16_t *xr = x + ((n * H + y0 + ky) * W + x0) * C + c;
                    __m512i rb = _mm512_maskz_loadu_epi16(m, xr + kx0 * C);
                    __m512i rk = bf16_key(rb, mag, inf);
                    __m256i ra = _mm256_set1_epi8((char)(ky * k + kx0));
                    for (int64_t kx = kx0 + 1; kx < kx1; kx++) {
                        __m512i b = _mm512_maskz_loadu_epi16(m, xr + kx * C);
                        __m512i key = bf16_key(b, mag, inf);
                        __mmask32 u = _mm512_cmpgt_epi16_mask(key, rk) | _mm512_cmpeq_epi16_mask(key, mag);
                        rk = _mm512_mask_mov_epi16(rk, u, key);
                        rb = _mm512_mask_mov_epi16(rb, u, b);
                        ra = _mm256_mask_mov_epi8(ra, u, _mm256_set1_epi8((char)(ky * k + kx)));
                    }
                    __mmask32 u = _mm512_cmpgt_epi16_mask(rk, best) | _mm512_cmpeq_epi16_mask(rk, mag);
                    best = _mm512_mask_mov_epi16(best, u, rk);
                    bits = _mm512_mask_mov_epi16(bits, u, rb);
                    at = _mm256_mask_mov_epi8(at, u, ra);
                }
                _mm512_mask_storeu_epi16(yo + c, m, bits);
                _mm256_mask_storeu_epi8(ao + c, m, at);
            }
        }
    }
}

static void bwd_simd(const uint16_t *dy, const uint8_t *arg, uint16_t *dx, int64_t H, int64_t W,
                     int64_t C, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH, int64_t OW,
                     int64_t start, int64_t end) {
    /* the covering windows of each column, once per call (the divisions cost more than the sums) */
    int64_t *cols = malloc(2 * (size_t)W * sizeof(int64_t));
    if (!cols) abort();
    for (int64_t ix = 0; ix < W; ix++) covering(ix, k, s, pl, OW, cols + 2 * ix, cols + 2 * ix + 1);
    const __m512i zero = _mm512_setzero_si512();
#if defined(__AVX512BF16__)
    /* word i of the result comes from word order[i] of [lo's 16 | hi's 16] */
    uint16_t idx[32];
    for (int i = 0; i < 32; i++) idx[i] = (uint16_t)(i % 8 < 4 ? 4 * (i / 8) + i % 8 : 16 + 4 * (i / 8) + i % 8 - 4);
    const __m512i order = _mm512_loadu_si512(idx);
#endif
    for (int64_t r = start; r < end; r++) {
        int64_t n = r / H, iy = r % H, oy0, oy1;
        covering(iy, k, s, pt, OH, &oy0, &oy1);
        for (int64_t ix = 0; ix < W; ix++) {
            int64_t ox0 = cols[2 * ix], ox1 = cols[2 * ix + 1];
            uint16_t *d = dx + (r * W + ix) * C;
            for (int64_t c = 0; c < C; c += 32) {
                __mmask32 m = tail_mask32(C, c);
                /* dy is widened by interleaving with zeros inside each 128-bit lane (no cross-lane
                 * shuffle): lo holds channels 0-3, 8-11, ... and hi 4-7, 12-15, ...; the store
                 * undoes that order */
                __m512 lo = _mm512_setzero_ps(), hi = lo;
                for (int64_t oy = oy0; oy < oy1; oy++) {
                    int64_t ky = iy - (oy * s - pt);
                    for (int64_t ox = ox0; ox < ox1; ox++) {
                        int64_t o = ((n * OH + oy) * OW + ox) * C + c;
                        __m256i a = _mm256_maskz_loadu_epi8(m, arg + o);
                        __mmask32 hit = _mm256_mask_cmpeq_epi8_mask(
                            m, a, _mm256_set1_epi8((char)(ky * k + ix - (ox * s - pl))));
                        /* no branch on hit: it is data-dependent and mispredicts; a masked load
                         * with an empty mask touches no memory, and a missed channel adds +0 */
                        __m512i g = _mm512_maskz_loadu_epi16(hit, dy + o);
                        lo = _mm512_add_ps(lo, _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, g)));
                        hi = _mm512_add_ps(hi, _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, g)));
                    }
                }
#if defined(__AVX512BF16__)
                __m512i out = _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
#else
                __m512i out = _mm512_packus_epi32(f32_to_bf16_x16(lo), f32_to_bf16_x16(hi)); /* per lane: the inverse */
#endif
                _mm512_mask_storeu_epi16(d + c, m, out);
            }
        }
    }
    free(cols);
}

#endif

/* ---------------------------------------------------------------- entry points --------------- */

void maxpool_forward(const uint16_t *x, uint16_t *y, uint8_t *arg, int64_t H, int64_t W, int64_t C,
                     int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH, int64_t OW,
                     int64_t chunk, int64_t start, int64_t end) {
    (void)chunk;
#if MAXPOOL_SIMD
    if (!force_portable) {
        fwd_simd(x, y, arg, H, W, C, k, s, pt, pl, OH, OW, start, end);
        return;
    }
#endif
    fwd_portable(x, y, arg, H, W, C, k, s, pt, pl, OH, OW, start, end);
}

void maxpool_backward(const uint16_t *dy, const uint8_t *arg, uint16_t *dx, int64_t H, int64_t W,
                      int64_t C, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t OH, int64_t OW,
                      int64_t chunk, int64_t start, int64_t end) {
    (void)chunk;
#if MAXPOOL_SIMD
    if (!force_portable) {
        bwd_simd(dy, arg, dx, H, W, C, k, s, pt, pl, OH, OW, start, end);
        return;
    }
#endif
    bwd_portable(dy, arg, dx, H, W, C, k, s, pt, pl, OH, OW, start, end);
}
