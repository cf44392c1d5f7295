/* JPEG entropy decoding to quantised DCT coefficients, without the inverse DCT (see reader.py).

   Why by hand: the point of the DCT input mode is to skip work, and the maintained decoders either
   decode all the way to pixels (Pillow, simplejpeg) or copy the coefficients through libjpeg's
   virtual arrays at ~4x the cost (jpeglib). This file does only what the coefficients need: marker
   parsing, Huffman decoding of baseline/extended sequential and progressive scans (ITU-T T.81 Annex F
   and G), restart intervals. Arithmetic coding, lossless and hierarchical files, 12-bit precision
   and CMYK are refused with an error code that reader.py turns into a message.

   Output layout: per component one int16 plane of (64, rows, cols) blocks -- coefficient k in
   zig-zag order is the outermost axis, so no natural-order table is needed anywhere here.
   rows/cols are the MCU-padded block counts jdct_info reports; reader.py crops them. */

#include <stdint.h>
#include <string.h>

enum {
    JDCT_OK = 0, JDCT_NOT_JPEG = 1, JDCT_TRUNCATED = 2, JDCT_CORRUPT = 3, JDCT_ARITHMETIC = 4,
    JDCT_LOSSLESS = 5, JDCT_HIERARCHICAL = 6, JDCT_PRECISION = 7, JDCT_COMPONENTS = 8, JDCT_NO_FRAME = 9,
    JDCT_BAD_SAMPLING = 10, JDCT_RGB_CODED = 11, JDCT_TOO_LARGE = 12
};

#define MAXC 4

typedef struct {
    uint8_t look_len[512];   /* 9-bit lookahead: code length (0 = longer than 9 bits) */
    uint8_t look_val[512];
    int16_t fast_ac[512];    /* AC: (value << 8) | (run << 4) | bits used, when code + value fit 9 bits */
    int32_t maxcode[18];     /* largest code of each length, -1 if none (T.81 F.2.2.3) */
    int32_t valptr[17];
    int32_t mincode[17];
    uint8_t vals[256];
    int defined;
} huff_t;

typedef struct {
    int id, h, v, tq;
    int rows, cols;          /* MCU-padded block counts: the plane's shape */
    int brows, bcols;        /* blocks that hold image data: a non-interleaved scan covers these */
    int dc_pred;
} comp_t;

typedef struct {
    int width, height, ncomp, progressive, hmax, vmax, mcux, mcuy, restart, adobe, adobe_transform;
    int have_frame;
    comp_t comp[MAXC];
    uint16_t qt[4][64];      /* zig-zag order, as stored in the file */
    int qt_defined[4];
    huff_t dc[4], ac[4];
} frame_t;

typedef struct {
    const uint8_t *p, *end;
    uint64_t acc;
    int bits, fake, marker;
} bits_t;

/* ---- bit reader: 0xFF00 stuffing, and zeros fed after a marker ('fake' counts them) ---- */

static inline __attribute__((always_inline)) void fill_slow(bits_t *b) {
    while (b->bits <= 56) {
        uint64_t c = 0;
        if (!b->marker && b->p < b->end) {
            c = *b->p;
            if (c == 0xFF) {
                uint8_t next = (b->p + 1 < b->end) ? b->p[1] : 0xD9;
                if (next == 0x00) {
                    b->p += 2;
                } else {
                    b->marker = 1;   /* p stays on the marker for the restart / scan code */
                    c = 0;
                    b->fake += 8;
                }
            } else {
                b->p++;
            }
        } else {
            b->fake += 8;
        }
        b->acc |= c << (56 - b->bits);
        b->bits += 8;
    }
}

/* Every step of the hot path is always_inline into decode_scan, so that the bit state lives in
   registers (13-15% faster than calls through pointers, benchmarks/jpeg_read_bench.py).
   Fast path: when none of the next 8 bytes is 0xFF (no stuffing, no marker), take the whole bytes
   that fit in one load. Entropy-coded data holds a 0xFF about once in 256 bytes. */
static inline __attribute__((always_inline)) void fill(bits_t *b) {
    if (b->bits <= 56 && !b->marker && b->p + 8 <= b->end) {
        uint64_t w;
        memcpy(&w, b->p, 8);
        uint64_t inv = ~w;   /* a 0xFF byte becomes a zero byte */
        if (!((inv - 0x0101010101010101ULL) & ~inv & 0x8080808080808080ULL)) {
            w = __builtin_bswap64(w);
            int n = (64 - b->bits) >> 3;   /* whole bytes that fit */
            b->acc |= (w >> (64 - 8 * n)) << (64 - 8 * n - b->bits);
            b->bits += 8 * n;
            b->p += n;
            return;
        }
    }
    fill_slow(b);
}

