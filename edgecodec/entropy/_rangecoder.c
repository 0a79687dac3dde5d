/*
 * _rangecoder.c -- multi-symbol range coder over 16-bit integer CDF tables.
 *
 * Why a range coder and not interleaved rANS: a range coder is FIFO, so the encoder emits bytes
 * in symbol order with no reverse pass and no buffering of the whole symbol array; escape
 * payloads are simply more uniform symbols in the same stream; and one state machine is easy to
 * mirror bit for bit in the pure-Python reference (reference.py). With a 64-bit state renormalised
 * 32 bits at a time the per-symbol truncation loss is below 2^-16 relative, so the size overhead
 * is negligible; rANS would save the decoder's division but costs a reverse encode pass.
 *
 * Stream format (version 1, the same on every platform: only integer arithmetic is used)
 *
 *   state:   low (u64), range (u64), initially low = 0, range = 2^64 - 1.
 *   symbol with cumulative frequency `start` and frequency `freq` (total 2^16):
 *              r = range >> 16;  low += r * start;  range = r * freq.
 *   k raw bits (1 <= k <= 16) of value b, "bypass":
 *              r = range >> k;   low += r * b;      range = r.
 *   after every step, if range < 2^32: emit the top 32 bits of low big-endian; low <<= 32;
 *   range <<= 32 (one step always suffices because range >= 2^16 after any operation).
 *   A carry out of low (low wrapped past 2^64) increments the bytes already emitted.
 *   finish:  pick v in [low, low + range) with the most trailing zero bits, emit it as 8 bytes
 *            big-endian, then drop all trailing zero bytes of the whole stream. The decoder reads
 *            zeros past the end, so the stream of zero symbols is empty.
 *
 *   Each table has n symbols: 0 .. n-2 code the values offset .. offset+n-2, symbol n-1 is the
 *   ESCAPE. A value outside that range is coded as ESCAPE followed by bypass bits for its
 *   overflow d (d = s for s < 0, d = s - (n-1) above the range, with s = value - offset),
 *   zig-zag mapped to u = 2d (d >= 0) or -2d-1 (d < 0), u < 2^33:
 *       6 bits:   m = bit length of u (0 .. 33)
 *       m-1 bits: u without its leading one bit, high part first, in chunks of at most 16 bits.
 *   This is Elias-gamma in spirit (length, then mantissa) but with a fixed-width length field,
 *   so the decoder does a bounded, constant amount of work per escape whatever the input.
 *
 * Safety: tables are validated and copied before coding; every index is range-checked; the
 * decoder reads zeros past the end of its input and does O(1) work per symbol, so random input
 * yields either some symbols or EntropyCodingError, never an out-of-bounds access or a hang.
 * The GIL is released while coding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_VERSION 1
#define PRECISION 16
#define TOTAL ((uint32_t)1 << PRECISION)
#define RANGE_MIN ((uint64_t)1 << 32)
#define ESC_LENGTH_BITS 6
#define ESC_MAX_LENGTH 33 /* bit length of the largest zig-zagged overflow, < 2^33 */
#define LUT_BITS 8        /* decode lookup: 2^8 buckets per table */
#define MAX_STEP_BYTES 16 /* most bytes one symbol (escape included) can emit: 4 renormalisations */

static PyObject *EntropyCodingError; /* edgecodec.errors.EntropyCodingError */

/* ---------------------------------------------------------------- tables */

typedef struct {
    const uint32_t *row;  /* n_symbols + 1 cumulative frequencies: row[0] = 0 .. row[n] = TOTAL */
    uint32_t nreg;        /* regular symbols; symbol nreg is the escape */
    int32_t offset;       /* value coded by symbol 0 */
    const uint16_t *lut;  /* 2^LUT_BITS decode hints or NULL */
} table_t;

typedef struct {
    table_t *tables;
    Py_ssize_t n_tables;
    uint32_t *rows;   /* private copy of all rows, back to back */
    uint16_t *luts;   /* decode hints, n_tables << LUT_BITS, or NULL */
} tableset_t;

static void tableset_free(tableset_t *ts)
{
    free(ts->tables);
    free(ts->rows);
    free(ts->luts);
    memset(ts, 0, sizeof(*ts));
}

