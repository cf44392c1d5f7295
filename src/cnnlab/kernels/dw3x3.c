/* Depthwise 3x3 convolution weight gradient (stride 1, padding 1, dilation 1) for bf16 NHWC tensors.

   dW[c][ky][kx] = sum over n, h, w of g[n][h][w][c] * x[n][h + ky - 1][w + kx - 1][c]   (zero outside)

   x and g are the memory of channels_last (N, C, H, W) bf16 tensors, i.e. NHWC. The work is split into
   contiguous ranges of image rows (row r = n * H + h of g); each call handles rows [start, end) and
   writes its fp32 sums to partial[chunk][9][Cp] (tap-major: tap = ky * 3 + kx; Cp = C rounded up to
   32, the first C used), which the caller sums over chunks.

   Why hand-written: oneDNN's depthwise weight gradient runs at 2.6-6x its memory floor on the small
   Xception's shapes (benchmarks/NOTES-speed.md, attempts 14, 17, 18). Here each output row is read
   once per input row it touches (3 times, from L1/L2: one row of x or g is W * C * 2 bytes, 11 KB at
   every mini_xception shape), and the taps' accumulators live in registers for a whole row.

   Three paths, chosen at compile time by -march=native: AVX512_BF16 dot products (Zen 4, Sapphire
   Rapids), AVX-512 FMAs (needs AVX512F + AVX512BW) and plain C for every other CPU. Each compiled path
   has its own entry point besides dw3x3_wgrad (the fastest), so tests can check every one. */

#include <stdint.h>
#include <string.h>

#include "bf16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define DW3X3_AVX512 1
#endif

/* Plain C: per (row, ky) the three kx taps accumulate straight into partial over an inner loop on
   channels, which the compiler vectorises for whatever the CPU has. */
static void wgrad_portable(const uint16_t *restrict x, const uint16_t *restrict g, float *restrict acc,
                           int64_t H, int64_t W, int64_t C, int64_t start, int64_t end) {
    for (int64_t r = start; r < end; r++) {
        const int64_t n = r / H, h = r % H;
        const uint16_t *grow = g + r * W * C;
        for (int64_t ky = 0; ky < 3; ky++) {
            const int64_t hi = h + ky - 1;
            if (hi < 0 || hi >= H) continue; /* padding row: contributes zero */
            const uint16_t *xrow = x + (n * H + hi) * W * C;
            float *a0 = acc + (ky * 3 + 0) * C, *a1 = acc + (ky * 3 + 1) * C, *a2 = acc + (ky * 3 + 2) * C;
            for (int64_t w = 0; w < W; w++) {
                const uint16_t *gp = grow + w * C, *xp = xrow + w * C;
                if (w > 0)
                    for (int64_t c = 0; c < C; c++) a0[c] += bf16_to_f32(gp[c]) * bf16_to_f32(xp[c - C]);
                for (int64_t c = 0; c < C; c++) a1[c] += bf16_to_f32(gp[c]) * bf16_to_f32(xp[c]);
                if (w + 1 < W)
                    for (int64_t c = 0; c < C; c++) a2[c] += bf16_to_f32(gp[c]) * bf16_to_f32(xp[c + C]);
            }
        }
    }
}

#ifdef DW3X3_AVX512
/* Add one (row, ky, 32-channel block)'s six accumulators into buf's three tap rows (kx = 0, 1, 2,
   each Cp apart), 16 channels per register. Both SIMD paths end every block with this. */
static inline void add_taps(float *b, int64_t Cp, __m512 a0, __m512 a0b, __m512 a1, __m512 a1b, __m512 a2,
                            __m512 a2b) {
    _mm512_storeu_ps(b, _mm512_add_ps(_mm512_loadu_ps(b), a0));
    _mm512_storeu_ps(b + 16, _mm512_add_ps(_mm512_loadu_ps(b + 16), a0b));
    b += Cp;
    _mm512_storeu_ps(b, _mm512_add_ps(_mm512_loadu_ps(b), a1));
    _mm512_storeu_ps(b + 16, _mm512_add_ps(_mm512_loadu_ps(b + 16), a1b));
    b += Cp;
    _mm512_storeu_ps(b, _mm512_add_ps(_mm512_loadu_ps(b), a2));
    _mm512_storeu_ps(b + 16, _mm512_add_ps(_mm512_loadu_ps(b + 16), a2b));
}

