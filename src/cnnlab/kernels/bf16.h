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

#endif
