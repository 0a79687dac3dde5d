/*
 * Host unit tests of ebridge.c: replays the shared vectors (test_vectors/vectors.txt, written by
 * `python -m firmware_bridge.vectors`) and runs a few property checks of its own.
 *   ./test_ebridge test_vectors/vectors.txt
 * Prints one line per failure and ends with "N passed, N failed"; exit status 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebridge.h"

static int passed, failed;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            printf("FAIL line %d: ", lineno);              \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

static int lineno;

/* ---- small parsing helpers (test code: libc is fine here) -------------------------------- */

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    if (strcmp(s, "-") == 0) return 0;
    while (s[0] && s[1] && n < cap) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void tohex(const uint8_t *p, size_t n, char *out) {
    size_t i;
    if (n == 0) { strcpy(out, "-"); return; }
    for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static int split(char *line, char **tok, int max) {
    int n = 0;
    char *p = strtok(line, " \r\n");
    while (p && n < max) { tok[n++] = p; p = strtok(NULL, " \r\n"); }
    return n;
}

static uint8_t A[65536], B[65536], C[65536];
static char S[140000], T[140000];

/* ---- message field strings, in the generator's k=v form ---------------------------------- */

static void kv_string(const uint8_t *kv, size_t len, char *out) {
    size_t pos = 0;
    const uint8_t *k, *v;
    uint8_t kl, vl;
    int first = 1, r;
    out[0] = 0;
    while ((r = eb_kv_next(kv, len, &pos, &k, &kl, &v, &vl)) == 1) {
        char *o = out + strlen(out);
        if (!first) *o++ = ';';
        memcpy(o, k, kl); o += kl; *o++ = ':';
        memcpy(o, v, vl); o += vl; *o = 0;
        first = 0;
    }
    if (r < 0) strcpy(out, "<truncated>");
    else if (first) strcpy(out, "-");
}

/* Unpack PAYLOAD as TYPE, print its fields into out, repack into B; return the repacked length. */
static long fields(const char *type, const uint8_t *p, size_t len, char *out) {
    size_t n = 0;
    char hex[2100];
    if (!strcmp(type, "hello")) {
        eb_hello m;
        char name[40];
        if (eb_hello_unpack(&m, p, len)) return -1;
        memcpy(name, m.name, m.name_len); name[m.name_len] = 0;
        sprintf(out, "role=%u,max_payload=%u,max_frame=%lu,window=%u,boot_id=%u,name=%s", m.role, m.max_payload,
                (unsigned long)m.max_frame, m.window, m.boot_id, m.name_len ? name : "-");
        n = eb_hello_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "heartbeat")) {
        eb_heartbeat m;
        if (eb_heartbeat_unpack(&m, p, len)) return -1;
        sprintf(out, "uptime_ms=%lu", (unsigned long)m.uptime_ms);
        n = eb_heartbeat_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "ack")) {
        eb_ack m;
        if (eb_ack_unpack(&m, p, len)) return -1;
        sprintf(out, "seq=%u,result=%u", m.seq, m.result);
        n = eb_ack_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "trigger")) {
        eb_trigger m;
        if (eb_trigger_unpack(&m, p, len)) return -1;
        sprintf(out, "source=%u,channel=%u,timestamp_ms=%lu", m.source, m.channel, (unsigned long)m.timestamp_ms);
        n = eb_trigger_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "set_quality")) {
        eb_set_quality m;
        if (eb_set_quality_unpack(&m, p, len)) return -1;
        sprintf(out, "quality=%u,target_bps=%lu", m.quality, (unsigned long)m.target_bps);
        n = eb_set_quality_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "telemetry")) {
        eb_telemetry m;
        char kv[1100];
        if (eb_telemetry_unpack(&m, p, len)) return -1;
        kv_string(m.kv, m.kv_len, kv);
        sprintf(out, "battery_mv=%u,battery_pct=%u,temp_cdeg=%d,kv=%s", m.battery_mv, m.battery_pct, m.temp_cdeg,
                kv);
        n = eb_telemetry_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "request")) {
        eb_request m;
        if (eb_request_unpack(&m, p, len)) return -1;
        sprintf(out, "what=%u", m.what);
        n = eb_request_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "status")) {
        char kv[1100];
        kv_string(p, len, kv);
        sprintf(out, "kv=%s", kv);
        memcpy(B, p, len);
        n = len;
    } else if (!strcmp(type, "frame_begin")) {
        eb_frame_begin m;
        if (eb_frame_begin_unpack(&m, p, len)) return -1;
        sprintf(out, "xfer=%u,total=%lu,chunk_size=%u,crc=%lu", m.xfer, (unsigned long)m.total, m.chunk_size,
                (unsigned long)m.crc);
        n = eb_frame_begin_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "frame_chunk")) {
        eb_frame_chunk m;
        if (eb_frame_chunk_unpack(&m, p, len)) return -1;
        tohex(m.data, m.len, hex);
        sprintf(out, "xfer=%u,index=%u,data=%s", m.xfer, m.index, hex);
        n = eb_frame_chunk_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "frame_status")) {
        eb_frame_status m;
        if (eb_frame_status_unpack(&m, p, len)) return -1;
        sprintf(out, "xfer=%u,state=%u,echo_seq=%u,next=%u,mask=%lu", m.xfer, m.state, m.echo_seq, m.next,
                (unsigned long)m.mask);
        n = eb_frame_status_pack(&m, B, sizeof B);
    } else if (!strcmp(type, "frame_abort")) {
        eb_frame_abort m;
        if (eb_frame_abort_unpack(&m, p, len)) return -1;
        sprintf(out, "xfer=%u,reason=%u", m.xfer, m.reason);
        n = eb_frame_abort_pack(&m, B, sizeof B);
    } else {
        return -2;
    }
    return (long)n;
}

