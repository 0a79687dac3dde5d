/*
 * _fixedpoint.c -- the runtime's CPU-independent kernels: the integer steps of the hyper-synthesis and the
 * checkerboard context (requantization here and, further down, exact int8 products on AVX2), the int8
 * analysis (conv_q8) and the fixed-order float synthesis (conv_f32). Each computes one defined result
 * that every CPU and build reproduces bit for bit.
 *
 * Why C: these steps are a handful of elementwise int64 operations over every latent. Written as
 * numpy expressions each one is a pass over memory with a temporary array, and together they cost
 * more than the convolutions they follow (measured at 640x480: about 5 ms of a 36 ms encode). Here
 * each element is read once and written once.
 *
 * The arithmetic is exactly that of the numpy reference in edgecodec/models/hyper.py, which the
 * tests hold this file to bit for bit. All products and sums are done modulo 2^64 on uint64_t, as
 * numpy's int64 does (so no signed overflow, whatever the model's constants), then read back as
 * two's complement. Right shifts are floor shifts, spelled so that they do not depend on the
 * compiler's choice for negative operands.
 *
 *   sums:  float32 convolution sums, exact integers (see hyper.py for why), converted to int64.
 *          A sum that is not finite or beyond +-2^40 cannot come from a valid model; it is
 *          clamped to +-2^40 (NaN to 0) so that the conversion is always defined.
 *   requant:  out = clip((s * mult + constant) >> shift, lo, hi)               (hidden layers)
 *   finish:   fx = s * mult + constant [+ c * ctx_mult]  per channel k < K, K = M or 2M
 *             index = clip(fx_k >> shift, 0, levels - 1)                       k < M
 *             mean  = clip(fx_{M+k} >> shift, -mean_max, mean_max)             (K = 2M, else 0)
 *             with mean_steps > 0: frac = (fx_{M+k} mod 2^shift) - 2^(shift-1),
 *             index = index * (mean_steps + 1) + ((frac * mean_steps + 2^(shift-1)) >> shift)
 *                     + mean_steps / 2
 *
 * On AVX2, finish does four latents at a time where the model's multipliers fit in 32 bits (this
 * repository's model's are below 2^18) and the sums are finite and below 2^31: then vpmuldq's products are
 * the exact ones and every step is the scalar one's. Any other group of four takes the scalar path.
 *
 * Safety: every buffer's type, shape and length is checked before the loops run, and every row
 * number is range-checked, so no input can make this code read or write out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* AVX2 code is compiled for x86-64 with GCC or Clang and chosen at run time; elsewhere, or built with
 * -DEDGECODEC_NO_AVX2, the portable loops (finish) or the callers' float32 path (int8 products) run. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(EDGECODEC_NO_AVX2)
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>
#endif

/* aarch64 has NEON on every core: the int8 analysis and the float synthesis have a NEON loop there
 * (-DEDGECODEC_NO_NEON leaves the portable one, to compare). */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(EDGECODEC_NO_NEON)
#define HAVE_NEON_KERNEL 1
#include <arm_neon.h>
#endif

static int avx2_available(void)
{
#ifdef HAVE_AVX2_KERNEL
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

#define SUM_LIMIT 1099511627776.0 /* 2^40 */
#define MAX_SHIFT 48                /* so that frac * mean_steps (< 2^47 * 64) stays below 2^63 */
#define MAX_LEVELS (1 << 20)        /* so that index * (mean_steps + 1) fits in int32 */

/* Accept only native, C-contiguous buffers of `ndim` dimensions whose struct-module format is one
 * of `codes` with the given item size. */
static int get_typed(PyObject *obj, Py_buffer *view, const char *name, const char *type_name,
                     const char *codes, Py_ssize_t itemsize, int ndim, int writable)
{
    const char *f;
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    f = view->format;
    if (f != NULL && (*f == '@' || *f == '='))
        f++;
    if (f == NULL || f[0] == '\0' || f[1] != '\0' || strchr(codes, f[0]) == NULL ||
        view->itemsize != itemsize || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %d-D %s buffer", name, ndim, type_name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define GET_F32(o, v, n, d, w) get_typed(o, v, n, "float32", "f", 4, d, w)
#define GET_I32(o, v, n, d, w) get_typed(o, v, n, "int32", (sizeof(long) == 4 ? "il" : "i"), 4, d, w)
#define GET_I64(o, v, n, d) get_typed(o, v, n, "int64", (sizeof(long) == 8 ? "lq" : "q"), 8, d, 0)

static uint64_t sum_to_u64(float v)
{
    double d = (double)v;
    if (!(d == d))
        return 0;
    if (d > SUM_LIMIT)
        d = SUM_LIMIT;
    else if (d < -SUM_LIMIT)
        d = -SUM_LIMIT;
    return (uint64_t)(int64_t)d;
}

/* floor(x / 2^shift) of the two's complement value of u, without branches (the signs of these sums
 * are unpredictable) and without relying on how the compiler shifts negative numbers: adding 2^63
 * (flipping the top bit) makes the value non-negative, and 2^63 / 2^shift is exact. */
static int64_t floor_shift(uint64_t u, int shift)
{
    return (int64_t)((u ^ ((uint64_t)1 << 63)) >> shift) - ((int64_t)1 << (63 - shift));
}

static int64_t clip64(int64_t x, int64_t lo, int64_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

static void release(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
}

PyDoc_STRVAR(requant_doc,
"requant(sums, params, shift, lo, hi, out) -> None\n\n"
"`sums` float32 (N, C); `params` int64 (2, C): multiplier and constant per channel; `out` float32\n"
"(N, C) receives clip((s * mult + constant) >> shift, lo, hi).");

static PyObject *py_requant(PyObject *self, PyObject *args)
{
    PyObject *o_sums, *o_params, *o_out;
    Py_buffer v[3] = {{0}};
    int shift;
    long long lo, hi;
    Py_ssize_t n, c;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOiLLO:requant", &o_sums, &o_params, &shift, &lo, &hi, &o_out))
        return NULL;
    if (GET_F32(o_sums, &v[0], "sums", 2, 0) < 0 || GET_I64(o_params, &v[1], "params", 2) < 0 ||
        GET_F32(o_out, &v[2], "out", 2, 1) < 0)
        goto fail;
    n = v[0].shape[0];
    c = v[0].shape[1];
    if (v[1].shape[0] != 2 || v[1].shape[1] != c || v[2].shape[0] != n || v[2].shape[1] != c) {
        PyErr_SetString(PyExc_ValueError, "requant: params must be (2, C) and out (N, C) for sums (N, C)");
        goto fail;
    }
    if (shift < 1 || shift > MAX_SHIFT || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "requant: shift must be in 1..48 and lo <= hi");
        goto fail;
    }
    {
        const float *s = (const float *)v[0].buf;
        const int64_t *mult = (const int64_t *)v[1].buf, *cons = mult + c;
        float *out = (float *)v[2].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t k = 0; k < c; k++) {
                uint64_t fx = sum_to_u64(s[i * c + k]) * (uint64_t)mult[k] + (uint64_t)cons[k];
                out[i * c + k] = (float)clip64(floor_shift(fx, shift), lo, hi);
            }
        Py_END_ALLOW_THREADS
    }
    release(v, 3);
    Py_RETURN_NONE;
fail:
    release(v, 3);
    return NULL;
}

/* The constants of one finish call. */
typedef struct {
    const int64_t *mult, *cons, *cmult;
    Py_ssize_t m;
    int has_mean, shift, levels, steps, mean_max;
} finish_t;

/* Latent k of one row: the arithmetic in the file's comment, modulo 2^64. */
static void finish_one(const finish_t *f, const float *s, const float *c, Py_ssize_t k, int32_t *idx_out,
                       int32_t *mean_out)
{
    const int64_t half = (int64_t)1 << (f->shift - 1);
    const uint64_t mask = ((uint64_t)1 << f->shift) - 1;
    uint64_t fx = sum_to_u64(s[k]) * (uint64_t)f->mult[k] + (uint64_t)f->cons[k];
    int64_t index, mean = 0;
    if (c)
        fx += sum_to_u64(c[k]) * (uint64_t)f->cmult[k];
    index = clip64(floor_shift(fx, f->shift), 0, f->levels - 1);
    if (f->has_mean) {
        Py_ssize_t j = f->m + k;
        uint64_t mx = sum_to_u64(s[j]) * (uint64_t)f->mult[j] + (uint64_t)f->cons[j];
        if (c)
            mx += sum_to_u64(c[j]) * (uint64_t)f->cmult[j];
        mean = clip64(floor_shift(mx, f->shift), -f->mean_max, f->mean_max);
        if (f->steps) {
            int64_t frac = (int64_t)(mx & mask) - half;
            index = index * (f->steps + 1) + floor_shift((uint64_t)(frac * f->steps + half), f->shift) + f->steps / 2;
        }
    }
    idx_out[k] = (int32_t)index;
    mean_out[k] = (int32_t)mean;
}

#ifdef HAVE_AVX2_KERNEL
/* Whether finish4 may run: AVX2, and every multiplier within int32 so that vpmuldq's 32 x 32 -> 64-bit
 * products are the exact ones (they are then below 2^62, so modulo 2^64 changes nothing), and a
 * shift of at most 31 so that a mean's fractional part fits in 32 bits as well. */
static int fits_vector(const finish_t *f, Py_ssize_t k_all, int has_ctx)
{
    if (!avx2_available() || f->shift > 31)
        return 0;
    for (Py_ssize_t k = 0; k < k_all; k++)
        if (f->mult[k] != (int32_t)f->mult[k] || (has_ctx && f->cmult[k] != (int32_t)f->cmult[k]))
            return 0;
    return 1;
}

/* Four sums as int64 lanes if each is finite and below 2^31 in magnitude (then truncation, as in
 * sum_to_u64, is all the conversion does); else 0 and the caller takes the scalar path. */
__attribute__((target("avx2"))) static inline int load4(const float *p, __m256i *out)
{
    __m128 v = _mm_loadu_ps(p);
    __m128 magnitude = _mm_andnot_ps(_mm_set1_ps(-0.0f), v);
    if (_mm_movemask_ps(_mm_cmplt_ps(magnitude, _mm_set1_ps(2147483648.0f))) != 0xF)
        return 0;  /* NaN compares false too */
    *out = _mm256_cvtepi32_epi64(_mm_cvttps_epi32(v));
    return 1;
}

__attribute__((target("avx2"))) static inline __m256i vfloor_shift(__m256i u, int shift)
{
    __m256i flipped = _mm256_xor_si256(u, _mm256_set1_epi64x(INT64_MIN));
    return _mm256_sub_epi64(_mm256_srl_epi64(flipped, _mm_cvtsi32_si128(shift)),
                            _mm256_set1_epi64x((int64_t)1 << (63 - shift)));
}

__attribute__((target("avx2"))) static inline __m256i vclip(__m256i x, int64_t lo, int64_t hi)
{
    __m256i vlo = _mm256_set1_epi64x(lo), vhi = _mm256_set1_epi64x(hi);
    x = _mm256_blendv_epi8(x, vlo, _mm256_cmpgt_epi64(vlo, x));
    return _mm256_blendv_epi8(x, vhi, _mm256_cmpgt_epi64(x, vhi));
}

/* s * mult + constant (+ c * cmult) for channels j..j+3, or 0 if a sum is out of the vector range. */
__attribute__((target("avx2"))) static inline int fixed4(const finish_t *f, const float *s, const float *c,
                                                        Py_ssize_t j, __m256i *fx)
{
    __m256i sv, cv;
    if (!load4(s + j, &sv) || (c && !load4(c + j, &cv)))
        return 0;
    *fx = _mm256_add_epi64(_mm256_mul_epi32(sv, _mm256_loadu_si256((const __m256i *)(f->mult + j))),
                           _mm256_loadu_si256((const __m256i *)(f->cons + j)));
    if (c)
        *fx = _mm256_add_epi64(*fx, _mm256_mul_epi32(cv, _mm256_loadu_si256((const __m256i *)(f->cmult + j))));
    return 1;
}

__attribute__((target("avx2"))) static inline void store4(int32_t *p, __m256i v)
{
    __m256i low = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(low));
}

/* finish_one for latents k..k+3 at once (fits_vector said yes); 0 if a sum is outside the vector range,
 * before anything is written. */
__attribute__((target("avx2"))) static int finish4(const finish_t *f, const float *s, const float *c,
                                                  Py_ssize_t k, int32_t *idx_out, int32_t *mean_out)
{
    __m256i fx, mx, index, mean = _mm256_setzero_si256();
    if (!fixed4(f, s, c, k, &fx) || (f->has_mean && !fixed4(f, s, c, f->m + k, &mx)))
        return 0;
    index = vclip(vfloor_shift(fx, f->shift), 0, f->levels - 1);
    if (f->has_mean) {
        mean = vclip(vfloor_shift(mx, f->shift), -f->mean_max, f->mean_max);
        if (f->steps) {
            const int64_t half = (int64_t)1 << (f->shift - 1);
            __m256i frac = _mm256_sub_epi64(_mm256_and_si256(mx, _mm256_set1_epi64x(((int64_t)1 << f->shift) - 1)),
                                            _mm256_set1_epi64x(half));
            __m256i offset = vfloor_shift(_mm256_add_epi64(_mm256_mul_epi32(frac, _mm256_set1_epi64x(f->steps)),
                                                           _mm256_set1_epi64x(half)), f->shift);
            index = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epi32(index, _mm256_set1_epi64x(f->steps + 1)),
                                                      offset), _mm256_set1_epi64x(f->steps / 2));
        }
    }
    store4(idx_out + k, index);
    store4(mean_out + k, mean);
    return 1;
}
#endif