static inline __attribute__((always_inline)) void skip_bits(bits_t *b, int n) { b->acc <<= n; b->bits -= n; }

static inline __attribute__((always_inline)) int get_bits(bits_t *b, int n) {   /* 1 <= n <= 16 */
    if (b->bits < n) fill(b);
    int v = (int)(b->acc >> (64 - n));
    skip_bits(b, n);
    return v;
}

static inline int extend(int v, int s) { return v < (1 << (s - 1)) ? v - (1 << s) + 1 : v; }

static inline __attribute__((always_inline)) int receive_extend(bits_t *b, int s) { return s ? extend(get_bits(b, s), s) : 0; }

static inline __attribute__((always_inline)) int decode(bits_t *b, const huff_t *h) {
    if (b->bits < 16) fill(b);
    unsigned look = (unsigned)(b->acc >> (64 - 9));
    int len = h->look_len[look];
    if (len) {
        skip_bits(b, len);
        return h->look_val[look];
    }
    for (int l = 10; l <= 16; l++) {
        int32_t code = (int32_t)(b->acc >> (64 - l));
        if (code <= h->maxcode[l]) {
            skip_bits(b, l);
            return h->vals[h->valptr[l] + code - h->mincode[l]];
        }
    }
    return -1;   /* no such code: corrupt data */
}

/* ---- tables ---- */

static int build_huff(huff_t *h, const uint8_t *counts, const uint8_t *vals, int total) {
    memset(h, 0, sizeof *h);
    memcpy(h->vals, vals, (size_t)total);
    int code = 0, k = 0;
    for (int l = 1; l <= 16; l++) {
        h->valptr[l] = k;
        h->mincode[l] = code;
        for (int i = 0; i < counts[l - 1]; i++, k++, code++) {
            if (l <= 9) {   /* every 9-bit prefix that starts with this code */
                int shift = 9 - l;
                for (int j = 0; j < (1 << shift); j++) {
                    h->look_len[(code << shift) | j] = (uint8_t)l;
                    h->look_val[(code << shift) | j] = vals[k];
                }
            }
        }
        h->maxcode[l] = counts[l - 1] ? code - 1 : -1;
        if (code > (1 << l)) return JDCT_CORRUPT;   /* more codes than the length allows */
        code <<= 1;
    }
    h->maxcode[17] = 0x7fffffff;
    for (int i = 0; i < 512; i++) {   /* stb_image's trick: code and value in one lookup */
        int l = h->look_len[i], r = h->look_val[i] >> 4, sz = h->look_val[i] & 15;
        if (l && sz && l + sz <= 9) {
            int v = extend((i >> (9 - l - sz)) & ((1 << sz) - 1), sz);
            if (v >= -128 && v <= 127) h->fast_ac[i] = (int16_t)((v * 256) | (r << 4) | (l + sz));
        }
    }
    h->defined = 1;
    return JDCT_OK;
}

static inline int u16(const uint8_t *p) { return (p[0] << 8) | p[1]; }

static int parse_dqt(frame_t *f, const uint8_t *p, int len) {
    while (len > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15, n = pq ? 129 : 65;
        if (tq > 3 || pq > 1 || len < n) return JDCT_CORRUPT;
        for (int k = 0; k < 64; k++) f->qt[tq][k] = (uint16_t)(pq ? u16(p + 1 + 2 * k) : p[1 + k]);
        f->qt_defined[tq] = 1;
        p += n;
        len -= n;
    }
    return JDCT_OK;
}

static int parse_dht(frame_t *f, const uint8_t *p, int len) {
    while (len > 0) {
        if (len < 17) return JDCT_CORRUPT;
        int tc = p[0] >> 4, th = p[0] & 15, total = 0;
        for (int i = 0; i < 16; i++) total += p[1 + i];
        if (tc > 1 || th > 3 || total > 256 || len < 17 + total) return JDCT_CORRUPT;
        int err = build_huff(tc ? &f->ac[th] : &f->dc[th], p + 1, p + 17, total);
        if (err) return err;
        p += 17 + total;
        len -= 17 + total;
    }
    return JDCT_OK;
}