/* 32 bf16 channels -> two fp32 vectors without a shuffle: the even channels are the low 16 bits of
   each 32-bit lane (shift them up), the odd channels the high 16 bits (mask the low ones off). The
   accumulators therefore hold channels in (even, odd) order; the caller's buffer keeps that order and
   it is undone once per call. */
#define SPLIT(v, e, o)                                                          \
    do {                                                                        \
        e = _mm512_castsi512_ps(_mm512_slli_epi32((v), 16));                    \
        o = _mm512_castsi512_ps(_mm512_and_si512((v), hi_mask));                \
    } while (0)

/* buf: [9][Cp] fp32 in (even, odd) order per 32-channel block, Cp = C rounded up to 32. */
static void wgrad_avx512(const uint16_t *restrict x, const uint16_t *restrict g, float *restrict buf,
                         int64_t H, int64_t W, int64_t C, int64_t Cp, int64_t start, int64_t end) {
    const __m512i hi_mask = _mm512_set1_epi32((int)0xFFFF0000u);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = start; r < end; r++) {
        const int64_t n = r / H, h = r % H;
        const uint16_t *grow = g + r * W * C;
        for (int64_t ky = 0; ky < 3; ky++) {
            const int64_t hi = h + ky - 1;
            if (hi < 0 || hi >= H) continue;
            const uint16_t *xrow = x + (n * H + hi) * W * C;
            /* While ky = 0 works on rows already in cache, prefetch the rows the next output row
               touches first (its g row and x row h + 2): one line each per column, hiding the DRAM
               latency a single core cannot cover with demand loads alone. */
            const uint16_t *pg = ky == 0 && r + 1 < end ? grow + W * C : NULL;
            const uint16_t *px = ky == 0 && r + 1 < end && h + 2 < H ? x + (n * H + h + 2) * W * C : NULL;
            for (int64_t c0 = 0; c0 < C; c0 += 32) {
                /* the channel tail loads zeros past C: its accumulators stay zero */
                const __mmask32 m = C - c0 >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (C - c0)) - 1u);
                const uint16_t *gp = grow + c0, *xp = xrow + c0;
                __m512 a0e = zero, a0o = zero, a1e = zero, a1o = zero, a2e = zero, a2o = zero;
                __m512 xle = zero, xlo = zero, xce, xco, xre, xro, ge, go;
                __m512i v = _mm512_maskz_loadu_epi16(m, xp);
                SPLIT(v, xce, xco);
                /* interior columns: x[w + 1] always exists, no bounds checks */
                for (int64_t w = 0; w < W - 1; w++) {
                    if (pg) _mm_prefetch((const char *)(pg + w * C + c0), _MM_HINT_T1);
                    if (px) _mm_prefetch((const char *)(px + w * C + c0), _MM_HINT_T1);
                    v = _mm512_maskz_loadu_epi16(m, xp + (w + 1) * C);
                    SPLIT(v, xre, xro);
                    v = _mm512_maskz_loadu_epi16(m, gp + w * C);
                    SPLIT(v, ge, go);
                    a0e = _mm512_fmadd_ps(ge, xle, a0e);
                    a0o = _mm512_fmadd_ps(go, xlo, a0o);
                    a1e = _mm512_fmadd_ps(ge, xce, a1e);
                    a1o = _mm512_fmadd_ps(go, xco, a1o);
                    a2e = _mm512_fmadd_ps(ge, xre, a2e);
                    a2o = _mm512_fmadd_ps(go, xro, a2o);
                    xle = xce; xlo = xco; xce = xre; xco = xro;
                }
                /* last column: its right neighbour is padding */
                v = _mm512_maskz_loadu_epi16(m, gp + (W - 1) * C);
                SPLIT(v, ge, go);
                a0e = _mm512_fmadd_ps(ge, xle, a0e);
                a0o = _mm512_fmadd_ps(go, xlo, a0o);
                a1e = _mm512_fmadd_ps(ge, xce, a1e);
                a1o = _mm512_fmadd_ps(go, xco, a1o);
                add_taps(buf + ky * 3 * Cp + c0, Cp, a0e, a0o, a1e, a1o, a2e, a2o);
            }
        }
    }
}
#endif