PyDoc_STRVAR(finish_doc,
"finish(sums, rows, params, context, shift, levels, mean_steps, mean_max, index, mean) -> None\n\n"
"`sums` float32 (P, K), K = M or 2M; `rows` int32 (N,) rows of `sums` to finish, each in 0..P-1;\n"
"`params` int64 (3, K): multiplier, constant and context multiplier per channel; `context` None or\n"
"float32 (N, K) context sums; `index` and `mean` writable int32 (N, M) receive the table index and\n"
"the integer mean of each latent (see the file's comment for the arithmetic).");

static PyObject *py_finish(PyObject *self, PyObject *args)
{
    PyObject *o_sums, *o_rows, *o_params, *o_ctx, *o_idx, *o_mean;
    Py_buffer v[6] = {{0}};
    int shift, levels, steps, mean_max;
    Py_ssize_t p, k_all, m, n;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOOiiiiOO:finish", &o_sums, &o_rows, &o_params, &o_ctx, &shift,
                          &levels, &steps, &mean_max, &o_idx, &o_mean))
        return NULL;
    if (GET_F32(o_sums, &v[0], "sums", 2, 0) < 0 || GET_I32(o_rows, &v[1], "rows", 1, 0) < 0 ||
        GET_I64(o_params, &v[2], "params", 2) < 0 ||
        (o_ctx != Py_None && GET_F32(o_ctx, &v[3], "context", 2, 0) < 0) ||
        GET_I32(o_idx, &v[4], "index", 2, 1) < 0 || GET_I32(o_mean, &v[5], "mean", 2, 1) < 0)
        goto fail;
    p = v[0].shape[0];
    k_all = v[0].shape[1];
    n = v[1].shape[0];
    m = v[4].shape[1];
    if (!(k_all == m || k_all == 2 * m) || m < 1 || v[2].shape[0] != 3 || v[2].shape[1] != k_all ||
        v[4].shape[0] != n || v[5].shape[0] != n || v[5].shape[1] != m ||
        (o_ctx != Py_None && (v[3].shape[0] != n || v[3].shape[1] != k_all))) {
        PyErr_SetString(PyExc_ValueError, "finish: shapes do not agree (sums (P, K), rows (N,), "
                        "params (3, K), context (N, K), index and mean (N, M), K = M or 2M)");
        goto fail;
    }
    if (shift < 1 || shift > MAX_SHIFT || levels < 1 || levels > MAX_LEVELS || steps < 0 || steps > 64 || steps % 2 ||
        mean_max < 0 || (steps && k_all != 2 * m)) {
        PyErr_SetString(PyExc_ValueError, "finish: bad shift, levels, mean_steps or mean_max");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t r = ((const int32_t *)v[1].buf)[i];
        if (r < 0 || r >= p) {
            PyErr_Format(PyExc_IndexError, "finish: row %d outside 0..%zd", (int)r, p - 1);
            goto fail;
        }
    }
    {
        const float *sums = (const float *)v[0].buf, *ctx = (const float *)v[3].buf;
        const int32_t *rows = (const int32_t *)v[1].buf;
        const int64_t *mult = (const int64_t *)v[2].buf, *cons = mult + k_all, *cmult = cons + k_all;
        int32_t *idx_out = (int32_t *)v[4].buf, *mean_out = (int32_t *)v[5].buf;
        const int has_mean = k_all == 2 * m;
        const finish_t f = {mult, cons, cmult, m, has_mean, shift, levels, steps, mean_max};
#ifdef HAVE_AVX2_KERNEL
        const int vector = fits_vector(&f, k_all, ctx != NULL);
#endif
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            const float *s = sums + (Py_ssize_t)rows[i] * k_all;
            const float *c = ctx ? ctx + i * k_all : NULL;
            Py_ssize_t k = 0;
#ifdef HAVE_AVX2_KERNEL
            if (vector)
                for (; k + 4 <= m; k += 4)
                    if (!finish4(&f, s, c, k, idx_out + i * m, mean_out + i * m))
                        for (Py_ssize_t kk = k; kk < k + 4; kk++)
                            finish_one(&f, s, c, kk, idx_out + i * m, mean_out + i * m);
#endif
            for (; k < m; k++)
                finish_one(&f, s, c, k, idx_out + i * m, mean_out + i * m);
        }
        Py_END_ALLOW_THREADS
    }
    release(v, 6);
    Py_RETURN_NONE;