/* Accept only native int32 buffers: format "i" (or "l" where long is 32 bits), itemsize 4. */
static int is_native_int32(const Py_buffer *view)
{
    const char *f = view->format;
    const uint16_t probe = 1;
    const int little = *(const uint8_t *)&probe == 1;
    if (view->itemsize != 4 || f == NULL)
        return 0;
    if (*f == '@' || *f == '=')
        f++;
    else if (*f == '<') {
        if (!little)
            return 0;
        f++;
    } else if (*f == '>' || *f == '!') {
        if (little)
            return 0;
        f++;
    }
    return (f[0] == 'i' || f[0] == 'l') && f[1] == '\0';
}

static int get_int32(PyObject *obj, Py_buffer *view, const char *name, int ndim, int writable)
{
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (!is_native_int32(view) || (ndim > 0 && view->ndim != ndim)) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %d-D int32 buffer", name,
                     ndim > 0 ? ndim : 1);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Validate the raw tables (cdf: n_tables x stride, lengths, offsets) and build a private copy. */
static int tableset_init(tableset_t *ts, const Py_buffer *cdf, const Py_buffer *lengths,
                         const Py_buffer *offsets, int with_lut)
{
    const int32_t *c = (const int32_t *)cdf->buf;
    const int32_t *len = (const int32_t *)lengths->buf;
    const int32_t *off = (const int32_t *)offsets->buf;
    Py_ssize_t n_tables = cdf->shape[0], stride = cdf->shape[1], total = 0, i, j;

    memset(ts, 0, sizeof(*ts));
    if (n_tables < 1 || stride < 3) {
        PyErr_SetString(EntropyCodingError, "cdf must have at least one row of 3 entries");
        return -1;
    }
    if (lengths->len / 4 != n_tables || offsets->len / 4 != n_tables) {
        PyErr_Format(EntropyCodingError, "lengths and offsets must have %zd entries (one per table)",
                     n_tables);
        return -1;
    }
    for (i = 0; i < n_tables; i++) {
        const int32_t *row = c + i * stride;
        int32_t n = len[i];
        if (n < 2 || n > stride - 1) {
            PyErr_Format(EntropyCodingError, "table %zd: length %d outside [2, %zd]", i, (int)n,
                         stride - 1);
            return -1;
        }
        if (row[0] != 0 || row[n] != (int32_t)TOTAL) {
            PyErr_Format(EntropyCodingError, "table %zd: cdf must start at 0 and end at %u", i,
                         (unsigned)TOTAL);
            return -1;
        }
        for (j = 0; j < n; j++) {
            if (row[j + 1] <= row[j]) {
                PyErr_Format(EntropyCodingError, "table %zd: symbol %zd has zero frequency", i, j);
                return -1;
            }
        }
        if ((int64_t)off[i] + (n - 2) > INT32_MAX) {
            PyErr_Format(EntropyCodingError, "table %zd: values exceed the int32 range", i);
            return -1;
        }
        total += n + 1;
    }

    ts->n_tables = n_tables;
    ts->tables = malloc((size_t)n_tables * sizeof(table_t));
    ts->rows = malloc((size_t)total * sizeof(uint32_t));
    if (with_lut)
        ts->luts = malloc(((size_t)n_tables << LUT_BITS) * sizeof(uint16_t));
    if (!ts->tables || !ts->rows || (with_lut && !ts->luts)) {
        tableset_free(ts);
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *dst = ts->rows;
    for (i = 0; i < n_tables; i++) {
        const int32_t *row = c + i * stride;
        uint32_t n = (uint32_t)len[i];
        for (j = 0; j <= (Py_ssize_t)n; j++)
            dst[j] = (uint32_t)row[j];
        ts->tables[i].row = dst;
        ts->tables[i].nreg = n - 1;
        ts->tables[i].offset = off[i];
        ts->tables[i].lut = NULL;
        if (with_lut) {
            /* lut[b] = the symbol whose interval contains the bucket start b << (16 - LUT_BITS) */
            uint16_t *lut = ts->luts + ((size_t)i << LUT_BITS);
            uint32_t s = 0, b;
            for (b = 0; b < (1u << LUT_BITS); b++) {
                while (dst[s + 1] <= (b << (PRECISION - LUT_BITS)))
                    s++;
                lut[b] = (uint16_t)s;
            }
            ts->tables[i].lut = lut;
        }
        dst += n + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- errors from the coding loop */

enum {
    OK = 0,
    ERR_NOMEM,
    ERR_INDEX,      /* table index out of range; value = the index */
    ERR_UNDECODABLE, /* the data do not correspond to any symbol */
    ERR_ESCAPE,     /* escape length field out of range */
    ERR_OVERFLOW,   /* escaped value outside int32 */
    ERR_TRAILING,   /* bytes left over after the last symbol */
};

typedef struct {
    int code;
    Py_ssize_t pos;
    int64_t value;
} status_t;

static PyObject *raise_status(const status_t *st, Py_ssize_t n_tables)
{
    switch (st->code) {
    case ERR_NOMEM:
        return PyErr_NoMemory();
    case ERR_INDEX:
        PyErr_Format(EntropyCodingError, "index %lld at position %zd is outside [0, %zd)",
                     (long long)st->value, st->pos, n_tables);
        break;
    case ERR_UNDECODABLE:
        PyErr_Format(EntropyCodingError, "corrupt data: no symbol matches at position %zd",
                     st->pos);
        break;
    case ERR_ESCAPE:
        PyErr_Format(EntropyCodingError,
                     "corrupt data: escape length %lld > %d at position %zd",
                     (long long)st->value, ESC_MAX_LENGTH, st->pos);
        break;
    case ERR_OVERFLOW:
        PyErr_Format(EntropyCodingError,
                     "corrupt data: escaped value at position %zd is outside int32", st->pos);
        break;
    case ERR_TRAILING:
        PyErr_Format(EntropyCodingError,
                     "corrupt data: %lld trailing bytes after the last symbol",
                     (long long)st->value);
        break;
    default:
        PyErr_SetString(PyExc_SystemError, "range coder: unknown status");
    }
    return NULL;
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    uint64_t low, range;
    uint8_t *buf;
    size_t pos, cap;
} encoder_t;

static void store_be32(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)(w >> 24);
    p[1] = (uint8_t)(w >> 16);
    p[2] = (uint8_t)(w >> 8);
    p[3] = (uint8_t)w;
}

/* Propagate a carry out of `low` into the bytes already emitted. */
static void enc_carry(encoder_t *e)
{
    size_t i = e->pos;
    while (i > 0 && ++e->buf[--i] == 0) {
    }
}

static int enc_reserve(encoder_t *e, size_t extra)
{
    size_t cap;
    uint8_t *p;
    if (e->cap - e->pos >= extra)
        return 0;
    cap = e->cap * 2 + extra;
    p = realloc(e->buf, cap);
    if (p == NULL)
        return -1;
    e->buf = p;
    e->cap = cap;
    return 0;
}

/* Narrow [low, low+range) to the sub-interval [start, start+freq) of 2^bits; renormalise. */
static inline void enc_put(encoder_t *e, uint32_t start, uint32_t freq, int bits)
{
    uint64_t r = e->range >> bits;
    uint64_t low = e->low + r * start;
    if (low < e->low)
        enc_carry(e);
    e->low = low;
    e->range = r * freq;
    if (e->range < RANGE_MIN) {
        store_be32(e->buf + e->pos, (uint32_t)(e->low >> 32));
        e->pos += 4;
        e->low <<= 32;
        e->range <<= 32;
    }
}

static void enc_escape(encoder_t *e, int64_t s, uint32_t nreg)
{
    int64_t d = s < 0 ? s : s - (int64_t)nreg;
    uint64_t u = d >= 0 ? (uint64_t)d << 1 : ((uint64_t)(-(d + 1)) << 1) | 1;
    uint32_t m = 0;
    uint64_t t = u;
    while (t) {
        m++;
        t >>= 1;
    }
    enc_put(e, m, 1, ESC_LENGTH_BITS);
    if (m > 1) {
        uint32_t k = m - 1;
        uint64_t rest = u & (((uint64_t)1 << k) - 1);
        if (k > 16) {
            enc_put(e, (uint32_t)(rest >> 16), 1, (int)(k - 16));
            k = 16;
        }
        enc_put(e, (uint32_t)(rest & 0xFFFF), 1, (int)k);
    }
}

static void enc_finish(encoder_t *e)
{
    int k;
    for (k = 64; k >= 0; k--) {
        uint64_t mask = k == 64 ? UINT64_MAX : ((uint64_t)1 << k) - 1;
        uint64_t sum = e->low + mask;
        uint64_t v = sum & ~mask;
        if (v - e->low < e->range) {
            if (sum < e->low)
                enc_carry(e);
            store_be32(e->buf + e->pos, (uint32_t)(v >> 32));
            store_be32(e->buf + e->pos + 4, (uint32_t)v);
            e->pos += 8;
            break;
        }
    }
    while (e->pos > 0 && e->buf[e->pos - 1] == 0)
        e->pos--;
}

static void encode_loop(encoder_t *e, const int32_t *symbols, const int32_t *indexes,
                        Py_ssize_t n, const tableset_t *ts, status_t *st)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        int32_t idx = indexes[i];
        const table_t *t;
        int64_t s;
        if (idx < 0 || idx >= ts->n_tables) {
            st->code = ERR_INDEX;
            st->pos = i;
            st->value = idx;
            return;
        }
        if (e->cap - e->pos < MAX_STEP_BYTES && enc_reserve(e, MAX_STEP_BYTES) < 0) {
            st->code = ERR_NOMEM;
            return;
        }
        t = &ts->tables[idx];
        s = (int64_t)symbols[i] - t->offset;
        if ((uint64_t)s < t->nreg) {
            uint32_t start = t->row[s];
            enc_put(e, start, t->row[s + 1] - start, PRECISION);
        } else {
            uint32_t start = t->row[t->nreg];
            enc_put(e, start, TOTAL - start, PRECISION);
            enc_escape(e, s, t->nreg);
        }
    }
    if (enc_reserve(e, 8) < 0) {
        st->code = ERR_NOMEM;
        return;
    }
    enc_finish(e);
}