#if defined(DW3X3_AVX512) && defined(__AVX512BF16__)
#define DW3X3_AVX512BF16 1
/* AVX512_BF16: one vdpbf16ps multiplies 32 bf16 pairs and adds each pair's two products into one
   fp32 lane, half the instructions of the FMA path. The pair is the same channel at two adjacent
   columns (w, w + 1), built with vpunpck{l,h}wd, so per two columns and 32 channels the three kx taps
   cost 6 shuffles and 6 dot products instead of 8 integer ops and 12 FMAs. Lane order: unpacklo holds
   channels 8L..8L+3 of each 128-bit lane L, unpackhi 8L+4..8L+7; the caller undoes it per block. */
#define DP(acc, a, b) acc = _mm512_dpbf16_ps(acc, (__m512bh)(a), (__m512bh)(b))

static void wgrad_avx512bf16(const uint16_t *restrict x, const uint16_t *restrict g, float *restrict buf,
                             int64_t H, int64_t W, int64_t C, int64_t Cp, int64_t start, int64_t end) {
    const __m512 zero = _mm512_setzero_ps();
    const __m512i zi = _mm512_setzero_si512();
    for (int64_t r = start; r < end; r++) {
        const int64_t n = r / H, h = r % H;
        const uint16_t *grow = g + r * W * C;
        for (int64_t ky = 0; ky < 3; ky++) {
            const int64_t hi = h + ky - 1;
            if (hi < 0 || hi >= H) continue;
            const uint16_t *xrow = x + (n * H + hi) * W * C;
            /* see wgrad_avx512: prefetch the next output row's first-touch rows during ky = 0 */
            const uint16_t *pg = ky == 0 && r + 1 < end ? grow + W * C : NULL;
            const uint16_t *px = ky == 0 && r + 1 < end && h + 2 < H ? x + (n * H + h + 2) * W * C : NULL;
            for (int64_t c0 = 0; c0 < C; c0 += 32) {
                const __mmask32 m = C - c0 >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (C - c0)) - 1u);
                const uint16_t *gp = grow + c0, *xp = xrow + c0;
                __m512 a0l = zero, a0h = zero, a1l = zero, a1h = zero, a2l = zero, a2h = zero;
                /* state at column w: xc = x[w]; (pl, ph) = pairs (x[w - 1], x[w]), zero-padded at w = 0 */
                __m512i xc = _mm512_maskz_loadu_epi16(m, xp);
                __m512i pl = _mm512_unpacklo_epi16(zi, xc), ph = _mm512_unpackhi_epi16(zi, xc);
                int64_t w = 0;
                /* interior pairs of columns: x[w + 2] exists, no bounds checks */
                for (; w + 2 < W; w += 2) {
                    if (pg) {
                        _mm_prefetch((const char *)(pg + w * C + c0), _MM_HINT_T1);
                        _mm_prefetch((const char *)(pg + (w + 1) * C + c0), _MM_HINT_T1);
                    }
                    if (px) {
                        _mm_prefetch((const char *)(px + w * C + c0), _MM_HINT_T1);
                        _mm_prefetch((const char *)(px + (w + 1) * C + c0), _MM_HINT_T1);
                    }
                    const __m512i x1 = _mm512_maskz_loadu_epi16(m, xp + (w + 1) * C);
                    const __m512i x2 = _mm512_maskz_loadu_epi16(m, xp + (w + 2) * C);
                    const __m512i g0 = _mm512_maskz_loadu_epi16(m, gp + w * C);
                    const __m512i g1 = _mm512_maskz_loadu_epi16(m, gp + (w + 1) * C);
                    const __m512i gl = _mm512_unpacklo_epi16(g0, g1), gh = _mm512_unpackhi_epi16(g0, g1);
                    const __m512i ql = _mm512_unpacklo_epi16(xc, x1), qh = _mm512_unpackhi_epi16(xc, x1);
                    const __m512i sl = _mm512_unpacklo_epi16(x1, x2), sh = _mm512_unpackhi_epi16(x1, x2);
                    DP(a0l, gl, pl); DP(a0h, gh, ph);  /* g[w] x[w-1] + g[w+1] x[w]   */
                    DP(a1l, gl, ql); DP(a1h, gh, qh);  /* g[w] x[w]   + g[w+1] x[w+1] */
                    DP(a2l, gl, sl); DP(a2h, gh, sh);  /* g[w] x[w+1] + g[w+1] x[w+2] */
                    pl = sl; ph = sh; xc = x2;
                }
                /* the last one or two columns: loads past the row's end read zeros (mask 0) */
                {
                    const __mmask32 m1 = w + 1 < W ? m : 0, m2 = w + 2 < W ? m : 0;
                    const __m512i x1 = _mm512_maskz_loadu_epi16(m1, xp + (w + 1) * C);
                    const __m512i x2 = _mm512_maskz_loadu_epi16(m2, xp + (w + 2) * C);
                    const __m512i g0 = _mm512_maskz_loadu_epi16(m, gp + w * C);
                    const __m512i g1 = _mm512_maskz_loadu_epi16(m1, gp + (w + 1) * C);
                    const __m512i gl = _mm512_unpacklo_epi16(g0, g1), gh = _mm512_unpackhi_epi16(g0, g1);
                    const __m512i ql = _mm512_unpacklo_epi16(xc, x1), qh = _mm512_unpackhi_epi16(xc, x1);
                    const __m512i sl = _mm512_unpacklo_epi16(x1, x2), sh = _mm512_unpackhi_epi16(x1, x2);
                    DP(a0l, gl, pl); DP(a0h, gh, ph);
                    DP(a1l, gl, ql); DP(a1h, gh, qh);
                    DP(a2l, gl, sl); DP(a2h, gh, sh);
                }
                add_taps(buf + ky * 3 * Cp + c0, Cp, a0l, a0h, a1l, a1h, a2l, a2h);
            }
        }
    }
}
#endif