fail:
    release(v, 6);
    return NULL;
}

/* ---- Exact int8 products: the hyper-synthesis' 3x3 convolutions and the context's taps ------------
 *
 * Why: these products are over a quarter of an encode and of a decode (at 640x480, about 9 of 30 ms
 * each side on one thread, 2026-11-25), and they are integer products that ran as float32 only
 * because float32 is exact for them. AVX2's vpmaddubsw multiplies 32 unsigned by signed bytes per
 * instruction and adds pairs into 16-bit lanes; vpmaddwd then adds those pairs into 32-bit lanes.
 * That is twice the multiplies of a float32 FMA per instruction, and int32 accumulators are exact.
 *
 * Exactness: |a| <= 127 (unsigned activations) or <= 128 (signed ones, as |a| with the sign moved to
 * the weight by vpsignb) and |w| <= 127, so a pair of products is at most 2 * 128 * 127 = 32512 and
 * never saturates the 16-bit lane. Activations arrive as float32 holding integers; they are clamped
 * to [0, 127] or [-128, 127] (NaN to the lower bound) while they are converted, so any input is
 * defined. Weights outside [-127, 127] (a -128) may saturate: the callers' loaders refuse such
 * models. The sums leave as float32, exact below 2^24, which the callers' width checks guarantee.
 *
 * Weights are packed by `edgecodec.models.int8.pack`, (Kb, Mb, 8, 4) int8: for each group of four
 * taps and eight output channels, channel j's four weights at bytes 4j..4j+3, so one 32-byte load
 * feeds eight channels. K taps are padded to 4 * Kb with zero weights; M must be a multiple of 16.
 * Without AVX2 (other CPUs, other compilers) Python's ``int8_available()`` is False and the callers keep
 * their float32 path.
 */

#define TILE_ROWS 4  /* output rows (pixels) per micro-tile */
#define BLOCK_ROWS 32 /* rows gathered per pass: 32 x 576 taps is 18 KiB, in L1 with one column pair */
/* A tile reads TILE_ROWS rows of the block, the last ones zero padding: the block must hold whole tiles. */
typedef char block_holds_whole_tiles[BLOCK_ROWS % TILE_ROWS == 0 ? 1 : -1];

static int8_t to_int8(float v, int is_signed)
{
    float lo = is_signed ? -128.0f : 0.0f, hi = 127.0f;
    if (!(v >= lo))
        return (int8_t)lo;
    if (v > hi)
        return (int8_t)hi;
    return (int8_t)(int)v;
}

#ifdef HAVE_AVX2_KERNEL
/* to_int8 over n values, 32 at a time: max/min clamp (NaN becomes lo: vmaxps returns its second
 * operand when either is NaN), truncating conversion, then two saturating packs whose lane order
 * the final permute undoes. */
__attribute__((target("avx2"))) static void
convert_int8(const float *a, Py_ssize_t n, int is_signed, int8_t *dst)
{
    const __m256 lo = _mm256_set1_ps(is_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i q[4];
        for (int j = 0; j < 4; j++)
            q[j] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(a + i + 8 * j), lo), hi));
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
        _mm256_storeu_si256((__m256i *)(dst + i), p8);
    }
    for (; i < n; i++)
        dst[i] = to_int8(a[i], is_signed);
}

__attribute__((target("avx2"), always_inline)) static inline void
tile(const int8_t *a, Py_ssize_t kb_n, const int8_t *w, Py_ssize_t mb_n, Py_ssize_t p, int is_signed,
     float *out, Py_ssize_t out_stride, int rows)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const Py_ssize_t k_all = 4 * kb_n;
    __m256i c[TILE_ROWS][2];
    for (int i = 0; i < TILE_ROWS; i++)
        c[i][0] = c[i][1] = _mm256_setzero_si256();
    for (Py_ssize_t kb = 0; kb < kb_n; kb++) {
        const int8_t *wp = w + (kb * mb_n + p) * 32;
        __m256i b0 = _mm256_loadu_si256((const __m256i *)wp);
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
        for (int i = 0; i < TILE_ROWS; i++) {
            int32_t quad;
            memcpy(&quad, a + i * k_all + 4 * kb, 4);
            __m256i x = _mm256_set1_epi32(quad), t0, t1;
            if (is_signed) {
                __m256i ax = _mm256_abs_epi8(x);
                t0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(b0, x));
                t1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(b1, x));
            } else {
                t0 = _mm256_maddubs_epi16(x, b0);
                t1 = _mm256_maddubs_epi16(x, b1);
            }
            c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(t0, ones));
            c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(t1, ones));
        }
    }
    for (int i = 0; i < rows; i++) {
        _mm256_storeu_ps(out + i * out_stride + 16 * (p / 2), _mm256_cvtepi32_ps(c[i][0]));
        _mm256_storeu_ps(out + i * out_stride + 16 * (p / 2) + 8, _mm256_cvtepi32_ps(c[i][1]));
    }
}

/* rows x (4 kb_n) int8 taps in `a` (rows padded with zeros to a multiple of TILE_ROWS) times the packed
 * weights, into `out` (valid rows only). */
__attribute__((target("avx2"))) static void
block_product(const int8_t *a, Py_ssize_t rows, Py_ssize_t kb_n, const int8_t *w, Py_ssize_t mb_n,
              int is_signed, float *out, Py_ssize_t out_stride)
{
    for (Py_ssize_t p = 0; p < mb_n; p += 2)
        for (Py_ssize_t r = 0; r < rows; r += TILE_ROWS) {
            int valid = (int)(rows - r < TILE_ROWS ? rows - r : TILE_ROWS);
            if (is_signed)
                tile(a + r * 4 * kb_n, kb_n, w, mb_n, p, 1, out + r * out_stride, out_stride, valid);
            else
                tile(a + r * 4 * kb_n, kb_n, w, mb_n, p, 0, out + r * out_stride, out_stride, valid);
        }
}
#endif

PyDoc_STRVAR(int8_available_doc,
"int8_available() -> bool\n\nWhether this CPU runs the exact int8 products (AVX2).");

static PyObject *py_int8_available(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(avx2_available());
}

/* The checks both products share: packed weights (Kb, Mb, 8, 4) for `taps` taps into out (N, M). */
static int check_product(Py_buffer *w, Py_buffer *out, Py_ssize_t taps, Py_ssize_t n, Py_ssize_t first,
                         Py_ssize_t last, const char *name)
{
    Py_ssize_t kb_n = w->shape[0], m = w->shape[1] * 8;
    if (w->shape[2] != 8 || w->shape[3] != 4 || kb_n * 4 < taps || kb_n * 4 - taps >= 4 || m % 16 != 0 ||
        out->shape[0] != n || out->shape[1] != m) {
        PyErr_Format(PyExc_ValueError, "%s: weights must be packed (ceil(K/4), M/8, 8, 4) with M a multiple "
                     "of 16 and out (N, M)", name);
        return -1;
    }
    if (first < 0 || first > last || last > n) {
        PyErr_Format(PyExc_ValueError, "%s: rows %zd..%zd outside 0..%zd", name, first, last, n);
        return -1;
    }
    if (!avx2_available()) {
        PyErr_Format(PyExc_RuntimeError, "%s: this CPU has no AVX2 (see int8_available)", name);
        return -1;
    }
    return 0;
}

#define GET_I8(o, v, n, d) get_typed(o, v, n, "int8", "b", 1, d, 0)

PyDoc_STRVAR(conv3x3_int8_doc,
"conv3x3_int8(a, weights, signed, first, last, out) -> None\n\n"
"Exact 'same' 3x3 convolution of the integer activations `a` (float32 (H, W, C), clamped to [0, 127],\n"
"or [-128, 127] when `signed`) with packed int8 weights for K = 9C taps (tap order dy, dx, c).\n"
"Writes output pixels first..last-1 (flat, raster order) of `out` float32 (H * W, M).");

PyDoc_STRVAR(matmul_int8_doc,
"matmul_int8(a, weights, signed, first, last, out) -> None\n\n"
"Exact product of the integer rows of `a` (float32 (N, K), clamped as in conv3x3_int8) with packed\n"
"int8 weights for K taps. Writes rows first..last-1 of `out` float32 (N, M).");