/* ---------------------------------------------------------------- decoder */

typedef struct {
    uint64_t code, range; /* code = (stream value - low), always < range */
    const uint8_t *data;
    size_t len, pos;      /* pos may run past len: missing bytes read as zero */
} decoder_t;

static inline uint32_t dec_word(decoder_t *d)
{
    uint32_t w = 0;
    if (d->pos + 4 <= d->len) {
        const uint8_t *p = d->data + d->pos;
        w = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    } else {
        int k;
        for (k = 0; k < 4; k++) {
            w <<= 8;
            if (d->pos + k < d->len)
                w |= d->data[d->pos + k];
        }
    }
    d->pos += 4;
    return w;
}

static inline void dec_renorm(decoder_t *d)
{
    if (d->range < RANGE_MIN) {
        d->code = (d->code << 32) | dec_word(d);
        d->range <<= 32;
    }
}

/* Read k bypass bits; -1 if the data cannot have been produced by the encoder. */
static inline int64_t dec_bits(decoder_t *d, int k)
{
    uint64_t r = d->range >> k;
    uint64_t b = d->code / r;
    if (b >> k)
        return -1;
    d->code -= r * b;
    d->range = r;
    dec_renorm(d);
    return (int64_t)b;
}

static int dec_escape(decoder_t *d, const table_t *t, int32_t *out, status_t *st)
{
    int64_t m = dec_bits(d, ESC_LENGTH_BITS), hi = 0, lo = 0, value;
    uint64_t u = 0;
    if (m < 0 || m > ESC_MAX_LENGTH) {
        st->code = m < 0 ? ERR_UNDECODABLE : ERR_ESCAPE;
        st->value = m;
        return -1;
    }
    if (m > 0) {
        int k = (int)m - 1;
        if (k > 16) {
            hi = dec_bits(d, k - 16);
            k = 16;
        }
        if (k > 0)
            lo = dec_bits(d, k);
        if (hi < 0 || lo < 0) {
            st->code = ERR_UNDECODABLE;
            return -1;
        }
        u = ((uint64_t)1 << (m - 1)) | ((uint64_t)hi << 16) | (uint64_t)lo;
    }
    {
        int64_t dd = (u & 1) ? -(int64_t)(u >> 1) - 1 : (int64_t)(u >> 1);
        value = (int64_t)t->offset + (dd < 0 ? dd : dd + (int64_t)t->nreg);
    }
    if (value < INT32_MIN || value > INT32_MAX) {
        st->code = ERR_OVERFLOW;
        return -1;
    }
    *out = (int32_t)value;
    return 0;
}