/* ---- the vector file --------------------------------------------------------------------- */

static const char *err_name(int r) {
    switch (r) {
    case EB_ERR_CRC: return "crc";
    case EB_ERR_COBS: return "cobs";
    case EB_ERR_TOO_SHORT: return "short";
    case EB_ERR_VERSION: return "version";
    case EB_ERR_TOO_LONG: return "long";
    default: return "?";
    }
}

static eb_rx rx;
static uint8_t rxbuf[65536];

static void status_hex(const eb_frame_status *st, char *out) {
    uint8_t p[10];
    tohex(p, eb_frame_status_pack(st, p, sizeof p), out);
}

static void run_vectors(FILE *f) {
    static char line[200000];
    char *tok[16];
    eb_decoder dec;
    eb_frame fr;
    int last_complete = 0;
    while (fgets(line, sizeof line, f)) {
        int nt;
        lineno++;
        if (line[0] == '#' || line[0] == '\n') continue;
        nt = split(line, tok, 16);
        if (nt == 0) continue;
        if (!strcmp(tok[0], "crc32")) {
            size_t n = unhex(tok[1], A, sizeof A);
            unsigned long want = strtoul(tok[2], NULL, 16);
            uint32_t got = eb_crc32(0, A, n), split_got = eb_crc32(eb_crc32(0, A, n / 2), A + n / 2, n - n / 2);
            CHECK(got == want && split_got == want, "crc32 %08lx != %08lx", (unsigned long)got, want);
        } else if (!strcmp(tok[0], "cobs")) {
            size_t n = unhex(tok[1], A, sizeof A), m = unhex(tok[2], B, sizeof B), e;
            int d;
            e = eb_cobs_encode(A, n, C, sizeof C);
            CHECK(e == m && memcmp(C, B, m) == 0, "cobs encode of %zu bytes", n);
            d = eb_cobs_decode(B, m, C, sizeof C);
            CHECK(d == (int)n && memcmp(C, A, n) == 0, "cobs decode of %zu bytes", n);
            if (m > 0) CHECK(eb_cobs_encode(A, n, C, m - 1) == 0, "cobs encode into a short buffer must fail");
        } else if (!strcmp(tok[0], "frame")) {
            unsigned type = (unsigned)atoi(tok[1]), flags = (unsigned)atoi(tok[2]), seq = (unsigned)atoi(tok[3]);
            size_t n = unhex(tok[4], A, sizeof A), m = unhex(tok[5], B, sizeof B), e, i;
            int r = EB_NONE;
            e = eb_frame_encode((uint8_t)type, (uint8_t)flags, (uint8_t)seq, A, n, C, sizeof C);
            CHECK(e == m && memcmp(C, B, m) == 0, "frame encode type %u", type);
            eb_decoder_init(&dec);
            for (i = 0; i < m; i++) r = eb_decoder_push(&dec, B[i], &fr);
            CHECK(r == EB_FRAME && fr.type == type && fr.flags == flags && fr.seq == seq && fr.len == n &&
                      memcmp(fr.payload, A, n) == 0, "frame decode type %u (r=%d)", type, r);
        } else if (!strcmp(tok[0], "bad")) {
            size_t m = unhex(tok[1], B, sizeof B), i;
            int r = EB_NONE, frames = 0, last = EB_NONE;
            eb_decoder_init(&dec);
            for (i = 0; i < m; i++) {
                r = eb_decoder_push(&dec, B[i], &fr);
                if (r == EB_FRAME) frames++;
                if (r != EB_NONE) last = r;
            }
            CHECK(frames == 0 && !strcmp(err_name(last), tok[2]), "bad frame: got %s, want %s", err_name(last), tok[2]);
            /* the decoder is usable again right after */
            m = eb_frame_encode(EB_HEARTBEAT, 0, 1, (const uint8_t *)"abcd", 4, C, sizeof C);
            for (i = 0, r = EB_NONE; i < m; i++) r = eb_decoder_push(&dec, C[i], &fr);
            CHECK(r == EB_FRAME, "decoder resynchronises after a bad frame");
        } else if (!strcmp(tok[0], "stream")) {
            size_t m = unhex(tok[2], B, sizeof B), i;
            int want = atoi(tok[3]), got = 0;
            char seqs[2000] = "";
            eb_decoder_init(&dec);
            for (i = 0; i < m; i++) {
                if (eb_decoder_push(&dec, B[i], &fr) == EB_FRAME) {
                    sprintf(seqs + strlen(seqs), "%s%u", got ? "," : "", fr.seq);
                    got++;
                }
            }
            if (!got) strcpy(seqs, "-");
            CHECK(got == want && !strcmp(seqs, tok[4]), "stream: %d frames (%s), want %d (%s)", got, seqs, want,
                  tok[4]);
        } else if (!strcmp(tok[0], "msg")) {
            size_t n = unhex(tok[2], A, sizeof A);
            long r = fields(tok[1], A, n, S);
            CHECK(r >= 0 && !strcmp(S, tok[3]), "msg %s fields: %s != %s", tok[1], S, tok[3]);
            CHECK(r == (long)n && memcmp(A, B, n) == 0, "msg %s repack", tok[1]);
        } else if (!strcmp(tok[0], "rxinit")) {
            eb_rx_init(&rx, rxbuf, (uint32_t)atol(tok[1]), (uint16_t)atoi(tok[2]));
        } else if (!strcmp(tok[0], "rxbegin")) {
            eb_frame_begin m;
            eb_frame_status st;
            m.xfer = (uint16_t)atoi(tok[2]);
            m.total = (uint32_t)atol(tok[3]);
            m.chunk_size = (uint16_t)atoi(tok[4]);
            m.crc = (uint32_t)strtoul(tok[5], NULL, 16);
            eb_rx_begin(&rx, &m, (uint8_t)atoi(tok[1]), &st);
            status_hex(&st, S);
            CHECK(!strcmp(S, tok[6]), "rxbegin status %s, want %s", S, tok[6]);
        } else if (!strcmp(tok[0], "rxchunk")) {
            eb_frame_chunk m;
            eb_frame_status st;
            int r;
            m.xfer = (uint16_t)atoi(tok[3]);
            m.index = (uint16_t)atoi(tok[4]);
            m.len = unhex(tok[5], A, sizeof A);
            m.data = A;
            r = eb_rx_chunk(&rx, &m, (uint8_t)atoi(tok[1]), atoi(tok[2]), &st);
            if (r & EB_RX_REPLY) status_hex(&st, S); else strcpy(S, "-");
            CHECK(!strcmp(S, tok[6]), "rxchunk %s status %s, want %s", tok[4], S, tok[6]);
            last_complete = (r & EB_RX_COMPLETE) != 0;
            CHECK(last_complete == atoi(tok[7]), "rxchunk %s complete=%d", tok[4], last_complete);
        } else if (!strcmp(tok[0], "rxframe")) {
            size_t n = unhex(tok[1], A, sizeof A);
            CHECK(last_complete && rx.total == n && memcmp(rx.buf, A, n) == 0, "reassembled frame differs");
        } else if (!strcmp(tok[0], "rxabort")) {
            eb_rx_abort(&rx, (uint16_t)atoi(tok[1]));
        } else {
            CHECK(0, "unknown record %s", tok[0]);
        }
    }
}