static inline int64_t padded(int64_t C) { return (C + 31) / 32 * 32; }

/* The portable loop sums at tap stride C, computed in place; the caller reads stride Cp. Backwards:
   tap t's row moves right, never over data not yet moved. */
static void spread(float *acc, int64_t C, int64_t Cp) {
    for (int64_t t = 8; t > 0; t--) memmove(acc + t * Cp, acc + t * C, (size_t)C * sizeof(float));
}

/* Plain C path on rows [start, end): partial[chunk] = this range's sums, laid out [9][Cp] with
   Cp = C rounded up to 32 (the caller reads the first C of each tap's row). */
void dw3x3_wgrad_portable(const void *x, const void *g, float *partial, int64_t H, int64_t W, int64_t C,
                          int64_t chunk, int64_t start, int64_t end) {
    const int64_t Cp = padded(C);
    float *acc = partial + chunk * 9 * Cp;
    memset(acc, 0, (size_t)(9 * Cp) * sizeof(float));
    wgrad_portable((const uint16_t *)x, (const uint16_t *)g, acc, H, W, C, start, end);
    spread(acc, C, Cp);
}

#ifdef DW3X3_AVX512
/* Position of channel k (0..31) of a block in the accumulators' order: (even, odd) for the FMA path,
   (unpacklo, unpackhi) lanes for the BF16 path. */
static inline int pos_fma(int k) { return k % 2 ? 16 + k / 2 : k / 2; }
static inline int pos_bf16(int k) { return (k % 8 < 4 ? 0 : 16) + 4 * (k / 8) + k % 4; }

static void unpermute(float *buf, int64_t Cp, int (*pos)(int)) {
    for (int64_t t = 0; t < 9; t++)
        for (int64_t c0 = 0; c0 < Cp; c0 += 32) {
            float tmp[32], *b = buf + t * Cp + c0;
            memcpy(tmp, b, sizeof tmp);
            for (int k = 0; k < 32; k++) b[k] = tmp[pos(k)];
        }
}