static int parse_sof(frame_t *f, int marker, const uint8_t *p, int len) {
    if (marker == 0xC3 || marker == 0xC7 || marker == 0xCB || marker == 0xCF) return JDCT_LOSSLESS;
    if (marker >= 0xC9) return JDCT_ARITHMETIC;
    if (marker >= 0xC5) return JDCT_HIERARCHICAL;
    if (f->have_frame) return JDCT_CORRUPT;
    if (len < 6) return JDCT_CORRUPT;
    if (p[0] != 8) return JDCT_PRECISION;
    f->height = u16(p + 1);
    f->width = u16(p + 3);
    f->ncomp = p[5];
    f->progressive = marker == 0xC2;
    if (f->ncomp != 1 && f->ncomp != 3) return JDCT_COMPONENTS;
    if (len < 6 + 3 * f->ncomp) return JDCT_CORRUPT;
    if (f->width == 0 || f->height == 0) return JDCT_CORRUPT;   /* DNL-defined heights are not handled */
    f->hmax = f->vmax = 1;
    for (int c = 0; c < f->ncomp; c++) {
        comp_t *k = &f->comp[c];
        k->id = p[6 + 3 * c];
        k->h = p[7 + 3 * c] >> 4;
        k->v = p[7 + 3 * c] & 15;
        k->tq = p[8 + 3 * c];
        if (k->h < 1 || k->h > 4 || k->v < 1 || k->v > 4 || k->tq > 3) return JDCT_BAD_SAMPLING;
        if (k->h > f->hmax) f->hmax = k->h;
        if (k->v > f->vmax) f->vmax = k->v;
    }
    if (f->ncomp == 1) f->comp[0].h = f->comp[0].v = f->hmax = f->vmax = 1;   /* T.81 A.2.2: one component is never interleaved */
    f->mcux = (f->width + 8 * f->hmax - 1) / (8 * f->hmax);
    f->mcuy = (f->height + 8 * f->vmax - 1) / (8 * f->vmax);
    for (int c = 0; c < f->ncomp; c++) {
        comp_t *k = &f->comp[c];
        k->cols = f->mcux * k->h;
        k->rows = f->mcuy * k->v;
        int cw = (f->width * k->h + f->hmax - 1) / f->hmax, ch = (f->height * k->v + f->vmax - 1) / f->vmax;
        k->bcols = (cw + 7) / 8;
        k->brows = (ch + 7) / 8;
    }
    if ((int64_t)f->mcux * f->mcuy * f->hmax * f->vmax > (1 << 26)) return JDCT_TOO_LARGE;
    f->have_frame = 1;
    return JDCT_OK;
}

/* ---- scans ---- */

typedef struct {
    int ns, idx[MAXC], td[MAXC], ta[MAXC], ss, se, ah, al, eobrun;
} scan_t;

static inline __attribute__((always_inline)) int16_t *coef_ptr(const frame_t *f, int16_t **planes, int c, int row, int col) {
    return planes[c] + (size_t)row * f->comp[c].cols + col;
}

/* one block of a baseline/sequential scan, or of a progressive first DC scan (dc_only) */
static inline __attribute__((always_inline)) int block_sequential(bits_t *b, frame_t *f, const scan_t *s, int i, int16_t *blk, size_t stride) {
    comp_t *k = &f->comp[s->idx[i]];
    if (s->ss == 0 && s->ah == 0) {
        int t = decode(b, &f->dc[s->td[i]]);
        if (t < 0 || t > 15) return JDCT_CORRUPT;
        k->dc_pred += receive_extend(b, t);
        blk[0] = (int16_t)(k->dc_pred * (1 << s->al));
        if (!f->progressive) {
            const huff_t *ac = &f->ac[s->ta[i]];
            for (int z = 1; z < 64;) {
                if (b->bits < 32) fill(b);
                int fast = ac->fast_ac[b->acc >> (64 - 9)];
                if (fast) {
                    z += (fast >> 4) & 15;
                    if (z > 63) return JDCT_CORRUPT;
                    skip_bits(b, fast & 15);
                    blk[z * stride] = (int16_t)(fast >> 8);
                    z++;
                    continue;
                }
                int rs = decode(b, ac);
                if (rs < 0) return JDCT_CORRUPT;
                int r = rs >> 4, sz = rs & 15;
                if (sz) {
                    z += r;
                    if (z > 63) return JDCT_CORRUPT;
                    blk[z * stride] = (int16_t)receive_extend(b, sz);
                    z++;
                } else if (r == 15) {
                    z += 16;
                } else {
                    break;
                }
            }
        }
    } else if (s->ss == 0) {   /* DC refinement: one bit */
        if (get_bits(b, 1)) blk[0] |= (int16_t)(1 << s->al);
    }
    return JDCT_OK;
}

