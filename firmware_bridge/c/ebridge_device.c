/*
 * A minimal device built on ebridge.c, for host tests and as a template for a firmware main loop.
 *
 *   ebridge_device TTY [-o DIR] [-t TRIGGER_MS] [-n NAME]
 *
 * Answers HELLO, REQUEST and reliable messages (ACK), reassembles incoming frames, sends a
 * heartbeat every 2 s and, with -t, a TRIGGER every TRIGGER_MS (resent until acknowledged).
 * Reports on stdout, one line each: "frame INDEX BYTES CRC32", "quality Q BPS", "trigger_acked SEQ".
 * With -o, each frame is also written to DIR/frame-INDEX.bin. On a microcontroller the POSIX calls
 * (read, write, poll, clock) become the UART driver and a millisecond tick.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ebridge.h"

static int fd = -1;
static uint8_t frame_buf[65536];
static eb_decoder dec;
static eb_rx rx;
static uint8_t tx_seq;
static const char *name = "ebridge-c";
static uint16_t boot_id;

static uint32_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + (uint32_t)(ts.tv_nsec / 1000000));
}

static void send_msg(uint8_t type, uint8_t flags, uint8_t seq, const uint8_t *payload, size_t len) {
    uint8_t wire[EB_MAX_WIRE];
    size_t n = eb_frame_encode(type, flags, seq, payload, len, wire, sizeof wire), off = 0;
    while (off < n) {
        ssize_t w = write(fd, wire + off, n - off);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return;
        }
        off += (size_t)w;
    }
}

static void send_hello(uint8_t flags) {
    eb_hello h;
    uint8_t p[64];
    memset(&h, 0, sizeof h);
    h.role = 1;
    h.max_payload = EB_MAX_PAYLOAD;
    h.max_frame = sizeof frame_buf;
    h.window = 16;
    h.boot_id = boot_id;
    h.name_len = (uint8_t)strlen(name);
    memcpy(h.name, name, h.name_len);
    send_msg(EB_HELLO, flags, ++tx_seq, p, eb_hello_pack(&h, p, sizeof p));
}

static void send_status(const eb_frame_status *st) {
    uint8_t p[16];
    send_msg(EB_FRAME_STATUS, 0, ++tx_seq, p, eb_frame_status_pack(st, p, sizeof p));
}

/* Reliable TRIGGER, stop-and-wait: resent every 250 ms until the ACK with its seq comes back. */
static uint8_t trig_seq = 0x80, trig_pending;
static uint32_t trig_sent_at, trig_count;

static void send_trigger(void) {
    eb_trigger t = {2, 0, 0};
    uint8_t p[8];
    t.timestamp_ms = now_ms();
    send_msg(EB_TRIGGER, EB_FLAG_REPLY, trig_seq, p, eb_trigger_pack(&t, p, sizeof p));
    trig_sent_at = now_ms();
}

static int last_peer_rseq = -1;
static unsigned frames_done;
static const char *out_dir;

