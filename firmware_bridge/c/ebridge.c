/* ebridge.c: framing, messages and frame reassembly of the firmware bridge. See ebridge.h. */
#include "ebridge.h"

#include <string.h> /* memcpy, memset: the only libc functions used */

#if EB_MAX_PAYLOAD < EB_MIN_PAYLOAD || EB_MAX_PAYLOAD > EB_PROTOCOL_MAX_PAYLOAD
#error "EB_MAX_PAYLOAD must be between 64 and 1024"
#endif

/* ---- little-endian helpers --------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- CRC-32 ------------------------------------------------------------------------------ */

/* Reflected polynomial 0xEDB88320, four bits at a time: a 64-byte table, small for flash. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t eb_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    while (len--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* ---- COBS -------------------------------------------------------------------------------- */

size_t eb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    size_t out = 1, code_at = 0, i;
    uint8_t code = 1;
    if (cap < 1) return 0;
    for (i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_at] = code; /* a block ends at a zero: its code counts the bytes + 1 */
            code_at = out++;
            code = 1;
            if (out > cap) return 0;
            continue;
        }
        if (out >= cap) return 0;
        dst[out++] = src[i];
        if (++code == 0xFF) { /* 254 data bytes: a full block, no zero implied */
            dst[code_at] = code;
            code_at = out++;
            code = 1;
            if (out > cap) return 0;
        }
    }
    dst[code_at] = code; /* the last block's code is always written, even for an empty block */
    return out;
}

int eb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    size_t i = 0, out = 0;
    if (len == 0) return EB_ERR_COBS;
    while (i < len) {
        uint8_t code = src[i];
        size_t end = i + code, j;
        if (code == 0 || end > len) return EB_ERR_COBS;
        for (j = i + 1; j < end; j++) {
            if (src[j] == 0) return EB_ERR_COBS;
            if (out >= cap) return EB_ERR_TOO_LONG;
            dst[out++] = src[j];
        }
        i = end;
        if (code != 0xFF && i < len) {
            if (out >= cap) return EB_ERR_TOO_LONG;
            dst[out++] = 0;
        }
    }
    return (int)out;
}

/* ---- frames ------------------------------------------------------------------------------ */

size_t eb_frame_encode(uint8_t type, uint8_t flags, uint8_t seq, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap) {
    uint8_t raw[EB_MAX_RAW];
    size_t n;
    if (len > EB_MAX_PAYLOAD || (len && !payload)) return 0;
    raw[0] = EB_VERSION; raw[1] = type; raw[2] = flags; raw[3] = seq;
    if (len) memcpy(raw + EB_HEADER_SIZE, payload, len);
    put32(raw + EB_HEADER_SIZE + len, eb_crc32(0, raw, EB_HEADER_SIZE + len));
    if (cap < 1) return 0;
    n = eb_cobs_encode(raw, EB_HEADER_SIZE + len + EB_CRC_SIZE, out, cap - 1);
    if (n == 0) return 0;
    out[n] = 0;
    return n + 1;
}

void eb_decoder_init(eb_decoder *d) { memset(d, 0, sizeof *d); }

int eb_decoder_push(eb_decoder *d, uint8_t byte, eb_frame *out) {
    int n;
    if (byte != 0) {
        if (d->overflow) return EB_NONE;
        if (d->enc_len >= sizeof d->enc) { /* longer than any frame we accept: skip to the next 0 */
            d->overflow = 1;
            d->enc_len = 0;
            return EB_NONE;
        }
        d->enc[d->enc_len++] = byte;
        return EB_NONE;
    }
    if (d->overflow) {
        d->overflow = 0;
        d->too_long++;
        return EB_ERR_TOO_LONG;
    }
    if (d->enc_len == 0) return EB_NONE; /* idle fill between frames */
    n = eb_cobs_decode(d->enc, d->enc_len, d->raw, sizeof d->raw);
    d->enc_len = 0;
    if (n == EB_ERR_TOO_LONG) { d->too_long++; return EB_ERR_TOO_LONG; }
    if (n < 0) { d->cobs_errors++; return EB_ERR_COBS; }
    if (n < EB_HEADER_SIZE + EB_CRC_SIZE) { d->too_short++; return EB_ERR_TOO_SHORT; }
    if (eb_crc32(0, d->raw, (size_t)n - EB_CRC_SIZE) != get32(d->raw + n - EB_CRC_SIZE)) {
        d->crc_errors++;
        return EB_ERR_CRC;
    }
    if (d->raw[0] != EB_VERSION) { d->bad_version++; return EB_ERR_VERSION; }
    out->version = d->raw[0];
    out->type = d->raw[1];
    out->flags = d->raw[2];
    out->seq = d->raw[3];
    out->payload = d->raw + EB_HEADER_SIZE;
    out->len = (size_t)n - EB_HEADER_SIZE - EB_CRC_SIZE;
    d->frames++;
    return EB_FRAME;
}