static void decode_loop(decoder_t *d, const int32_t *indexes, int32_t *out, Py_ssize_t n,
                        const tableset_t *ts, status_t *st)
{
    Py_ssize_t i;
    d->code = (uint64_t)dec_word(d) << 32;
    d->code |= dec_word(d);
    d->range = UINT64_MAX;
    for (i = 0; i < n; i++) {
        int32_t idx = indexes[i];
        const table_t *t;
        const uint32_t *row;
        uint64_t r, v;
        uint32_t s;
        if (idx < 0 || idx >= ts->n_tables) {
            st->code = ERR_INDEX;
            st->pos = i;
            st->value = idx;
            return;
        }
        t = &ts->tables[idx];
        row = t->row;
        r = d->range >> PRECISION;
        v = d->code / r;
        if (v >= TOTAL) {
            st->code = ERR_UNDECODABLE;
            st->pos = i;
            return;
        }
        if (t->lut) {
            s = t->lut[v >> (PRECISION - LUT_BITS)];
            while (row[s + 1] <= v)
                s++;
        } else {
            uint32_t lo = 0, hi = t->nreg; /* largest s in [lo, hi] with row[s] <= v */
            while (lo < hi) {
                uint32_t mid = (lo + hi + 1) >> 1;
                if (row[mid] <= v)
                    lo = mid;
                else
                    hi = mid - 1;
            }
            s = lo;
        }
        d->code -= r * row[s];
        d->range = r * (row[s + 1] - row[s]);
        dec_renorm(d);
        if (s < t->nreg) {
            out[i] = t->offset + (int32_t)s;
        } else if (dec_escape(d, t, &out[i], st) < 0) {
            st->pos = i;
            return;
        }
    }
    if (d->len > d->pos) {
        st->code = ERR_TRAILING;
        st->value = (int64_t)(d->len - d->pos);
    }
}

