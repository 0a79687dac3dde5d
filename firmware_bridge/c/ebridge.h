/*
 * ebridge: the microcontroller side of the edgecodec firmware bridge (PROTOCOL.md).
 *
 * Framing (COBS + CRC-32 + version), message packing, and the receiver of chunked frame
 * transfers. Portable C99: no dynamic allocation, fixed buffers sized by the macros below, and
 * nothing from libc but memcpy and memset. Not thread-safe: use one eb_decoder and one eb_rx per
 * link, from one context (e.g. the main loop, fed from a UART ring buffer).
 */
#ifndef EBRIDGE_H
#define EBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest payload this build accepts (>= 64; the protocol maximum is 1024). A FRAME_CHUNK
 * carries EB_MAX_PAYLOAD - 4 data bytes at most. */
#ifndef EB_MAX_PAYLOAD
#define EB_MAX_PAYLOAD 260
#endif
/* Most chunks one incoming frame may have (the receiver keeps one bit per chunk). */
#ifndef EB_MAX_CHUNKS
#define EB_MAX_CHUNKS 1024
#endif

#define EB_VERSION 1
#define EB_HEADER_SIZE 4
#define EB_CRC_SIZE 4
#define EB_MIN_PAYLOAD 64
#define EB_PROTOCOL_MAX_PAYLOAD 1024
#define EB_MAX_RAW (EB_HEADER_SIZE + EB_MAX_PAYLOAD + EB_CRC_SIZE)
/* COBS adds one code byte per started 254-byte run; the wire adds the 0x00 delimiter. */
#define EB_MAX_ENCODED (EB_MAX_RAW + EB_MAX_RAW / 254 + 1)
#define EB_MAX_WIRE (EB_MAX_ENCODED + 1)
#define EB_CHUNK_HEADER 4
#define EB_MASK_BITS 32

#define EB_FLAG_REPLY 0x01

enum eb_type {
    EB_HELLO = 0x01,
    EB_HEARTBEAT = 0x02,
    EB_ACK = 0x03,
    EB_TRIGGER = 0x04,
    EB_SET_QUALITY = 0x05,
    EB_TELEMETRY = 0x06,
    EB_REQUEST = 0x07,
    EB_STATUS = 0x08,
    EB_FRAME_BEGIN = 0x10,
    EB_FRAME_CHUNK = 0x11,
    EB_FRAME_STATUS = 0x12,
    EB_FRAME_ABORT = 0x13
};

enum eb_ack_result { EB_ACK_OK = 0, EB_ACK_UNSUPPORTED = 1, EB_ACK_INVALID = 2, EB_ACK_BUSY = 3 };

enum eb_xfer_state {
    EB_XFER_RECEIVING = 0,
    EB_XFER_COMPLETE = 1,
    EB_XFER_UNKNOWN = 2,
    EB_XFER_TOO_LARGE = 3,
    EB_XFER_BAD_PARAMS = 4,
    EB_XFER_CRC_MISMATCH = 5
};

/* Results of eb_decoder_push and of the unpack functions. */
enum eb_result {
    EB_NONE = 0,        /* no complete frame yet */
    EB_FRAME = 1,       /* a valid frame is in *out */
    EB_ERR_CRC = -1,
    EB_ERR_COBS = -2,
    EB_ERR_TOO_LONG = -3,
    EB_ERR_TOO_SHORT = -4,
    EB_ERR_VERSION = -5,
    EB_ERR_PARAM = -6   /* bad argument or a payload too short for its message */
};

/* ---- CRC and COBS ------------------------------------------------------------------------ */

/* CRC-32/ISO-HDLC (zlib's crc32): pass 0 to start, the previous result to continue. */
uint32_t eb_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS-encode len bytes into dst (no delimiter); return the encoded length, 0 if cap is too small. */
size_t eb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* Decode; return the decoded length, or EB_ERR_COBS / EB_ERR_TOO_LONG. */
int eb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* ---- frames ------------------------------------------------------------------------------ */

typedef struct {
    uint8_t version, type, flags, seq;
    const uint8_t *payload; /* points into the decoder; valid until its next push */
    size_t len;
} eb_frame;

/* Write one complete frame (COBS, trailing 0x00) to out; return its length, 0 on error. */
size_t eb_frame_encode(uint8_t type, uint8_t flags, uint8_t seq, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap);

typedef struct {
    uint8_t enc[EB_MAX_ENCODED];
    uint8_t raw[EB_MAX_RAW];
    size_t enc_len;
    uint8_t overflow;
    uint32_t frames, crc_errors, cobs_errors, too_long, too_short, bad_version;
} eb_decoder;

void eb_decoder_init(eb_decoder *d);
/* Feed one received byte. EB_FRAME: *out holds a valid frame. Negative: a frame was dropped
 * (garbage, corruption); decoding resumes at the next delimiter by itself. */
int eb_decoder_push(eb_decoder *d, uint8_t byte, eb_frame *out);

/* ---- messages (little-endian; see PROTOCOL.md section 3) -------------------------------- */

typedef struct {
    uint8_t role; /* 0 host, 1 device */
    uint16_t max_payload;
    uint32_t max_frame;
    uint8_t window;
    uint16_t boot_id;
    uint8_t name_len;
    char name[32]; /* not NUL-terminated: name_len bytes */
} eb_hello;