/* The first AC scan of a progressive file. Its loop looks like the sequential one above, but that one
 * is the hot path of baseline files: it has the 9-bit fast AC table and neither EOB runs nor the
 * successive-approximation shift. One loop for both would test those per coefficient. */
static inline __attribute__((always_inline)) int block_ac_first(bits_t *b, frame_t *f, scan_t *s, int16_t *blk, size_t stride) {
    if (s->eobrun > 0) {
        s->eobrun--;
        return JDCT_OK;
    }
    const huff_t *ac = &f->ac[s->ta[0]];
    for (int z = s->ss; z <= s->se;) {
        if (b->bits < 32) fill(b);
        int rs = decode(b, ac);
        if (rs < 0) return JDCT_CORRUPT;
        int r = rs >> 4, sz = rs & 15;
        if (sz) {
            z += r;
            if (z > 63) return JDCT_CORRUPT;
            blk[z * stride] = (int16_t)(receive_extend(b, sz) * (1 << s->al));
            z++;
        } else if (r == 15) {
            z += 16;
        } else {
            s->eobrun = (1 << r) - 1;
            if (r) s->eobrun += get_bits(b, r);
            break;
        }
    }
    return JDCT_OK;
}

static inline __attribute__((always_inline)) void refine(bits_t *b, int16_t *c, int p1) {
    if (get_bits(b, 1) && (*c & p1) == 0) *c = (int16_t)(*c >= 0 ? *c + p1 : *c - p1);
}

/* T.81 G.1.2.3, in libjpeg's decode_mcu_AC_refine arrangement */
static inline __attribute__((always_inline)) int block_ac_refine(bits_t *b, frame_t *f, scan_t *s, int16_t *blk, size_t stride) {
    const huff_t *ac = &f->ac[s->ta[0]];
    int p1 = 1 << s->al, z = s->ss;
    if (s->eobrun == 0) {
        for (; z <= s->se; z++) {
            if (b->bits < 32) fill(b);
            int rs = decode(b, ac);
            if (rs < 0) return JDCT_CORRUPT;
            int r = rs >> 4, sz = rs & 15, value = 0;
            if (sz) {
                if (sz != 1) return JDCT_CORRUPT;
                value = get_bits(b, 1) ? p1 : -p1;
            } else if (r != 15) {
                s->eobrun = 1 << r;
                if (r) s->eobrun += get_bits(b, r);
                break;
            }
            /* skip r zero-history coefficients, refining the nonzero ones on the way */
            for (; z <= s->se; z++) {
                int16_t *c = blk + z * stride;
                if (*c) {
                    refine(b, c, p1);
                } else {
                    if (r == 0) break;
                    r--;
                }
            }
            if (value) {
                if (z > s->se) return JDCT_CORRUPT;
                blk[z * stride] = (int16_t)value;
            }
        }
    }
    if (s->eobrun > 0) {
        for (; z <= s->se; z++) {
            int16_t *c = blk + z * stride;
            if (*c) refine(b, c, p1);
        }
        s->eobrun--;
    }
    return JDCT_OK;
}

static inline __attribute__((always_inline)) int block(bits_t *b, frame_t *f, scan_t *s, int i, int16_t **planes, int row, int col) {
    int c = s->idx[i];
    size_t stride = (size_t)f->comp[c].rows * f->comp[c].cols;
    int16_t *blk = coef_ptr(f, planes, c, row, col);
    if (s->ss == 0) return block_sequential(b, f, s, i, blk, stride);
    return s->ah == 0 ? block_ac_first(b, f, s, blk, stride) : block_ac_refine(b, f, s, blk, stride);
}