/* Both products: rows first..last-1 gathered BLOCK_ROWS at a time as int8 taps (a 3x3 neighbourhood
 * of an image converted once, or a row of `a`), then multiplied by the packed weights. */
static PyObject *product(PyObject *args, int conv, const char *format)
{
    PyObject *o_a, *o_w, *o_out;
    Py_buffer v[3] = {{0}};
    int is_signed;
    Py_ssize_t first, last, h = 1, wd = 1, c, n, taps, kb_n; /* h, wd: the image of a convolution */
    int8_t *image = NULL, *block = NULL;
    const char *name = format + 7; /* "OOpnnO:" */

    if (!PyArg_ParseTuple(args, format, &o_a, &o_w, &is_signed, &first, &last, &o_out))
        return NULL;
    if (GET_F32(o_a, &v[0], "a", conv ? 3 : 2, 0) < 0 || GET_I8(o_w, &v[1], "weights", 4) < 0 ||
        GET_F32(o_out, &v[2], "out", 2, 1) < 0)
        goto fail;
    if (conv) {
        h = v[0].shape[0];
        wd = v[0].shape[1];
        c = v[0].shape[2];
        n = h * wd;
        taps = 9 * c;
    } else {
        n = v[0].shape[0];
        c = taps = v[0].shape[1];
    }
    if (check_product(&v[1], &v[2], taps, n, first, last, name) < 0)
        goto fail;
    kb_n = v[1].shape[0];
    image = conv ? PyMem_RawMalloc((size_t)(n * c) + 1) : NULL;
    block = PyMem_RawMalloc((size_t)(BLOCK_ROWS * 4 * kb_n) + 1);
    if ((conv && image == NULL) || block == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
#ifdef HAVE_AVX2_KERNEL
    {
        const float *a = (const float *)v[0].buf;
        const int8_t *w = (const int8_t *)v[1].buf;
        float *out = (float *)v[2].buf;
        const Py_ssize_t mb_n = v[1].shape[1], m = mb_n * 8, k_all = 4 * kb_n;
        Py_BEGIN_ALLOW_THREADS
        if (conv)
            convert_int8(a, n * c, is_signed, image);
        for (Py_ssize_t r0 = first; r0 < last; r0 += BLOCK_ROWS) {
            Py_ssize_t rows = last - r0 < BLOCK_ROWS ? last - r0 : BLOCK_ROWS;
            memset(block, 0, (size_t)(BLOCK_ROWS * k_all));
            for (Py_ssize_t r = 0; r < rows; r++) {
                int8_t *dst = block + r * k_all;
                if (!conv) {
                    convert_int8(a + (r0 + r) * taps, taps, is_signed, dst);
                    continue;
                }
                for (int t = 0; t < 9; t++) {
                    Py_ssize_t yy = (r0 + r) / wd + t / 3 - 1, xx = (r0 + r) % wd + t % 3 - 1;
                    if (yy >= 0 && yy < h && xx >= 0 && xx < wd)
                        memcpy(dst + t * c, image + (yy * wd + xx) * c, (size_t)c);
                }
            }
            block_product(block, rows, kb_n, w, mb_n, is_signed, out + r0 * m, m);
        }
        Py_END_ALLOW_THREADS
    }
#endif
    PyMem_RawFree(image);
    PyMem_RawFree(block);
    release(v, 3);
    Py_RETURN_NONE;
fail:
    PyMem_RawFree(image);
    PyMem_RawFree(block);
    release(v, 3);
    return NULL;
}

static PyObject *py_conv3x3_int8(PyObject *self, PyObject *args)
{
    (void)self;
    return product(args, 1, "OOpnnO:conv3x3_int8");
}

static PyObject *py_matmul_int8(PyObject *self, PyObject *args)
{
    (void)self;
    return product(args, 0, "OOpnnO:matmul_int8");
}


/* ---- The int8 analysis: exact convolutions with TFLite's reference requantization --------------------
 *
 * conv_q8 is one 3x3 convolution of edgecodec.models.analysis (read its docstring for why): activations
 * are int16 offset values (the int8 value minus its zero point, within +-255), already padded 'same' by
 * the caller with zeros (the zero point's offset value), so every tap is inside `a`. Sums are exact in
 * int32 (9 x C x 255 x 127 < 2^31 for C up to 7000; checked), the requantization is gemmlowp's
 * MultiplyByQuantizedMultiplier in integers, and the result is clamped to [act_min, act_max] and stored
 * minus the output zero point. The AVX2 loop and the portable one compute the same integer sums (a sum
 * of products is the same in any order), so every CPU writes the same bytes.
 *
 * Weights are packed by analysis.pack, int16 (9C/2, M, 2): taps in (dy, dx, c) order, two at a time, so
 * that with NHWC activations the taps of one kernel row (3 pixels x C channels) are contiguous.
 */

#define GET_I16(o, v, n, d, w) get_typed(o, v, n, "int16", "h", 2, d, w)
#define Q8_TILE 4    /* output pixels per AVX2 micro-tile */
#define Q8_TILE512 6 /* output pixels per AVX-512 micro-tile: 12 accumulators */

/* floor(x / 2^r) for r in 0..31, without relying on how the compiler shifts negative numbers. */
static int32_t floor_shift32(int32_t x, int r)
{
    return x >= 0 ? (int32_t)((uint32_t)x >> r) : (int32_t)~(~(uint32_t)x >> r);
}

/* gemmlowp's SaturatingRoundingDoublingHighMul then RoundingDivideByPOT (TFLite's double rounding). A
 * left shift (shift > 0) saturates at int32 where TFLite's would wrap; no model's multipliers reach it. */
static int32_t requantize(int64_t acc, int32_t mult, int shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int64_t a = acc * ((int64_t)1 << left), ab, high;
    uint32_t mask, rem, threshold;
    int32_t h;
    a = a > INT32_MAX ? INT32_MAX : (a < INT32_MIN ? INT32_MIN : a);
    ab = a * (int64_t)mult;
    ab += ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    high = ab / ((int64_t)1 << 31); /* C division truncates toward zero, as gemmlowp's */
    h = (int32_t)(high > INT32_MAX ? INT32_MAX : high);
    mask = (uint32_t)(((uint64_t)1 << right) - 1);
    rem = (uint32_t)h & mask;
    threshold = (mask >> 1) + (h < 0 ? 1u : 0u);
    return floor_shift32(h, right) + (rem > threshold ? 1 : 0);
}

typedef struct {
    const int16_t *a, *w;
    const int32_t *bias, *mult, *shift;
    Py_ssize_t wp, c, m, stride; /* padded width, channels in, channels out */
    int zero_out, act_min, act_max;
    int16_t *out;
    Py_ssize_t wo;
} q8_t;

static inline int16_t q8_finish(const q8_t *q, int64_t sum, Py_ssize_t k)
{
    int64_t v = (int64_t)requantize(sum + q->bias[k], q->mult[k], q->shift[k]) + q->zero_out;
    v = v < q->act_min ? q->act_min : (v > q->act_max ? q->act_max : v);
    return (int16_t)(v - q->zero_out);
}

/* One output row, portable: for each pixel, M int32 sums over the 9C taps (the loop over M vectorizes). */
static void q8_row_portable(const q8_t *q, Py_ssize_t oy, int32_t *acc)
{
    const Py_ssize_t c3 = 3 * q->c, m = q->m;
    for (Py_ssize_t ox = 0; ox < q->wo; ox++) {
        for (Py_ssize_t k = 0; k < m; k++)
            acc[k] = 0;
        for (int dy = 0; dy < 3; dy++) {
            const int16_t *a = q->a + ((oy * q->stride + dy) * q->wp + ox * q->stride) * q->c;
            const int16_t *w = q->w + (Py_ssize_t)dy * c3 * m;
            for (Py_ssize_t t = 0; t < c3; t += 2, w += 2 * m) {
                const int32_t a0 = a[t], a1 = a[t + 1];
                for (Py_ssize_t k = 0; k < m; k++)
                    acc[k] += a0 * w[2 * k] + a1 * w[2 * k + 1];
            }
        }
        int16_t *dst = q->out + (oy * q->wo + ox) * m;
        for (Py_ssize_t k = 0; k < m; k++)
            dst[k] = q8_finish(q, acc[k], k);
    }
}

#ifdef HAVE_AVX2_KERNEL
/* q8_finish on eight channels k0..k0+7 at once, for blocks whose shifts are all <= 0 and multipliers all
 * >= 0 (q8_vector_ok). SaturatingRoundingDoublingHighMul's rounding, trunc((ab + nudge) / 2^31) with the
 * nudge 1 - 2^30 for ab < 0, equals floor((ab + 2^30) / 2^31) for every ab, and its low 32 bits are
 * those of a logical 64-bit shift; the rounding right shift is gemmlowp's, lane by lane. */
__attribute__((target("avx2"))) static inline __m128i q8_finish8(const q8_t *q, __m256i sum, Py_ssize_t k0)
{
    const __m256i bias = _mm256_loadu_si256((const __m256i *)(q->bias + k0));
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(q->mult + k0));
    const __m256i right = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)(q->shift + k0)));
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << 30), one = _mm256_set1_epi32(1);
    __m256i a = _mm256_add_epi32(sum, bias);
    __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, mult), half), 31);
    __m256i odd = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32),
                                                                      _mm256_srli_epi64(mult, 32)), half), 31);
    __m256i h = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    __m256i rem = _mm256_and_si256(h, mask);
    __m256i threshold = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_srai_epi32(h, 31)); /* + (h < 0) */
    __m256i v = _mm256_sub_epi32(_mm256_srav_epi32(h, right), _mm256_cmpgt_epi32(rem, threshold));
    v = _mm256_add_epi32(v, _mm256_set1_epi32(q->zero_out));
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(q->act_min)), _mm256_set1_epi32(q->act_max));
    v = _mm256_sub_epi32(v, _mm256_set1_epi32(q->zero_out));
    return _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* Q8_TILE pixels x (8 * nb) output channels from channel k0: pairs of taps broadcast as one int32, times
 * eight channels' pairs of weights (vpmaddwd), summed in int32 lanes. `valid` pixels are stored; the
 * others repeat the last valid pixel's reads, so nothing outside `a` is touched. */
