/* bf16 <-> fp32 conversions shared by cnnlab's C kernels (one definition of the rounding rule).
 *
 * bf16 is the top half of an IEEE fp32, so widening is a 16-bit shift. Narrowing rounds to nearest
 * even, as torch does, and keeps a NaN a (quiet) NaN instead of letting the rounding carry it into
 * infinity. The loader (cnnlab/kernels/__init__.py) hashes this header with each kernel's source,
 * so a change here rebuilds every kernel.
 */
#ifndef CNNLAB_BF16_H
#define CNNLAB_BF16_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* f32_to_bf16 on 16 lanes: the bf16 bits in each 32-bit lane's low half. Not VCVTNEPS2BF16, which
 * flushes denormals: the SIMD and portable paths must agree bit for bit. */
static inline __m512i f32_to_bf16_x16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                     _mm512_and_si512(hi, _mm512_set1_epi32(1))));
    r = _mm512_srli_epi32(r, 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
}
#endif

#endif