typedef struct { uint32_t uptime_ms; } eb_heartbeat;
typedef struct { uint8_t seq, result; } eb_ack;
typedef struct { uint8_t source, channel; uint32_t timestamp_ms; } eb_trigger;
#define EB_QUALITY_UNCHANGED 0xFF /* eb_set_quality.quality: keep the current quality */
typedef struct { uint8_t quality; uint32_t target_bps; } eb_set_quality;
typedef struct {
    uint16_t battery_mv;    /* 0xFFFF: unknown */
    uint8_t battery_pct;    /* 0xFF: unknown */
    int16_t temp_cdeg;      /* hundredths of a degree C; -32768: unknown */
    const uint8_t *kv;      /* key/value items, walk them with eb_kv_next */
    size_t kv_len;
} eb_telemetry;
typedef struct { uint8_t what; } eb_request;
typedef struct { uint16_t xfer; uint32_t total; uint16_t chunk_size; uint32_t crc; } eb_frame_begin;
typedef struct { uint16_t xfer, index; const uint8_t *data; size_t len; } eb_frame_chunk;
typedef struct { uint16_t xfer; uint8_t state, echo_seq; uint16_t next; uint32_t mask; } eb_frame_status;
typedef struct { uint16_t xfer; uint8_t reason; } eb_frame_abort;

/* pack: return the payload length written to out (0 if cap is too small).
 * unpack: return 0, or EB_ERR_PARAM if the payload is too short. Pointers (kv, data) point into p. */
size_t eb_hello_pack(const eb_hello *m, uint8_t *out, size_t cap);
int eb_hello_unpack(eb_hello *m, const uint8_t *p, size_t len);
size_t eb_heartbeat_pack(const eb_heartbeat *m, uint8_t *out, size_t cap);
int eb_heartbeat_unpack(eb_heartbeat *m, const uint8_t *p, size_t len);
size_t eb_ack_pack(const eb_ack *m, uint8_t *out, size_t cap);
int eb_ack_unpack(eb_ack *m, const uint8_t *p, size_t len);
size_t eb_trigger_pack(const eb_trigger *m, uint8_t *out, size_t cap);
int eb_trigger_unpack(eb_trigger *m, const uint8_t *p, size_t len);
size_t eb_set_quality_pack(const eb_set_quality *m, uint8_t *out, size_t cap);
int eb_set_quality_unpack(eb_set_quality *m, const uint8_t *p, size_t len);
size_t eb_telemetry_pack(const eb_telemetry *m, uint8_t *out, size_t cap);
int eb_telemetry_unpack(eb_telemetry *m, const uint8_t *p, size_t len);
size_t eb_request_pack(const eb_request *m, uint8_t *out, size_t cap);
int eb_request_unpack(eb_request *m, const uint8_t *p, size_t len);
size_t eb_frame_begin_pack(const eb_frame_begin *m, uint8_t *out, size_t cap);
int eb_frame_begin_unpack(eb_frame_begin *m, const uint8_t *p, size_t len);
size_t eb_frame_chunk_pack(const eb_frame_chunk *m, uint8_t *out, size_t cap);
int eb_frame_chunk_unpack(eb_frame_chunk *m, const uint8_t *p, size_t len);
size_t eb_frame_status_pack(const eb_frame_status *m, uint8_t *out, size_t cap);
int eb_frame_status_unpack(eb_frame_status *m, const uint8_t *p, size_t len);
size_t eb_frame_abort_pack(const eb_frame_abort *m, uint8_t *out, size_t cap);
int eb_frame_abort_unpack(eb_frame_abort *m, const uint8_t *p, size_t len);

/* Append one key/value item (STATUS payloads, TELEMETRY's tail) at out[*pos]; 0 or EB_ERR_PARAM. */
int eb_kv_put(uint8_t *out, size_t cap, size_t *pos, const char *key, size_t key_len, const char *value,
              size_t value_len);
/* Walk items: start with *pos = 0; return 1 and set the pointers per item, 0 at the end,
 * EB_ERR_PARAM if the list is truncated. */
int eb_kv_next(const uint8_t *kv, size_t len, size_t *pos, const uint8_t **key, uint8_t *key_len,
               const uint8_t **value, uint8_t *value_len);

/* ---- receiving a chunked frame ---------------------------------------------------------- */

typedef struct {
    uint8_t *buf;        /* the application's reassembly buffer */
    uint32_t cap;        /* its size: the max_frame this side announces */
    uint16_t max_chunk;  /* largest chunk accepted: EB_MAX_PAYLOAD - EB_CHUNK_HEADER at most */
    uint8_t active;
    uint16_t xfer, chunk_size, n, next, count;
    uint32_t total, crc;
    uint8_t have[(EB_MAX_CHUNKS + 7) / 8];
    uint8_t done_valid;  /* the last completed transfer, to answer repeats without redelivering */
    uint16_t done_xfer, done_chunk;
    uint32_t done_total, done_crc;
    uint32_t frames, crc_mismatch, bad_chunks, duplicate_chunks;
} eb_rx;

#define EB_RX_REPLY 1    /* send *st as a FRAME_STATUS */
#define EB_RX_COMPLETE 2 /* buf[0 .. total) holds the whole frame, CRC checked */

void eb_rx_init(eb_rx *rx, uint8_t *buf, uint32_t cap, uint16_t max_chunk);
/* FRAME_BEGIN: start or resume; always answered (*st). */
void eb_rx_begin(eb_rx *rx, const eb_frame_begin *m, uint8_t seq, eb_frame_status *st);
/* FRAME_CHUNK: store it; returns EB_RX_* flags. reply: the frame had EB_FLAG_REPLY. */
int eb_rx_chunk(eb_rx *rx, const eb_frame_chunk *m, uint8_t seq, int reply, eb_frame_status *st);
void eb_rx_abort(eb_rx *rx, uint16_t xfer);

#ifdef __cplusplus
}
#endif
#endif /* EBRIDGE_H */