__attribute__((target("avx2"), always_inline)) static inline void
q8_tile(const q8_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0, int nb, int vector_ok)
{
    const Py_ssize_t c3 = 3 * q->c, m = q->m;
    __m256i acc[Q8_TILE][2];
    const int16_t *rows[Q8_TILE];
    for (int i = 0; i < Q8_TILE; i++) {
        acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        rows[i] = q->a + (oy * q->stride * q->wp + (ox + (i < valid ? i : valid - 1)) * q->stride) * q->c;
    }
    for (int dy = 0; dy < 3; dy++) {
        const int16_t *w = q->w + (Py_ssize_t)dy * c3 * m + 2 * k0;
        const Py_ssize_t row_off = (Py_ssize_t)dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < c3; t += 2, w += 2 * m) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)w);
            __m256i w1 = nb > 1 ? _mm256_loadu_si256((const __m256i *)(w + 16)) : w0;
            for (int i = 0; i < Q8_TILE; i++) {
                __m256i x = _mm256_broadcastd_epi32(_mm_loadu_si32(rows[i] + row_off + t));
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(x, w0));
                if (nb > 1)
                    acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(x, w1));
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        int16_t *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        if (vector_ok) {
            _mm_storeu_si128((__m128i *)dst, q8_finish8(q, acc[i][0], k0));
            if (nb > 1)
                _mm_storeu_si128((__m128i *)(dst + 8), q8_finish8(q, acc[i][1], k0 + 8));
            continue;
        }
        int32_t s[16];
        _mm256_storeu_si256((__m256i *)s, acc[i][0]);
        if (nb > 1)
            _mm256_storeu_si256((__m256i *)(s + 8), acc[i][1]);
        for (int j = 0; j < 8 * nb; j++)
            dst[j] = q8_finish(q, s[j], k0 + j);
    }
}

/* The same tile with AVX-512 VNNI: vpdpwssd multiplies sixteen channels' pairs and adds them into the
 * int32 lanes in one instruction. The same integer sums; finished eight lanes at a time as above. */
static int vnni_available(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
}

__attribute__((target("avx2,avx512f,avx512vnni"), always_inline)) static inline void
q8_tile512(const q8_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0, int nb, int vector_ok)
{
    const Py_ssize_t c3 = 3 * q->c, m = q->m;
    __m512i acc[Q8_TILE512][2];
    const int16_t *rows[Q8_TILE512];
    for (int i = 0; i < Q8_TILE512; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_si512();
        rows[i] = q->a + (oy * q->stride * q->wp + (ox + (i < valid ? i : valid - 1)) * q->stride) * q->c;
    }
    for (int dy = 0; dy < 3; dy++) {
        const int16_t *w = q->w + (Py_ssize_t)dy * c3 * m + 2 * k0;
        const Py_ssize_t row_off = (Py_ssize_t)dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < c3; t += 2, w += 2 * m) {
            __m512i w0 = _mm512_loadu_si512((const void *)w);
            __m512i w1 = nb > 1 ? _mm512_loadu_si512((const void *)(w + 32)) : w0;
            for (int i = 0; i < Q8_TILE512; i++) {
                int32_t pair;
                memcpy(&pair, rows[i] + row_off + t, 4);
                __m512i x = _mm512_set1_epi32(pair);
                acc[i][0] = _mm512_dpwssd_epi32(acc[i][0], x, w0);
                if (nb > 1)
                    acc[i][1] = _mm512_dpwssd_epi32(acc[i][1], x, w1);
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        int16_t *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        for (int j = 0; j < nb; j++) {
            __m256i lo = _mm512_castsi512_si256(acc[i][j]), hi = _mm512_extracti64x4_epi64(acc[i][j], 1);
            if (vector_ok) {
                _mm_storeu_si128((__m128i *)(dst + 16 * j), q8_finish8(q, lo, k0 + 16 * j));
                _mm_storeu_si128((__m128i *)(dst + 16 * j + 8), q8_finish8(q, hi, k0 + 16 * j + 8));
            } else {
                int32_t s[16];
                _mm256_storeu_si256((__m256i *)s, lo);
                _mm256_storeu_si256((__m256i *)(s + 8), hi);
                for (int l = 0; l < 16; l++)
                    dst[16 * j + l] = q8_finish(q, s[l], k0 + 16 * j + l);
            }
        }
    }
}

__attribute__((target("avx2,avx512f,avx512vnni"))) static void q8_row_vnni(const q8_t *q, Py_ssize_t oy,
                                                                          int vector_ok)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 32)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += Q8_TILE512) {
            int valid = (int)(q->wo - ox < Q8_TILE512 ? q->wo - ox : Q8_TILE512);
            int nb = q->m - k0 >= 32 ? 2 : 1;
            if (vector_ok) {
                if (nb == 2)
                    q8_tile512(q, oy, ox, valid, k0, 2, 1);
                else
                    q8_tile512(q, oy, ox, valid, k0, 1, 1);
            } else
                q8_tile512(q, oy, ox, valid, k0, nb, 0);
        }
}

__attribute__((target("avx2"))) static void q8_row_avx2(const q8_t *q, Py_ssize_t oy, int vector_ok)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 16)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += Q8_TILE) {
            int valid = (int)(q->wo - ox < Q8_TILE ? q->wo - ox : Q8_TILE);
            if (q->m - k0 >= 16) {
                if (vector_ok)
                    q8_tile(q, oy, ox, valid, k0, 2, 1);
                else
                    q8_tile(q, oy, ox, valid, k0, 2, 0);
            } else
                q8_tile(q, oy, ox, valid, k0, 1, vector_ok);
        }
}
#endif

#ifdef HAVE_NEON_KERNEL
/* aarch64 (every 64-bit ARM core has NEON): Q8_TILE pixels x 16 channels from k0. vld2q_s16 splits a
 * pair row of weights into the first and the second tap's eight channels; vmlal(_high)_n_s16 multiplies
 * them by a tap value and adds into int32 lanes. The requantization is q8_finish8's, on int64 lanes. */
static inline int16x4_t q8_finish4_neon(const q8_t *q, int32x4_t sum, Py_ssize_t k0)
{
    const int32x4_t right = vnegq_s32(vld1q_s32(q->shift + k0)), mult = vld1q_s32(q->mult + k0);
    const int32x4_t a = vaddq_s32(sum, vld1q_s32(q->bias + k0)), one = vdupq_n_s32(1);
    const int64x2_t half = vdupq_n_s64((int64_t)1 << 30);
    int64x2_t lo = vshrq_n_s64(vaddq_s64(vmull_s32(vget_low_s32(a), vget_low_s32(mult)), half), 31);
    int64x2_t hi = vshrq_n_s64(vaddq_s64(vmull_high_s32(a, mult), half), 31);
    int32x4_t h = vcombine_s32(vmovn_s64(lo), vmovn_s64(hi));
    int32x4_t mask = vsubq_s32(vshlq_s32(one, right), one);
    int32x4_t rem = vandq_s32(h, mask);
    int32x4_t threshold = vsubq_s32(vshrq_n_s32(mask, 1), vshrq_n_s32(h, 31)); /* + (h < 0) */
    int32x4_t v = vshlq_s32(h, vnegq_s32(right));                              /* floor shift */
    v = vsubq_s32(v, vreinterpretq_s32_u32(vcgtq_s32(rem, threshold)));
    v = vaddq_s32(v, vdupq_n_s32(q->zero_out));
    v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(q->act_min)), vdupq_n_s32(q->act_max));
    return vmovn_s32(vsubq_s32(v, vdupq_n_s32(q->zero_out)));
}