/* ---------------------------------------------------------------- Python functions */

PyDoc_STRVAR(encode_doc,
"encode(symbols, indexes, cdf, lengths, offsets) -> bytes\n\n"
"Range-code int32 `symbols`, each with the table named by the same position in `indexes`.\n"
"`cdf` is a C-contiguous (n_tables, stride) int32 buffer, `lengths` and `offsets` int32\n"
"buffers of n_tables entries. Raises EntropyCodingError for invalid tables or indexes.");

static PyObject *py_encode(PyObject *self, PyObject *args)
{
    PyObject *o_sym, *o_idx, *o_cdf, *o_len, *o_off, *result = NULL;
    Py_buffer sym = {0}, idx = {0}, cdf = {0}, len = {0}, off = {0};
    tableset_t ts = {0};
    encoder_t e = {0};
    status_t st = {0};
    Py_ssize_t n;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOOO:encode", &o_sym, &o_idx, &o_cdf, &o_len, &o_off))
        return NULL;
    if (get_int32(o_sym, &sym, "symbols", 0, 0) < 0 || get_int32(o_idx, &idx, "indexes", 0, 0) < 0 ||
        get_int32(o_cdf, &cdf, "cdf", 2, 0) < 0 || get_int32(o_len, &len, "lengths", 1, 0) < 0 ||
        get_int32(o_off, &off, "offsets", 1, 0) < 0)
        goto done;
    n = sym.len / 4;
    if (idx.len / 4 != n) {
        PyErr_Format(EntropyCodingError, "symbols (%zd) and indexes (%zd) differ in length", n,
                     idx.len / 4);
        goto done;
    }
    if (tableset_init(&ts, &cdf, &len, &off, 0) < 0)
        goto done;
    e.range = UINT64_MAX;
    e.cap = (size_t)n * 2 + (size_t)n / 64 + 64;
    e.buf = malloc(e.cap);
    if (e.buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    encode_loop(&e, (const int32_t *)sym.buf, (const int32_t *)idx.buf, n, &ts, &st);
    Py_END_ALLOW_THREADS
    if (st.code != OK)
        raise_status(&st, ts.n_tables);
    else
        result = PyBytes_FromStringAndSize((const char *)e.buf, (Py_ssize_t)e.pos);

done:
    free(e.buf);
    tableset_free(&ts);
    if (sym.obj) PyBuffer_Release(&sym);
    if (idx.obj) PyBuffer_Release(&idx);
    if (cdf.obj) PyBuffer_Release(&cdf);
    if (len.obj) PyBuffer_Release(&len);
    if (off.obj) PyBuffer_Release(&off);
    return result;
}

PyDoc_STRVAR(decode_doc,
"decode(data, indexes, cdf, lengths, offsets, out) -> None\n\n"
"Decode len(indexes) symbols from the bytes-like `data` into the writable int32 buffer `out`\n"
"(same length as `indexes`). Raises EntropyCodingError for invalid tables, indexes or data.");

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    PyObject *o_data, *o_idx, *o_cdf, *o_len, *o_off, *o_out, *result = NULL;
    Py_buffer data = {0}, idx = {0}, cdf = {0}, len = {0}, off = {0}, out = {0};
    tableset_t ts = {0};
    decoder_t d = {0};
    status_t st = {0};
    Py_ssize_t n;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOOOO:decode", &o_data, &o_idx, &o_cdf, &o_len, &o_off, &o_out))
        return NULL;
    if (PyObject_GetBuffer(o_data, &data, PyBUF_SIMPLE) < 0 ||
        get_int32(o_idx, &idx, "indexes", 0, 0) < 0 || get_int32(o_cdf, &cdf, "cdf", 2, 0) < 0 ||
        get_int32(o_len, &len, "lengths", 1, 0) < 0 || get_int32(o_off, &off, "offsets", 1, 0) < 0 ||
        get_int32(o_out, &out, "out", 0, 1) < 0)
        goto done;
    n = idx.len / 4;
    if (out.len / 4 != n) {
        PyErr_Format(EntropyCodingError, "out (%zd) and indexes (%zd) differ in length",
                     out.len / 4, n);
        goto done;
    }
    /* The hint tables pay for themselves once there are a few symbols per bucket. */
    if (tableset_init(&ts, &cdf, &len, &off, n / 64 >= cdf.shape[0]) < 0)
        goto done;
    d.data = (const uint8_t *)data.buf;
    d.len = (size_t)data.len;
    Py_BEGIN_ALLOW_THREADS
    decode_loop(&d, (const int32_t *)idx.buf, (int32_t *)out.buf, n, &ts, &st);
    Py_END_ALLOW_THREADS
    if (st.code != OK) {
        raise_status(&st, ts.n_tables);
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }

done:
    tableset_free(&ts);
    if (data.obj) PyBuffer_Release(&data);
    if (idx.obj) PyBuffer_Release(&idx);
    if (cdf.obj) PyBuffer_Release(&cdf);
    if (len.obj) PyBuffer_Release(&len);
    if (off.obj) PyBuffer_Release(&off);
    if (out.obj) PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, encode_doc},
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "edgecodec.entropy._rangecoder",
    "Range coder over 16-bit integer CDF tables (see edgecodec.entropy for the Python API).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__rangecoder(void)
{
    PyObject *m, *errors;
    errors = PyImport_ImportModule("edgecodec.errors");
    if (errors == NULL)
        return NULL;
    EntropyCodingError = PyObject_GetAttrString(errors, "EntropyCodingError");
    Py_DECREF(errors);
    if (EntropyCodingError == NULL)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "FORMAT_VERSION", FORMAT_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "PRECISION", PRECISION) < 0 ||
        PyModule_AddIntConstant(m, "ESCAPE_LENGTH_BITS", ESC_LENGTH_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