static void handle(const eb_frame *f) {
    uint8_t p[EB_MAX_PAYLOAD];
    eb_frame_status st;
    if (f->type == EB_FRAME_BEGIN) {
        eb_frame_begin m;
        if (eb_frame_begin_unpack(&m, f->payload, f->len) == 0) {
            eb_rx_begin(&rx, &m, f->seq, &st);
            send_status(&st);
        }
        return;
    }
    if (f->type == EB_FRAME_CHUNK) {
        eb_frame_chunk m;
        int r;
        if (eb_frame_chunk_unpack(&m, f->payload, f->len) != 0) return;
        r = eb_rx_chunk(&rx, &m, f->seq, f->flags & EB_FLAG_REPLY, &st);
        if (r & EB_RX_REPLY) send_status(&st);
        if (r & EB_RX_COMPLETE) {
            printf("frame %u %lu %08lx\n", frames_done, (unsigned long)rx.total,
                   (unsigned long)eb_crc32(0, rx.buf, rx.total));
            fflush(stdout);
            if (out_dir) {
                char path[4096];
                FILE *o;
                snprintf(path, sizeof path, "%s/frame-%u.bin", out_dir, frames_done);
                o = fopen(path, "wb");
                if (o) { fwrite(rx.buf, 1, rx.total, o); fclose(o); }
            }
            frames_done++;
        }
        return;
    }
    if (f->type == EB_FRAME_ABORT) {
        eb_frame_abort m;
        if (eb_frame_abort_unpack(&m, f->payload, f->len) == 0) eb_rx_abort(&rx, m.xfer);
        return;
    }
    if (f->type == EB_HELLO) {
        eb_hello h;
        if (eb_hello_unpack(&h, f->payload, f->len) == 0) last_peer_rseq = -1;
        if (f->flags & EB_FLAG_REPLY) send_hello(0);
        return;
    }
    if (f->type == EB_ACK) {
        eb_ack a;
        if (eb_ack_unpack(&a, f->payload, f->len) == 0 && trig_pending && a.seq == trig_seq) {
            trig_pending = 0;
            printf("trigger_acked %u\n", a.seq);
            fflush(stdout);
        }
        return;
    }
    if (f->flags & EB_FLAG_REPLY) { /* a reliable control message: ACK it, act on it once */
        eb_ack a;
        int duplicate = f->seq == last_peer_rseq;
        a.seq = f->seq;
        a.result = EB_ACK_OK;
        last_peer_rseq = f->seq;
        if (f->type == EB_REQUEST) {
            eb_request q;
            if (eb_request_unpack(&q, f->payload, f->len) != 0) a.result = EB_ACK_INVALID;
            else if (q.what == EB_HELLO) send_hello(0);
            else if (q.what == EB_TELEMETRY) {
                eb_telemetry t;
                uint8_t kv[32];
                size_t kv_len = 0;
                eb_kv_put(kv, sizeof kv, &kv_len, "impl", 4, "c", 1);
                t.battery_mv = 3700; t.battery_pct = 80; t.temp_cdeg = 2150; t.kv = kv; t.kv_len = kv_len;
                send_msg(EB_TELEMETRY, 0, ++tx_seq, p, eb_telemetry_pack(&t, p, sizeof p));
            } else if (q.what == EB_STATUS) {
                size_t n = 0;
                eb_kv_put(p, sizeof p, &n, "impl", 4, "c", 1);
                send_msg(EB_STATUS, 0, ++tx_seq, p, n);
            } else a.result = EB_ACK_UNSUPPORTED;
        }
        send_msg(EB_ACK, 0, ++tx_seq, p, eb_ack_pack(&a, p, sizeof p));
        if (duplicate) return;
    }
    if (f->type == EB_SET_QUALITY) {
        eb_set_quality q;
        if (eb_set_quality_unpack(&q, f->payload, f->len) == 0) {
            printf("quality %u %lu\n", q.quality, (unsigned long)q.target_bps);
            fflush(stdout);
        }
    }
}

int main(int argc, char **argv) {
    struct termios tio;
    uint32_t trigger_ms = 0, next_hb, next_trigger = 0;
    int i;
    const char *port = NULL;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out_dir = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) trigger_ms = (uint32_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) name = argv[++i];
        else port = argv[i];
    }
    if (!port) {
        fprintf(stderr, "usage: %s TTY [-o DIR] [-t TRIGGER_MS] [-n NAME]\n", argv[0]);
        return 2;
    }
    fd = open(port, O_RDWR | O_NOCTTY);
    if (fd < 0) {
        perror(port);
        return 1;
    }
    if (tcgetattr(fd, &tio) == 0) {
        /* raw 8-bit bytes: no echo, no line editing, no CR/LF or flow-control translation */
        tio.c_iflag &= (tcflag_t)~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
        tio.c_oflag &= (tcflag_t)~OPOST;
        tio.c_lflag &= (tcflag_t)~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        tio.c_cflag &= (tcflag_t)~(CSIZE | PARENB);
        tio.c_cflag |= CS8;
        tcsetattr(fd, TCSANOW, &tio);
    }
    boot_id = (uint16_t)(now_ms() ^ (uint32_t)getpid());
    eb_decoder_init(&dec);
    eb_rx_init(&rx, frame_buf, sizeof frame_buf, EB_MAX_PAYLOAD - EB_CHUNK_HEADER);
    send_hello(EB_FLAG_REPLY);
    next_hb = now_ms() + 2000;
    if (trigger_ms) next_trigger = now_ms() + trigger_ms;
    for (;;) {
        struct pollfd pfd;
        uint8_t buf[512];
        uint32_t t;
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 20) > 0) {
            ssize_t n = read(fd, buf, sizeof buf), k;
            eb_frame f;
            if (n <= 0 && errno != EINTR && errno != EAGAIN) return 0; /* the other side went away */
            for (k = 0; k < n; k++)
                if (eb_decoder_push(&dec, buf[k], &f) == EB_FRAME) handle(&f);
        }
        t = now_ms();
        if ((int32_t)(t - next_hb) >= 0) {
            eb_heartbeat hb;
            uint8_t p[4];
            hb.uptime_ms = t;
            send_msg(EB_HEARTBEAT, 0, ++tx_seq, p, eb_heartbeat_pack(&hb, p, sizeof p));
            next_hb = t + 2000;
        }
        if (trigger_ms && !trig_pending && (int32_t)(t - next_trigger) >= 0) {
            trig_seq++;
            trig_pending = 1;
            trig_count++;
            send_trigger();
            next_trigger = t + trigger_ms;
        } else if (trig_pending && (int32_t)(t - trig_sent_at) >= 250) {
            send_trigger();
        }
    }
}