static void q8_tile_neon(const q8_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0, int vector_ok)
{
    const Py_ssize_t c3 = 3 * q->c, m = q->m;
    int32x4_t acc[Q8_TILE][4];
    const int16_t *rows[Q8_TILE];
    for (int i = 0; i < Q8_TILE; i++) {
        for (int j = 0; j < 4; j++)
            acc[i][j] = vdupq_n_s32(0);
        rows[i] = q->a + (oy * q->stride * q->wp + (ox + (i < valid ? i : valid - 1)) * q->stride) * q->c;
    }
    for (int dy = 0; dy < 3; dy++) {
        const int16_t *w = q->w + (Py_ssize_t)dy * c3 * m + 2 * k0;
        const Py_ssize_t row_off = (Py_ssize_t)dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < c3; t += 2, w += 2 * m) {
            int16x8x2_t w0 = vld2q_s16(w), w1 = vld2q_s16(w + 16); /* channels k0..k0+7, k0+8..k0+15 */
            for (int i = 0; i < Q8_TILE; i++) {
                const int16_t x0 = rows[i][row_off + t], x1 = rows[i][row_off + t + 1];
                acc[i][0] = vmlal_n_s16(vmlal_n_s16(acc[i][0], vget_low_s16(w0.val[0]), x0), vget_low_s16(w0.val[1]), x1);
                acc[i][1] = vmlal_high_n_s16(vmlal_high_n_s16(acc[i][1], w0.val[0], x0), w0.val[1], x1);
                acc[i][2] = vmlal_n_s16(vmlal_n_s16(acc[i][2], vget_low_s16(w1.val[0]), x0), vget_low_s16(w1.val[1]), x1);
                acc[i][3] = vmlal_high_n_s16(vmlal_high_n_s16(acc[i][3], w1.val[0], x0), w1.val[1], x1);
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        int16_t *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        for (int j = 0; j < 4; j++) {
            if (vector_ok) {
                vst1_s16(dst + 4 * j, q8_finish4_neon(q, acc[i][j], k0 + 4 * j));
                continue;
            }
            int32_t s[4];
            vst1q_s32(s, acc[i][j]);
            for (int l = 0; l < 4; l++)
                dst[4 * j + l] = q8_finish(q, s[l], k0 + 4 * j + l);
        }
    }
}

static void q8_row_neon(const q8_t *q, Py_ssize_t oy, int vector_ok)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 16)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += Q8_TILE)
            q8_tile_neon(q, oy, ox, (int)(q->wo - ox < Q8_TILE ? q->wo - ox : Q8_TILE), k0, vector_ok);
}
#endif

#ifndef HAVE_AVX2_KERNEL
static int vnni_available(void)
{
    return 0;
}
#endif

/* Whether q8_finish8 computes q8_finish for every channel: no left shifts, no negative multipliers, and
 * sums + bias within int32 (sums stay below 9 x 1024 x 255 x 128 < 2^29 for C <= 1024). */
static int q8_vector_ok(const q8_t *q)
{
    if (q->c > 1024)
        return 0;
    for (Py_ssize_t k = 0; k < q->m; k++)
        if (q->shift[k] > 0 || q->mult[k] < 0 || q->bias[k] > (1 << 29) || q->bias[k] < -(1 << 29))
            return 0;
    return 1;
}

PyDoc_STRVAR(conv_q8_doc,
"conv_q8(a, weights, params, stride, zero_out, act_min, act_max, first, last, out, path=0)\n\n"
"One int8 3x3 convolution of edgecodec.models.analysis: `a` int16 (Hp, Wp, C) offset activations,\n"
"padded; `weights` int16 (9C/2, M, 2) from analysis.pack; `params` int32 (3, M): bias, multiplier\n"
"and shift per output channel. Writes output rows first..last-1 of `out` int16 (Ho, Wo, M):\n"
"clip(requantize(sum + bias) + zero_out, act_min, act_max) - zero_out. `path`: 0 the fastest this CPU\n"
"has (AVX-512 VNNI where M is a multiple of 16, AVX2 where a multiple of 8; NEON on aarch64 where a\n"
"multiple of 16), 1 the portable C loop, 2 AVX2 at most: they write the same integers (for tests).");

static PyObject *py_conv_q8(PyObject *self, PyObject *args)
{
    PyObject *o_a, *o_w, *o_p, *o_out;
    Py_buffer v[4] = {{0}};
    Py_ssize_t stride, first, last, ho;
    int zero_out, act_min, act_max, use_avx2, use_vnni, vector_ok, path = 0;
    int32_t *acc = NULL;
    q8_t q;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOniiinnO|i:conv_q8", &o_a, &o_w, &o_p, &stride, &zero_out, &act_min, &act_max,
                          &first, &last, &o_out, &path))
        return NULL;
    if (GET_I16(o_a, &v[0], "a", 3, 0) < 0 || GET_I16(o_w, &v[1], "weights", 3, 0) < 0 ||
        GET_I32(o_p, &v[2], "params", 2, 0) < 0 || GET_I16(o_out, &v[3], "out", 3, 1) < 0)
        goto fail;
    q.c = v[0].shape[2];
    q.m = v[1].shape[1];
    q.wp = v[0].shape[1];
    q.wo = v[3].shape[1];
    q.stride = stride;
    ho = v[3].shape[0];
    if (q.c % 2 || q.c > 7000 || v[1].shape[0] * 2 != 9 * q.c || v[1].shape[2] != 2 || v[2].shape[0] != 3 ||
        v[2].shape[1] != q.m || v[3].shape[2] != q.m) {
        PyErr_SetString(PyExc_ValueError, "conv_q8: need a (Hp, Wp, C) with C even, weights (9C/2, M, 2), "
                        "params (3, M) and out (Ho, Wo, M)");
        goto fail;
    }
    if ((stride != 1 && stride != 2) ||
        (ho > 0 && q.wo > 0 && ((ho - 1) * stride + 3 > v[0].shape[0] || (q.wo - 1) * stride + 3 > q.wp))) {
        PyErr_SetString(PyExc_ValueError, "conv_q8: stride must be 1 or 2 and `a` must cover every tap of `out`");
        goto fail;
    }
    if (first < 0 || first > last || last > ho) {
        PyErr_Format(PyExc_ValueError, "conv_q8: rows %zd..%zd outside 0..%zd", first, last, ho);
        goto fail;
    }
    if (zero_out < -128 || zero_out > 127 || act_min < -128 || act_min > act_max || act_max > 127) {
        PyErr_SetString(PyExc_ValueError, "conv_q8: zero point and clamp must lie in the int8 range");
        goto fail;
    }
    q.a = (const int16_t *)v[0].buf;
    q.w = (const int16_t *)v[1].buf;
    q.bias = (const int32_t *)v[2].buf;
    q.mult = q.bias + q.m;
    q.shift = q.bias + 2 * q.m;
    for (Py_ssize_t k = 0; k < q.m; k++)
        if (q.shift[k] < -31 || q.shift[k] > 30) {
            PyErr_SetString(PyExc_ValueError, "conv_q8: shifts must lie in -31..30");
            goto fail;
        }
    /* Only the input rows these output rows read: split over threads, each call checks its own share. */
    for (Py_ssize_t i = first * stride * q.wp * q.c; last > first && i < ((last - 1) * stride + 3) * q.wp * q.c; i++)
        if (q.a[i] < -255 || q.a[i] > 255) {
            PyErr_SetString(PyExc_ValueError, "conv_q8: activations must lie in -255..255");
            goto fail;
        }
    for (Py_ssize_t i = 0; i < 9 * q.c * q.m; i++)
        if (q.w[i] < -128 || q.w[i] > 127) {
            PyErr_SetString(PyExc_ValueError, "conv_q8: weights must lie in the int8 range");
            goto fail;
        }
    q.zero_out = zero_out;
    q.act_min = act_min;
    q.act_max = act_max;
    q.out = (int16_t *)v[3].buf;
    use_avx2 = path != 1 && avx2_available() && q.m % 8 == 0;
    use_vnni = path == 0 && use_avx2 && vnni_available() && q.m % 16 == 0;
    vector_ok = q8_vector_ok(&q);
    acc = PyMem_RawMalloc(sizeof(int32_t) * (size_t)(q.m + 1));
    if (acc == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t oy = first; oy < last && q.wo > 0; oy++) {
#ifdef HAVE_NEON_KERNEL
        if (path != 1 && q.m % 16 == 0) {
            q8_row_neon(&q, oy, vector_ok);
            continue;
        }
#endif
#ifdef HAVE_AVX2_KERNEL
        if (use_vnni) {
            q8_row_vnni(&q, oy, vector_ok);
            continue;
        }
        if (use_avx2) {
            q8_row_avx2(&q, oy, vector_ok);
            continue;
        }
#endif
        q8_row_portable(&q, oy, acc);
    }
    Py_END_ALLOW_THREADS
    (void)use_avx2;
    (void)use_vnni;
    (void)vector_ok;
    PyMem_RawFree(acc);
    release(v, 4);
    Py_RETURN_NONE;