/* The AVX-512 FMA path (any AVX512F + AVX512BW CPU), same contract as dw3x3_wgrad_portable. */
void dw3x3_wgrad_avx512(const void *x, const void *g, float *partial, int64_t H, int64_t W, int64_t C,
                        int64_t chunk, int64_t start, int64_t end) {
    const int64_t Cp = padded(C);
    float *buf = partial + chunk * 9 * Cp;
    memset(buf, 0, (size_t)(9 * Cp) * sizeof(float));
    wgrad_avx512((const uint16_t *)x, (const uint16_t *)g, buf, H, W, C, Cp, start, end);
    unpermute(buf, Cp, pos_fma);
}
#endif

#ifdef DW3X3_AVX512BF16
/* The AVX512_BF16 dot-product path, same contract as dw3x3_wgrad_portable. */
void dw3x3_wgrad_avx512bf16(const void *x, const void *g, float *partial, int64_t H, int64_t W, int64_t C,
                            int64_t chunk, int64_t start, int64_t end) {
    const int64_t Cp = padded(C);
    float *buf = partial + chunk * 9 * Cp;
    memset(buf, 0, (size_t)(9 * Cp) * sizeof(float));
    wgrad_avx512bf16((const uint16_t *)x, (const uint16_t *)g, buf, H, W, C, Cp, start, end);
    unpermute(buf, Cp, pos_bf16);
}
#endif

/* The fastest path this build has, with fixed tiles claimed dynamically. The rows are cut into
   `tiles` fixed ranges, tile t = rows [total*t/tiles, total*(t+1)/tiles); each call claims whole
   tiles from the shared counter *next (zero before the first call) until all are taken, and writes
   tile t's sums to partial[t], ignoring chunk, start and end. Why dynamic: right after a oneDNN op,
   torch's OpenMP worker keeps spinning on a core for a few ms (libgomp's default wait policy), so a
   static split makes the thread that shares its core the straggler; claiming lets the other threads
   take over its tiles. Why fixed tiles rather than claimed rows summed per thread: which thread took
   which rows changes from run to run, so per-thread sums would add the same products in a different
   order each time and training would not be reproducible; a tile's sum depends only on its rows, and
   the caller adds the tiles in index order. Writes nothing else: cannot fail. */
void dw3x3_wgrad(const void *x, const void *g, float *partial, int64_t H, int64_t W, int64_t C,
                 int64_t *next, int64_t total, int64_t tiles, int64_t chunk, int64_t start, int64_t end) {
    (void)chunk;
    (void)start;
    (void)end;
    const int64_t Cp = padded(C);
    for (;;) {
        const int64_t t = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
        if (t >= tiles) break;
        const int64_t r0 = total * t / tiles, r1 = total * (t + 1) / tiles;
        float *buf = partial + t * 9 * Cp;
        memset(buf, 0, (size_t)(9 * Cp) * sizeof(float));
#if defined(DW3X3_AVX512BF16)
        wgrad_avx512bf16((const uint16_t *)x, (const uint16_t *)g, buf, H, W, C, Cp, r0, r1);
        unpermute(buf, Cp, pos_bf16);
#elif defined(DW3X3_AVX512)
        wgrad_avx512((const uint16_t *)x, (const uint16_t *)g, buf, H, W, C, Cp, r0, r1);
        unpermute(buf, Cp, pos_fma);
#else
        wgrad_portable((const uint16_t *)x, (const uint16_t *)g, buf, H, W, C, r0, r1); /* stride C */
        spread(buf, C, Cp);
#endif
    }
}

/* Which paths this build has: bit 0 the AVX-512 FMA path (dw3x3_wgrad_avx512), bit 1 the AVX512_BF16
   path (dw3x3_wgrad_avx512bf16); 0 means dw3x3_wgrad is the plain C path. */
int dw3x3_paths(void) {
    int paths = 0;
#ifdef DW3X3_AVX512
    paths |= 1;
#endif
#ifdef DW3X3_AVX512BF16
    paths |= 2;
#endif
    return paths;
}