/* ---- properties -------------------------------------------------------------------------- */

static uint32_t lcg = 12345;
static uint8_t rnd(void) { lcg = lcg * 1103515245u + 12345u; return (uint8_t)(lcg >> 16); }

static void test_every_payload_size_round_trips(void) {
    eb_decoder dec;
    eb_frame fr;
    size_t len, i, m;
    int ok = 1;
    lineno = 0;
    eb_decoder_init(&dec);
    for (len = 0; len <= EB_MAX_PAYLOAD; len++) {
        int r = EB_NONE;
        for (i = 0; i < len; i++) A[i] = (len & 1) ? rnd() : (uint8_t)(i % 3 ? 0 : 7); /* zero-heavy half */
        m = eb_frame_encode(EB_STATUS, 0, (uint8_t)len, A, len, B, sizeof B);
        if (m == 0 || m > EB_MAX_WIRE) { ok = 0; break; }
        for (i = 0; i < m; i++) r = eb_decoder_push(&dec, B[i], &fr);
        if (r != EB_FRAME || fr.len != len || memcmp(fr.payload, A, len) != 0) { ok = 0; break; }
    }
    CHECK(ok, "payload of %zu bytes did not round-trip within EB_MAX_WIRE", len);
    CHECK(eb_frame_encode(EB_STATUS, 0, 0, A, EB_MAX_PAYLOAD + 1, B, sizeof B) == 0, "oversized payload accepted");
}