fail:
    PyMem_RawFree(acc);
    release(v, 4);
    return NULL;
}


/* ---- The float synthesis: convolutions summed in one fixed order with fused multiply-adds ------------
 *
 * conv_f32 is one stride-1 convolution of edgecodec.models.synthesis (read its docstring for why): every
 * output starts at its bias and adds the taps in (dy, dx, c) order, each as one fused multiply-add, so
 * each result is one IEEE-754 float32 expression that any CPU computes to the same bits: the AVX2 loop
 * (vfmadd231ps, one output channel a lane), the portable one (fmaf, which gcc turns into the CPU's FMA
 * instruction on aarch64) and any other build. The extension is compiled with -ffp-contract=off so that
 * nothing else is fused behind the code's back.
 *
 * `a` float32 (Hp, Wp, C) is padded by the caller; weights are float32 (KH * KW * C, M), tap-major.
 */

#define F32_TILE 6 /* output pixels per AVX2 micro-tile: 12 accumulators, 2 weight vectors, 1 broadcast */

typedef struct {
    const float *a, *w, *bias;
    Py_ssize_t wp, c, m, kh, kw, wo;
    int gdn; /* inverse GDN: taps squared (x * x, rounded), then out = x * sqrt(sum) (1x1, M == C) */
    Py_ssize_t block; /* > 1: a 1x1 convolution that reads `a` through DEPTH_TO_SPACE of this block */
    float *out;
} f32_t;

/* Pixel (y, x) of the convolution's input: of `a` itself, or of DEPTH_TO_SPACE(a) without the copy
 * (TFLite's order: block row, block column, channel). */
static inline const float *f32_pixel(const f32_t *q, Py_ssize_t y, Py_ssize_t x)
{
    const Py_ssize_t b = q->block;
    if (b == 1)
        return q->a + (y * q->wp + x) * q->c;
    return q->a + ((y / b) * q->wp + x / b) * (b * b * q->c) + ((y % b) * b + x % b) * q->c;
}

static void f32_row_portable(const f32_t *q, Py_ssize_t oy, float *acc)
{
    const Py_ssize_t m = q->m, ck = q->kw * q->c;
    for (Py_ssize_t ox = 0; ox < q->wo; ox++) {
        for (Py_ssize_t k = 0; k < m; k++)
            acc[k] = q->bias[k];
        for (Py_ssize_t dy = 0; dy < q->kh; dy++) {
            const float *a = f32_pixel(q, oy + dy, ox);
            const float *w = q->w + dy * ck * m;
            for (Py_ssize_t t = 0; t < ck; t++, w += m) {
                const float x = q->gdn ? a[t] * a[t] : a[t];
                for (Py_ssize_t k = 0; k < m; k++)
                    acc[k] = fmaf(x, w[k], acc[k]);
            }
        }
        if (q->gdn) {
            const float *x = f32_pixel(q, oy, ox);
            for (Py_ssize_t k = 0; k < m; k++)
                acc[k] = x[k] * sqrtf(acc[k]);
        }
        memcpy(q->out + (oy * q->wo + ox) * m, acc, sizeof(float) * (size_t)m);
    }
}

#ifdef HAVE_AVX2_KERNEL
static int fma_available(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
f32_tile(const f32_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0, int nb)
{
    const Py_ssize_t m = q->m, ck = q->kw * q->c;
    __m256 acc[F32_TILE][2];
    const float *rows[F32_TILE];
    const __m256 b0 = _mm256_loadu_ps(q->bias + k0), b1 = nb > 1 ? _mm256_loadu_ps(q->bias + k0 + 8) : b0;
    for (int i = 0; i < F32_TILE; i++) {
        acc[i][0] = b0;
        acc[i][1] = b1;
        rows[i] = f32_pixel(q, oy, ox + (i < valid ? i : valid - 1));
    }
    for (Py_ssize_t dy = 0; dy < q->kh; dy++) {
        const float *w = q->w + dy * ck * m + k0;
        const Py_ssize_t row_off = dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < ck; t++, w += m) {
            __m256 w0 = _mm256_loadu_ps(w);
            __m256 w1 = nb > 1 ? _mm256_loadu_ps(w + 8) : w0;
            for (int i = 0; i < F32_TILE; i++) {
                __m256 x = _mm256_broadcast_ss(rows[i] + row_off + t);
                if (q->gdn)
                    x = _mm256_mul_ps(x, x);
                acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
                if (nb > 1)
                    acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        float *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        if (q->gdn) {
            acc[i][0] = _mm256_mul_ps(_mm256_loadu_ps(rows[i] + k0), _mm256_sqrt_ps(acc[i][0]));
            if (nb > 1)
                acc[i][1] = _mm256_mul_ps(_mm256_loadu_ps(rows[i] + k0 + 8), _mm256_sqrt_ps(acc[i][1]));
        }
        _mm256_storeu_ps(dst, acc[i][0]);
        if (nb > 1)
            _mm256_storeu_ps(dst + 8, acc[i][1]);
    }
}

__attribute__((target("avx2,fma"))) static void f32_row_avx2(const f32_t *q, Py_ssize_t oy)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 16)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += F32_TILE) {
            int valid = (int)(q->wo - ox < F32_TILE ? q->wo - ox : F32_TILE);
            if (q->m - k0 >= 16)
                f32_tile(q, oy, ox, valid, k0, 2);
            else
                f32_tile(q, oy, ox, valid, k0, 1);
        }
}

/* The same tile sixteen channels a vector (AVX-512F): the same fused multiply-adds in the same order. */
static int avx512_available(void)
{
    return __builtin_cpu_supports("avx512f");
}

__attribute__((target("avx512f"), always_inline)) static inline void
f32_tile512(const f32_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0, int nb)
{
    const Py_ssize_t m = q->m, ck = q->kw * q->c;
    __m512 acc[F32_TILE][2];
    const float *rows[F32_TILE];
    const __m512 b0 = _mm512_loadu_ps(q->bias + k0), b1 = nb > 1 ? _mm512_loadu_ps(q->bias + k0 + 16) : b0;
    for (int i = 0; i < F32_TILE; i++) {
        acc[i][0] = b0;
        acc[i][1] = b1;
        rows[i] = f32_pixel(q, oy, ox + (i < valid ? i : valid - 1));
    }
    for (Py_ssize_t dy = 0; dy < q->kh; dy++) {
        const float *w = q->w + dy * ck * m + k0;
        const Py_ssize_t row_off = dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < ck; t++, w += m) {
            __m512 w0 = _mm512_loadu_ps(w);
            __m512 w1 = nb > 1 ? _mm512_loadu_ps(w + 16) : w0;
            for (int i = 0; i < F32_TILE; i++) {
                __m512 x = _mm512_set1_ps(rows[i][row_off + t]);
                if (q->gdn)
                    x = _mm512_mul_ps(x, x);
                acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
                if (nb > 1)
                    acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        float *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        if (q->gdn) {
            acc[i][0] = _mm512_mul_ps(_mm512_loadu_ps(rows[i] + k0), _mm512_sqrt_ps(acc[i][0]));
            if (nb > 1)
                acc[i][1] = _mm512_mul_ps(_mm512_loadu_ps(rows[i] + k0 + 16), _mm512_sqrt_ps(acc[i][1]));
        }
        _mm512_storeu_ps(dst, acc[i][0]);
        if (nb > 1)
            _mm512_storeu_ps(dst + 16, acc[i][1]);
    }
}

__attribute__((target("avx512f"))) static void f32_row_avx512(const f32_t *q, Py_ssize_t oy)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 32)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += F32_TILE) {
            int valid = (int)(q->wo - ox < F32_TILE ? q->wo - ox : F32_TILE);
            if (q->m - k0 >= 32)
                f32_tile512(q, oy, ox, valid, k0, 2);
            else
                f32_tile512(q, oy, ox, valid, k0, 1);
        }
}
#else
static int fma_available(void)
{
    return 0;
}

