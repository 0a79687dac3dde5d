/*
 * _fixedpoint.c -- the integer requantization steps of the hyper-synthesis and the checkerboard context.
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
 * Safety: every buffer's type, shape and length is checked before the loops run, and every row
 * number is range-checked, so no input can make this code read or write out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

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
        const int64_t half = (int64_t)1 << (shift - 1);
        const uint64_t mask = ((uint64_t)1 << shift) - 1;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            const float *s = sums + (Py_ssize_t)rows[i] * k_all;
            const float *c = ctx ? ctx + i * k_all : NULL;
            for (Py_ssize_t k = 0; k < m; k++) {
                uint64_t fx = sum_to_u64(s[k]) * (uint64_t)mult[k] + (uint64_t)cons[k];
                int64_t index, mean = 0;
                if (c)
                    fx += sum_to_u64(c[k]) * (uint64_t)cmult[k];
                index = clip64(floor_shift(fx, shift), 0, levels - 1);
                if (has_mean) {
                    Py_ssize_t j = m + k;
                    uint64_t mx = sum_to_u64(s[j]) * (uint64_t)mult[j] + (uint64_t)cons[j];
                    if (c)
                        mx += sum_to_u64(c[j]) * (uint64_t)cmult[j];
                    mean = clip64(floor_shift(mx, shift), -mean_max, mean_max);
                    if (steps) {
                        int64_t frac = (int64_t)(mx & mask) - half;
                        index = index * (steps + 1) + floor_shift((uint64_t)(frac * steps + half), shift) + steps / 2;
                    }
                }
                idx_out[i * m + k] = (int32_t)index;
                mean_out[i * m + k] = (int32_t)mean;
            }
        }
        Py_END_ALLOW_THREADS
    }
    release(v, 6);
    Py_RETURN_NONE;
fail:
    release(v, 6);
    return NULL;
}

static PyMethodDef methods[] = {
    {"requant", py_requant, METH_VARARGS, requant_doc},
    {"finish", py_finish, METH_VARARGS, finish_doc},
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