/* ---- messages ---------------------------------------------------------------------------- */

#define NEED(n) do { if (len < (n)) return EB_ERR_PARAM; } while (0)
#define ROOM(n) do { if (cap < (n)) return 0; } while (0)

size_t eb_hello_pack(const eb_hello *m, uint8_t *out, size_t cap) {
    size_t name_len = m->name_len > 32 ? 32 : m->name_len;
    ROOM(10 + name_len);
    out[0] = m->role; put16(out + 1, m->max_payload); put32(out + 3, m->max_frame);
    out[7] = m->window; put16(out + 8, m->boot_id);
    if (name_len) memcpy(out + 10, m->name, name_len);
    return 10 + name_len;
}
int eb_hello_unpack(eb_hello *m, const uint8_t *p, size_t len) {
    NEED(10);
    m->role = p[0]; m->max_payload = get16(p + 1); m->max_frame = get32(p + 3);
    m->window = p[7]; m->boot_id = get16(p + 8);
    m->name_len = (uint8_t)(len - 10 > 32 ? 32 : len - 10);
    if (m->name_len) memcpy(m->name, p + 10, m->name_len);
    return 0;
}

size_t eb_heartbeat_pack(const eb_heartbeat *m, uint8_t *out, size_t cap) {
    ROOM(4); put32(out, m->uptime_ms); return 4;
}
int eb_heartbeat_unpack(eb_heartbeat *m, const uint8_t *p, size_t len) {
    NEED(4); m->uptime_ms = get32(p); return 0;
}

size_t eb_ack_pack(const eb_ack *m, uint8_t *out, size_t cap) {
    ROOM(2); out[0] = m->seq; out[1] = m->result; return 2;
}
int eb_ack_unpack(eb_ack *m, const uint8_t *p, size_t len) {
    NEED(2); m->seq = p[0]; m->result = p[1]; return 0;
}

size_t eb_trigger_pack(const eb_trigger *m, uint8_t *out, size_t cap) {
    ROOM(6); out[0] = m->source; out[1] = m->channel; put32(out + 2, m->timestamp_ms); return 6;
}
int eb_trigger_unpack(eb_trigger *m, const uint8_t *p, size_t len) {
    NEED(6); m->source = p[0]; m->channel = p[1]; m->timestamp_ms = get32(p + 2); return 0;
}

size_t eb_set_quality_pack(const eb_set_quality *m, uint8_t *out, size_t cap) {
    ROOM(5); out[0] = m->quality; put32(out + 1, m->target_bps); return 5;
}
int eb_set_quality_unpack(eb_set_quality *m, const uint8_t *p, size_t len) {
    NEED(5); m->quality = p[0]; m->target_bps = get32(p + 1); return 0;
}

size_t eb_telemetry_pack(const eb_telemetry *m, uint8_t *out, size_t cap) {
    ROOM(5 + m->kv_len);
    put16(out, m->battery_mv); out[2] = m->battery_pct; put16(out + 3, (uint16_t)m->temp_cdeg);
    if (m->kv_len) memcpy(out + 5, m->kv, m->kv_len);
    return 5 + m->kv_len;
}
int eb_telemetry_unpack(eb_telemetry *m, const uint8_t *p, size_t len) {
    NEED(5);
    m->battery_mv = get16(p); m->battery_pct = p[2]; m->temp_cdeg = (int16_t)get16(p + 3);
    m->kv = p + 5; m->kv_len = len - 5;
    return 0;
}

size_t eb_request_pack(const eb_request *m, uint8_t *out, size_t cap) {
    ROOM(1); out[0] = m->what; return 1;
}
int eb_request_unpack(eb_request *m, const uint8_t *p, size_t len) {
    NEED(1); m->what = p[0]; return 0;
}