static void test_garbage_never_yields_a_frame_and_decoder_recovers(void) {
    eb_decoder dec;
    eb_frame fr;
    size_t i, m;
    int bogus = 0, r = EB_NONE;
    eb_decoder_init(&dec);
    for (i = 0; i < 200000; i++)
        if (eb_decoder_push(&dec, rnd(), &fr) == EB_FRAME) bogus++;
    CHECK(bogus == 0, "%d frames decoded from random bytes", bogus);
    m = eb_frame_encode(EB_TRIGGER, EB_FLAG_REPLY, 9, (const uint8_t *)"\x01\x00\x00\x00\x00\x00", 6, B, sizeof B);
    eb_decoder_push(&dec, 0, &fr); /* a sender may lead with a delimiter to end the garbage */
    for (i = 0; i < m; i++) r = eb_decoder_push(&dec, B[i], &fr);
    CHECK(r == EB_FRAME && fr.type == EB_TRIGGER && fr.seq == 9, "no frame after garbage");
}

static void test_receiver_rejects_more_chunks_than_its_bitmap(void) {
    eb_frame_begin m = {1, 0, 1, 0};
    eb_frame_status st;
    eb_rx_init(&rx, rxbuf, sizeof rxbuf, 256);
    m.total = EB_MAX_CHUNKS + 1;
    eb_rx_begin(&rx, &m, 0, &st);
    CHECK(st.state == EB_XFER_TOO_LARGE, "a frame needing %d chunks was accepted", EB_MAX_CHUNKS + 1);
}

int main(int argc, char **argv) {
    FILE *f;
    if (argc != 2) {
        fprintf(stderr, "usage: %s test_vectors/vectors.txt\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    run_vectors(f);
    fclose(f);
    test_every_payload_size_round_trips();
    test_garbage_never_yields_a_frame_and_decoder_recovers();
    test_receiver_rejects_more_chunks_than_its_bitmap();
    (void)T;
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