/* Discard the partial byte, step over the RSTn marker (or find the next one), reset predictors. */
static inline __attribute__((always_inline)) int restart(bits_t *b, frame_t *f, scan_t *s) {
    if (b->bits < b->fake) return JDCT_TRUNCATED;
    b->acc = 0;
    b->bits = b->fake = 0;
    b->marker = 0;
    while (b->p + 1 < b->end && !(b->p[0] == 0xFF && b->p[1] >= 0xD0 && b->p[1] <= 0xD7)) {
        if (b->p[0] == 0xFF && b->p[1] != 0x00 && b->p[1] != 0xFF) return JDCT_TRUNCATED;   /* some other marker: data missing */
        b->p++;
    }
    if (b->p + 1 >= b->end) return JDCT_TRUNCATED;
    b->p += 2;
    for (int c = 0; c < f->ncomp; c++) f->comp[c].dc_pred = 0;
    s->eobrun = 0;
    return JDCT_OK;
}

static int decode_scan_in(bits_t *b, frame_t *f, scan_t *s, int16_t **planes);

/* The bit state and the scan as locals: with every step inlined the compiler keeps them in
   registers instead of loading and storing them through pointers on every symbol. */
static int decode_scan(bits_t *b, frame_t *f, scan_t *s, int16_t **planes) {
    bits_t local = *b;
    scan_t scan = *s;
    int err = decode_scan_in(&local, f, &scan, planes);
    *b = local;
    *s = scan;
    return err;
}

static inline __attribute__((always_inline)) int decode_scan_in(bits_t *b, frame_t *f, scan_t *s, int16_t **planes) {
    int units, per_row;
    if (s->ns == 1) {   /* non-interleaved: the component's own blocks, one per MCU */
        per_row = f->comp[s->idx[0]].bcols;
        units = per_row * f->comp[s->idx[0]].brows;
    } else {
        per_row = f->mcux;
        units = f->mcux * f->mcuy;
    }
    for (int c = 0; c < f->ncomp; c++) f->comp[c].dc_pred = 0;
    s->eobrun = 0;
    for (int m = 0; m < units; m++) {
        if (f->restart && m > 0 && m % f->restart == 0) {
            int err = restart(b, f, s);
            if (err) return err;
        }
        int my = m / per_row, mx = m % per_row, err = 0;
        if (s->ns == 1) {
            err = block(b, f, s, 0, planes, my, mx);
        } else {
            for (int i = 0; i < s->ns && !err; i++) {
                const comp_t *k = &f->comp[s->idx[i]];
                for (int v = 0; v < k->v && !err; v++)
                    for (int h = 0; h < k->h && !err; h++)
                        err = block(b, f, s, i, planes, my * k->v + v, mx * k->h + h);
            }
        }
        if (err) return err;
    }
    return b->bits < b->fake ? JDCT_TRUNCATED : JDCT_OK;
}

static int parse_sos(frame_t *f, const uint8_t *p, int len, scan_t *s) {
    if (!f->have_frame) return JDCT_NO_FRAME;
    if (len < 1) return JDCT_CORRUPT;
    s->ns = p[0];
    if (s->ns < 1 || s->ns > f->ncomp || len < 4 + 2 * s->ns) return JDCT_CORRUPT;
    for (int i = 0; i < s->ns; i++) {
        int id = p[1 + 2 * i], c = 0;
        while (c < f->ncomp && f->comp[c].id != id) c++;
        if (c == f->ncomp) return JDCT_CORRUPT;
        s->idx[i] = c;
        s->td[i] = p[2 + 2 * i] >> 4;
        s->ta[i] = p[2 + 2 * i] & 15;
        if (s->td[i] > 3 || s->ta[i] > 3) return JDCT_CORRUPT;
    }
    const uint8_t *q = p + 1 + 2 * s->ns;
    s->ss = q[0];
    s->se = q[1];
    s->ah = q[2] >> 4;
    s->al = q[2] & 15;
    if (f->progressive) {
        if (s->ss > s->se || s->se > 63 || (s->ss == 0 && s->se != 0) || (s->ss > 0 && s->ns != 1) || s->al > 13)
            return JDCT_CORRUPT;
    } else {
        s->ss = 0;
        s->se = 63;
        s->ah = s->al = 0;
    }
    for (int i = 0; i < s->ns; i++) {   /* the tables the scan uses must exist */
        int needs_dc = s->ss == 0 && s->ah == 0, needs_ac = s->ss > 0 || !f->progressive;
        if ((needs_dc && !f->dc[s->td[i]].defined) || (needs_ac && !f->ac[s->ta[i]].defined)) return JDCT_CORRUPT;
    }
    return JDCT_OK;
}