size_t eb_frame_begin_pack(const eb_frame_begin *m, uint8_t *out, size_t cap) {
    ROOM(12);
    put16(out, m->xfer); put32(out + 2, m->total); put16(out + 6, m->chunk_size); put32(out + 8, m->crc);
    return 12;
}
int eb_frame_begin_unpack(eb_frame_begin *m, const uint8_t *p, size_t len) {
    NEED(12);
    m->xfer = get16(p); m->total = get32(p + 2); m->chunk_size = get16(p + 6); m->crc = get32(p + 8);
    return 0;
}

size_t eb_frame_chunk_pack(const eb_frame_chunk *m, uint8_t *out, size_t cap) {
    ROOM(EB_CHUNK_HEADER + m->len);
    put16(out, m->xfer); put16(out + 2, m->index);
    if (m->len) memcpy(out + EB_CHUNK_HEADER, m->data, m->len);
    return EB_CHUNK_HEADER + m->len;
}
int eb_frame_chunk_unpack(eb_frame_chunk *m, const uint8_t *p, size_t len) {
    NEED(EB_CHUNK_HEADER);
    m->xfer = get16(p); m->index = get16(p + 2); m->data = p + EB_CHUNK_HEADER; m->len = len - EB_CHUNK_HEADER;
    return 0;
}

size_t eb_frame_status_pack(const eb_frame_status *m, uint8_t *out, size_t cap) {
    ROOM(10);
    put16(out, m->xfer); out[2] = m->state; out[3] = m->echo_seq; put16(out + 4, m->next); put32(out + 6, m->mask);
    return 10;
}
int eb_frame_status_unpack(eb_frame_status *m, const uint8_t *p, size_t len) {
    NEED(10);
    m->xfer = get16(p); m->state = p[2]; m->echo_seq = p[3]; m->next = get16(p + 4); m->mask = get32(p + 6);
    return 0;
}

size_t eb_frame_abort_pack(const eb_frame_abort *m, uint8_t *out, size_t cap) {
    ROOM(3); put16(out, m->xfer); out[2] = m->reason; return 3;
}
int eb_frame_abort_unpack(eb_frame_abort *m, const uint8_t *p, size_t len) {
    NEED(3); m->xfer = get16(p); m->reason = p[2]; return 0;
}

int eb_kv_put(uint8_t *out, size_t cap, size_t *pos, const char *key, size_t key_len, const char *value,
              size_t value_len) {
    if (key_len < 1 || key_len > 255 || value_len > 255 || *pos + 2 + key_len + value_len > cap)
        return EB_ERR_PARAM;
    out[(*pos)++] = (uint8_t)key_len;
    memcpy(out + *pos, key, key_len);
    *pos += key_len;
    out[(*pos)++] = (uint8_t)value_len;
    if (value_len) memcpy(out + *pos, value, value_len);
    *pos += value_len;
    return 0;
}

int eb_kv_next(const uint8_t *kv, size_t len, size_t *pos, const uint8_t **key, uint8_t *key_len,
               const uint8_t **value, uint8_t *value_len) {
    size_t i = *pos;
    if (i >= len) return 0;
    if (kv[i] == 0 || i + 2 + kv[i] > len) return EB_ERR_PARAM;
    *key_len = kv[i];
    *key = kv + i + 1;
    *value_len = kv[i + 1 + kv[i]];
    *value = kv + i + 2 + kv[i];
    if (i + 2 + (size_t)*key_len + *value_len > len) return EB_ERR_PARAM;
    *pos = i + 2 + (size_t)*key_len + *value_len;
    return 1;
}

/* ---- frame reassembly -------------------------------------------------------------------- */

void eb_rx_init(eb_rx *rx, uint8_t *buf, uint32_t cap, uint16_t max_chunk) {
    memset(rx, 0, sizeof *rx);
    rx->buf = buf;
    rx->cap = cap;
    rx->max_chunk = max_chunk > EB_MAX_PAYLOAD - EB_CHUNK_HEADER ? EB_MAX_PAYLOAD - EB_CHUNK_HEADER : max_chunk;
}

static int have(const eb_rx *rx, uint32_t i) { return (rx->have[i >> 3] >> (i & 7)) & 1; }