static int avx512_available(void)
{
    return 0;
}
#endif

#ifdef HAVE_NEON_KERNEL
/* aarch64: F32_TILE pixels x 16 channels, vfmaq_n_f32: the same fused multiply-adds in the same order. */
static void f32_tile_neon(const f32_t *q, Py_ssize_t oy, Py_ssize_t ox, int valid, Py_ssize_t k0)
{
    const Py_ssize_t m = q->m, ck = q->kw * q->c;
    float32x4_t acc[F32_TILE][4];
    const float *rows[F32_TILE];
    for (int i = 0; i < F32_TILE; i++) {
        for (int j = 0; j < 4; j++)
            acc[i][j] = vld1q_f32(q->bias + k0 + 4 * j);
        rows[i] = f32_pixel(q, oy, ox + (i < valid ? i : valid - 1));
    }
    for (Py_ssize_t dy = 0; dy < q->kh; dy++) {
        const float *w = q->w + dy * ck * m + k0;
        const Py_ssize_t row_off = dy * q->wp * q->c;
        for (Py_ssize_t t = 0; t < ck; t++, w += m) {
            float32x4_t w0 = vld1q_f32(w), w1 = vld1q_f32(w + 4), w2 = vld1q_f32(w + 8), w3 = vld1q_f32(w + 12);
            for (int i = 0; i < F32_TILE; i++) {
                const float x = q->gdn ? rows[i][row_off + t] * rows[i][row_off + t] : rows[i][row_off + t];
                acc[i][0] = vfmaq_n_f32(acc[i][0], w0, x);
                acc[i][1] = vfmaq_n_f32(acc[i][1], w1, x);
                acc[i][2] = vfmaq_n_f32(acc[i][2], w2, x);
                acc[i][3] = vfmaq_n_f32(acc[i][3], w3, x);
            }
        }
    }
    for (int i = 0; i < valid; i++) {
        float *dst = q->out + (oy * q->wo + ox + i) * m + k0;
        for (int j = 0; j < 4; j++) {
            if (q->gdn)
                acc[i][j] = vmulq_f32(vld1q_f32(rows[i] + k0 + 4 * j), vsqrtq_f32(acc[i][j]));
            vst1q_f32(dst + 4 * j, acc[i][j]);
        }
    }
}

static void f32_row_neon(const f32_t *q, Py_ssize_t oy)
{
    for (Py_ssize_t k0 = 0; k0 < q->m; k0 += 16)
        for (Py_ssize_t ox = 0; ox < q->wo; ox += F32_TILE)
            f32_tile_neon(q, oy, ox, (int)(q->wo - ox < F32_TILE ? q->wo - ox : F32_TILE), k0);
}
#endif

PyDoc_STRVAR(conv_f32_doc,
"conv_f32(a, weights, bias, kh, kw, first, last, out, path=0, gdn=False, block=1) -> None\n\n"
"One stride-1 float32 convolution of edgecodec.models.synthesis: `a` (Hp, Wp, C), padded; `weights`\n"
"(kh * kw * C, M), taps in (dy, dx, c) order; `bias` (M,). Writes output rows first..last-1 of `out`\n"
"(Ho, Wo, M), each value bias + the taps' products, fused multiply-adds in tap order. `path`: 0 the\n"
"fastest this CPU has (AVX-512 where M is a multiple of 16, AVX2 + FMA where a multiple of 8; NEON on\n"
"aarch64 where a multiple of 16), 1 the portable C loop, 2 AVX2 at most: they write the same bits.\n"
"`gdn`: an inverse GDN instead (1x1, M == C): the taps squared, out = x * sqrt(bias + the sum).\n"
"`block` > 1: a 1x1 convolution of DEPTH_TO_SPACE(a) with that block, `a` (Ho/b, Wo/b, b*b*C).");

static PyObject *py_conv_f32(PyObject *self, PyObject *args)
{
    PyObject *o_a, *o_w, *o_b, *o_out;
    Py_buffer v[4] = {{0}};
    Py_ssize_t first, last, ho;
    int path = 0, use_avx2, use_avx512, gdn = 0;
    Py_ssize_t block = 1;
    float *acc = NULL;
    f32_t q;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOnnnnO|ipn:conv_f32", &o_a, &o_w, &o_b, &q.kh, &q.kw, &first, &last, &o_out,
                          &path, &gdn, &block))
        return NULL;
    if (GET_F32(o_a, &v[0], "a", 3, 0) < 0 || GET_F32(o_w, &v[1], "weights", 2, 0) < 0 ||
        GET_F32(o_b, &v[2], "bias", 1, 0) < 0 || GET_F32(o_out, &v[3], "out", 3, 1) < 0)
        goto fail;
    q.wp = v[0].shape[1];
    q.m = v[1].shape[1];
    q.wo = v[3].shape[1];
    ho = v[3].shape[0];
    if (block < 1 || block > 8 || (block > 1 && (q.kh != 1 || q.kw != 1 || v[0].shape[2] % (block * block) ||
                                                 v[0].shape[0] * block != ho || q.wp * block != q.wo))) {
        PyErr_SetString(PyExc_ValueError, "conv_f32: a block of 2..8 takes a 1x1 convolution whose `a` is "
                        "(Ho/b, Wo/b, b*b*C)");
        goto fail;
    }
    q.block = block;
    q.c = v[0].shape[2] / (block * block);
    if (q.kh < 1 || q.kw < 1 || q.kh > 15 || q.kw > 15 || v[1].shape[0] != q.kh * q.kw * q.c ||
        v[2].shape[0] != q.m || v[3].shape[2] != q.m) {
        PyErr_SetString(PyExc_ValueError, "conv_f32: need kernel sides 1..15, weights (kh * kw * C, M), "
                        "bias (M,) and out (Ho, Wo, M)");
        goto fail;
    }
    if (block == 1 && ho > 0 && q.wo > 0 && (ho - 1 + q.kh > v[0].shape[0] || q.wo - 1 + q.kw > q.wp)) {
        PyErr_SetString(PyExc_ValueError, "conv_f32: `a` must cover every tap of `out`");
        goto fail;
    }
    if (first < 0 || first > last || last > ho) {
        PyErr_Format(PyExc_ValueError, "conv_f32: rows %zd..%zd outside 0..%zd", first, last, ho);
        goto fail;
    }
    if (gdn && (q.kh != 1 || q.kw != 1 || q.m != q.c)) {
        PyErr_SetString(PyExc_ValueError, "conv_f32: an inverse GDN is 1x1 with as many outputs as inputs");
        goto fail;
    }
    q.gdn = gdn;
    q.a = (const float *)v[0].buf;
    q.w = (const float *)v[1].buf;
    q.bias = (const float *)v[2].buf;
    q.out = (float *)v[3].buf;
    use_avx2 = path != 1 && fma_available() && q.m % 8 == 0;
    use_avx512 = path == 0 && use_avx2 && avx512_available() && q.m % 16 == 0;
    acc = PyMem_RawMalloc(sizeof(float) * (size_t)(q.m + 1));
    if (acc == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t oy = first; oy < last && q.wo > 0; oy++) {
#ifdef HAVE_NEON_KERNEL
        if (path != 1 && q.m % 16 == 0) {
            f32_row_neon(&q, oy);
            continue;
        }
#endif
#ifdef HAVE_AVX2_KERNEL
        if (use_avx512) {
            f32_row_avx512(&q, oy);
            continue;
        }
        if (use_avx2) {
            f32_row_avx2(&q, oy);
            continue;
        }
#endif
        f32_row_portable(&q, oy, acc);
    }
    Py_END_ALLOW_THREADS
    (void)use_avx2;
    (void)use_avx512;
    PyMem_RawFree(acc);
    release(v, 4);
    Py_RETURN_NONE;
fail:
    PyMem_RawFree(acc);
    release(v, 4);
    return NULL;
}

static PyMethodDef methods[] = {
    {"requant", py_requant, METH_VARARGS, requant_doc},
    {"finish", py_finish, METH_VARARGS, finish_doc},
    {"int8_available", py_int8_available, METH_NOARGS, int8_available_doc},
    {"conv3x3_int8", py_conv3x3_int8, METH_VARARGS, conv3x3_int8_doc},
    {"matmul_int8", py_matmul_int8, METH_VARARGS, matmul_int8_doc},
    {"conv_q8", py_conv_q8, METH_VARARGS, conv_q8_doc},
    {"conv_f32", py_conv_f32, METH_VARARGS, conv_f32_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "edgecodec.models._fixedpoint",
    "Integer requantization of the hyper-synthesis and context (see edgecodec.models.hyper).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fixedpoint(void)
{
    return PyModule_Create(&module);
}