/* Walk the markers; decode every scan into planes (NULL: stop at the first scan, headers only). */
static int walk(const uint8_t *data, int64_t n, frame_t *f, int16_t **planes) {
    memset(f, 0, sizeof *f);
    if (n < 4 || data[0] != 0xFF || data[1] != 0xD8) return JDCT_NOT_JPEG;
    const uint8_t *p = data + 2, *end = data + n;
    int scans = 0;
    for (;;) {
        while (p < end && *p != 0xFF) p++;   /* tolerate junk between segments */
        while (p < end && *p == 0xFF) p++;   /* fill bytes */
        if (p >= end) return scans ? JDCT_OK : (f->have_frame ? JDCT_TRUNCATED : JDCT_NO_FRAME);
        int marker = *p++;
        if (marker == 0xD9) return scans || !planes ? JDCT_OK : JDCT_TRUNCATED;
        if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;   /* stuffed byte, TEM, RSTn: no length */
        if (p + 2 > end) return JDCT_TRUNCATED;
        int len = u16(p) - 2;
        if (len < 0 || p + 2 + len > end) return JDCT_TRUNCATED;
        const uint8_t *body = p + 2;
        p = body + len;
        int err = JDCT_OK;
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
            err = parse_sof(f, marker, body, len);
        } else if (marker == 0xCC) {
            return JDCT_ARITHMETIC;   /* DAC: arithmetic-coding conditioning */
        } else if (marker == 0xC4) {
            err = parse_dht(f, body, len);
        } else if (marker == 0xDB) {
            err = parse_dqt(f, body, len);
        } else if (marker == 0xDD) {
            if (len < 2) return JDCT_CORRUPT;
            f->restart = u16(body);
        } else if (marker == 0xEE && len >= 12 && memcmp(body, "Adobe", 5) == 0) {
            f->adobe = 1;
            f->adobe_transform = body[11];
        } else if (marker == 0xDA) {
            scan_t s;
            err = parse_sos(f, body, len, &s);
            if (err) return err;
            if (!planes) return JDCT_OK;
            for (int c = 0; c < f->ncomp; c++)
                if (!f->qt_defined[f->comp[c].tq]) return JDCT_CORRUPT;
            bits_t b = {p, end, 0, 0, 0, 0};
            err = decode_scan(&b, f, &s, planes);
            if (err) return err;
            p = b.p;   /* on the marker that ended the scan (or past the data) */
            scans++;
        }
        if (err) return err;
    }
}

/* Headers. info: width, height, ncomp, progressive, adobe, adobe_transform, restart, then per
   component id, h, v, tq, rows, cols, brows, bcols; qt: 4 x 64 tables in zig-zag order. */
int jdct_info(const uint8_t *data, int64_t n, int32_t *info, uint16_t *qt) {
    frame_t f;
    int err = walk(data, n, &f, NULL);
    if (err) return err;
    if (!f.have_frame) return JDCT_NO_FRAME;
    if (f.ncomp == 3 && ((f.adobe && f.adobe_transform == 0) ||
                         (f.comp[0].id == 'R' && f.comp[1].id == 'G' && f.comp[2].id == 'B')))
        return JDCT_RGB_CODED;   /* components are R, G, B rather than Y, Cb, Cr (libjpeg's test) */
    int32_t head[7] = {f.width, f.height, f.ncomp, f.progressive, f.adobe, f.adobe_transform, f.restart};
    memcpy(info, head, sizeof head);
    for (int c = 0; c < f.ncomp; c++) {
        const comp_t *k = &f.comp[c];
        int32_t row[8] = {k->id, k->h, k->v, k->tq, k->rows, k->cols, k->brows, k->bcols};
        memcpy(info + 7 + 8 * c, row, sizeof row);
    }
    memcpy(qt, f.qt, sizeof f.qt);   /* the tables defined before the first scan */
    return JDCT_OK;
}

/* Coefficients into zero-filled planes (shapes from jdct_info); qt gets the tables as they stand
   after the last scan (a file may redefine them between scans). */
int jdct_decode(const uint8_t *data, int64_t n, int16_t **planes, uint16_t *qt) {
    frame_t f;
    int err = walk(data, n, &f, planes);
    if (!err && qt) memcpy(qt, f.qt, sizeof f.qt);
    return err;
}