static void status(const eb_rx *rx, uint16_t xfer, uint8_t state, uint8_t seq, eb_frame_status *st) {
    uint32_t bit;
    st->xfer = xfer;
    st->state = state;
    st->echo_seq = seq;
    st->next = state == EB_XFER_COMPLETE ? 0xFFFF : 0;
    st->mask = 0;
    if (state != EB_XFER_RECEIVING || !rx->active) return;
    st->next = rx->next;
    for (bit = 0; bit < EB_MASK_BITS; bit++) {
        uint32_t i = (uint32_t)rx->next + 1 + bit;
        if (i >= rx->n) break;
        if (have(rx, i)) st->mask |= (uint32_t)1 << bit;
    }
}

void eb_rx_begin(eb_rx *rx, const eb_frame_begin *m, uint8_t seq, eb_frame_status *st) {
    uint32_t n;
    if (rx->active && rx->xfer == m->xfer && rx->total == m->total && rx->chunk_size == m->chunk_size &&
        rx->crc == m->crc) {
        status(rx, m->xfer, EB_XFER_RECEIVING, seq, st); /* resume: report what we have */
        return;
    }
    if (rx->done_valid && rx->done_xfer == m->xfer && rx->done_total == m->total &&
        rx->done_chunk == m->chunk_size && rx->done_crc == m->crc) {
        status(rx, m->xfer, EB_XFER_COMPLETE, seq, st); /* already delivered */
        return;
    }
    if (m->total > rx->cap) {
        status(rx, m->xfer, EB_XFER_TOO_LARGE, seq, st);
        return;
    }
    if (m->total == 0 || m->chunk_size < 1 || m->chunk_size > rx->max_chunk) {
        status(rx, m->xfer, EB_XFER_BAD_PARAMS, seq, st);
        return;
    }
    n = (m->total + m->chunk_size - 1) / m->chunk_size;
    if (n > EB_MAX_CHUNKS) {
        status(rx, m->xfer, EB_XFER_TOO_LARGE, seq, st);
        return;
    }
    rx->active = 1;
    rx->xfer = m->xfer;
    rx->total = m->total;
    rx->chunk_size = m->chunk_size;
    rx->crc = m->crc;
    rx->n = (uint16_t)n;
    rx->next = 0;
    rx->count = 0;
    memset(rx->have, 0, sizeof rx->have);
    status(rx, m->xfer, EB_XFER_RECEIVING, seq, st);
}

int eb_rx_chunk(eb_rx *rx, const eb_frame_chunk *m, uint8_t seq, int reply, eb_frame_status *st) {
    uint32_t offset, expected;
    if (!rx->active || rx->xfer != m->xfer) {
        status(rx, m->xfer, rx->done_valid && rx->done_xfer == m->xfer ? EB_XFER_COMPLETE : EB_XFER_UNKNOWN,
               seq, st);
        return reply ? EB_RX_REPLY : 0;
    }
    offset = (uint32_t)m->index * rx->chunk_size;
    expected = m->index < rx->n ? (rx->total - offset < rx->chunk_size ? rx->total - offset : rx->chunk_size) : 0;
    if (m->index >= rx->n || m->len != expected) {
        rx->bad_chunks++;
    } else if (have(rx, m->index)) {
        rx->duplicate_chunks++;
    } else {
        memcpy(rx->buf + offset, m->data, m->len);
        rx->have[m->index >> 3] |= (uint8_t)(1u << (m->index & 7));
        rx->count++;
        while (rx->next < rx->n && have(rx, rx->next)) rx->next++;
        if (rx->count == rx->n) {
            rx->active = 0;
            if (eb_crc32(0, rx->buf, rx->total) != rx->crc) {
                rx->crc_mismatch++;
                status(rx, m->xfer, EB_XFER_CRC_MISMATCH, seq, st);
                return EB_RX_REPLY;
            }
            rx->done_valid = 1;
            rx->done_xfer = rx->xfer;
            rx->done_total = rx->total;
            rx->done_chunk = rx->chunk_size;
            rx->done_crc = rx->crc;
            rx->frames++;
            status(rx, m->xfer, EB_XFER_COMPLETE, seq, st);
            return EB_RX_REPLY | EB_RX_COMPLETE;
        }
    }
    status(rx, m->xfer, EB_XFER_RECEIVING, seq, st);
    return reply ? EB_RX_REPLY : 0;
}

void eb_rx_abort(eb_rx *rx, uint16_t xfer) {
    if (rx->active && rx->xfer == xfer) rx->active = 0;
}
