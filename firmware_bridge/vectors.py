"""Write the shared test vectors that the Python and C implementations must both reproduce.

    python -m firmware_bridge.vectors            # rewrite firmware_bridge/c/test_vectors/vectors.txt
    python -m firmware_bridge.vectors --check    # exit 1 if the file differs from what this writes

One record per line, fields separated by single spaces, byte strings in lowercase hex ("-" for
empty); ``#`` starts a comment. Records:

    crc32 DATA CRC                          eb_crc32(0, DATA) == CRC (8 hex digits)
    cobs RAW ENCODED                        COBS encoding, both ways
    frame TYPE FLAGS SEQ PAYLOAD WIRE       encode_frame(...) == WIRE (delimiter included), and back
    bad WIRE ERROR                          decoding WIRE yields no frame; ERROR: crc|cobs|short|version|long
    stream MAXPAYLOAD BYTES N SEQS          a byte stream with garbage: exactly N valid frames, seqs listed
    msg TYPE PAYLOAD FIELDS                 unpack(PAYLOAD) gives FIELDS (k=v,k=v); pack(FIELDS) == PAYLOAD
    rxinit CAP MAXCHUNK                     a fresh receiver
    rxbegin SEQ XFER TOTAL CHUNK CRC STATUS a FRAME_BEGIN; STATUS: the FRAME_STATUS payload it answers
    rxchunk SEQ REPLY XFER INDEX DATA STATUS COMPLETE   STATUS "-" when nothing is answered; COMPLETE 0|1
    rxframe DATA                            the frame the receiver just completed, bit-exact
    rxabort XFER                            a FRAME_ABORT
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import random
import sys

from firmware_bridge import framing
from firmware_bridge.framing import FLAG_REPLY, cobs_encode, crc32, encode_frame
from firmware_bridge.messages import (Ack, FrameAbort, FrameBegin, FrameChunk, FrameStatus, Heartbeat, Hello,
                                      MsgType, Request, SetQuality, Status, Telemetry, Trigger)
from firmware_bridge.transfer import FrameReceiver

DEFAULT_PATH = pathlib.Path(__file__).parent / "c" / "test_vectors" / "vectors.txt"


def _hex(data: bytes) -> str:
    return data.hex() if data else "-"


def _kv(values: dict[str, str]) -> str:
    return ";".join(f"{k}:{v}" for k, v in values.items()) or "-"


def _fields(msg) -> str:
    """The canonical k=v form of a message, as the C test prints it."""
    if isinstance(msg, Hello):
        f = dict(role=msg.role, max_payload=msg.max_payload, max_frame=msg.max_frame, window=msg.window,
                 boot_id=msg.boot_id, name=msg.name or "-")
    elif isinstance(msg, Telemetry):
        f = dict(battery_mv=0xFFFF if msg.battery_mv is None else msg.battery_mv,
                 battery_pct=0xFF if msg.battery_pct is None else msg.battery_pct,
                 temp_cdeg=-0x8000 if msg.temperature_c is None else round(msg.temperature_c * 100),
                 kv=_kv(msg.values))
    elif isinstance(msg, Status):
        f = dict(kv=_kv(msg.values))
    elif isinstance(msg, FrameChunk):
        f = dict(xfer=msg.xfer, index=msg.index, data=_hex(msg.data))
    else:
        f = {fld.name: getattr(msg, fld.name) for fld in dataclasses.fields(msg)}
    return ",".join(f"{k}={v}" for k, v in f.items())


def generate() -> str:
    rng = random.Random(20261124)
    rb = lambda n: bytes(rng.randrange(256) for _ in range(n))  # noqa: E731
    lines = ["# firmware_bridge shared test vectors; written by `python -m firmware_bridge.vectors`, do not edit.",
             f"# protocol version {framing.VERSION}"]

    lines.append("# CRC-32/ISO-HDLC")
    for data in (b"", b"123456789", b"\x00", b"\xff" * 4, rb(1), rb(31), rb(300)):
        lines.append(f"crc32 {_hex(data)} {crc32(data):08x}")

    lines.append("# COBS: empty, zeros, runs around the 254-byte block limit")
    cases = [b"", b"\x00", b"\x00\x00", b"\x11\x00", b"\x11\x22\x00\x33", b"\x01" * 253, b"\x01" * 254,
             b"\x01" * 255, b"\x01" * 254 + b"\x00", b"\x00" + b"\x02" * 254 + b"\x00", b"\x03" * 600, rb(100),
             bytes(range(256))]
    for raw in cases:
        lines.append(f"cobs {_hex(raw)} {_hex(cobs_encode(raw))}")

    lines.append("# frames: header (version, type, flags, seq) + payload + CRC, COBS, 0x00")
    frames = [(MsgType.HEARTBEAT, 0, 7, Heartbeat(123456).pack()),
              (MsgType.HELLO, FLAG_REPLY, 0, Hello(1, 260, 32768, 8, 0xBEEF, "cam-mcu").pack()),
              (MsgType.ACK, 0, 255, Ack(42, 0).pack()),
              (MsgType.FRAME_CHUNK, FLAG_REPLY, 0, FrameChunk(0x1234, 3, rb(256)).pack()),
              (MsgType.FRAME_CHUNK, 0, 1, FrameChunk(0, 0, bytes(250)).pack()),
              (0x7E, 0x80, 9, b""),
              (MsgType.STATUS, 0, 0, rb(260))]
    for type_, flags, seq, payload in frames:
        wire = encode_frame(type_, payload, flags=flags, seq=seq)
        lines.append(f"frame {type_} {flags} {seq} {_hex(payload)} {_hex(wire)}")

    lines.append("# frames every decoder must drop, and why (as the Python decoder classifies them)")
    good = encode_frame(MsgType.TRIGGER, Trigger(1, 2, 3).pack(), flags=FLAG_REPLY, seq=5)
    flipped = bytearray(good)
    flipped[3] ^= 0x40
    bad = [bytes(flipped), good[:-4] + good[-1:], bytes([0x05, 0x01, 0x02, 0x03, 0x00]),
           cobs_encode(b"\x01\x02\x03") + b"\x00", encode_frame(MsgType.HEARTBEAT, b"1234", version=2),
           b"\x41" * 300 + b"\x00", cobs_encode(bytes(20)) + b"\x00"]
    names = {"crc_errors": "crc", "cobs_errors": "cobs", "too_short": "short", "bad_version": "version",
             "too_long": "long"}
    for wire in bad:
        dec = framing.FrameDecoder(260)
        assert not dec.feed(wire)
        why = [names[k] for k, v in dec.stats.items() if k in names and v]
        lines.append(f"bad {_hex(wire)} {why[0]}")

    lines.append("# streams: garbage, a split frame, runs of delimiters; max payload 260")
    for k in range(4):
        stream, seqs = bytearray(), []
        for i in range(5):
            stream += rb(rng.randrange(0, 40))  # garbage, may hold zeros
            seq = 10 * k + i
            payload = rb(rng.randrange(0, 200))
            frame = encode_frame(MsgType.STATUS, payload, seq=seq)
            stream += b"\x00" + frame  # a leading delimiter ends the garbage, as senders may do
            seqs.append(seq)
        stream += b"\x00\x00" + rb(10)
        dec = framing.FrameDecoder(260)
        got = [f.seq for f in dec.feed(bytes(stream))]
        lines.append(f"stream 260 {_hex(bytes(stream))} {len(got)} {','.join(map(str, got)) or '-'}")

    lines.append("# messages: payload <-> fields")
    msgs = [Hello(0, 1024, 1 << 20, 16, 1, "host"), Hello(1, 260, 32768, 8, 65535, ""),
            Heartbeat(0xFFFFFFFF), Ack(7, 1), Trigger(1, 0, 987654), Trigger(5, 3, 0),
            SetQuality(1, 0), SetQuality(0, 120000),
            Telemetry(3700, 81, 21.5, {"light": "120", "door": "open"}), Telemetry(None, None, None, {}),
            Telemetry(4100, 100, -12.25, {}), Request(MsgType.TELEMETRY), Status({"quality": "3", "fps": "0.5"}),
            Status({}), FrameBegin(0xABCD, 3000, 128, 0xDEADBEEF), FrameChunk(9, 65534, b"\x00\x01\x02"),
            FrameStatus(9, 0, 200, 17, 0x80000001), FrameStatus(9, 1, 3, 0xFFFF, 0), FrameAbort(9, 1)]
    names = {v: k for k, v in vars(MsgType).items() if not k.startswith("_")}
    for msg in msgs:
        lines.append(f"msg {names[msg.TYPE].lower()} {_hex(msg.pack())} {_fields(msg)}")

    lines.append("# reassembly: a receiver with a 4000-byte buffer and chunks up to 256 bytes")
    _reassembly(lines, rng, rb)
    return "\n".join(lines) + "\n"


def _reassembly(lines: list[str], rng: random.Random, rb) -> None:
    rx = FrameReceiver(4000, 256)
    lines.append("rxinit 4000 256")

    def begin(seq, xfer, total, chunk, crc):
        st = rx.on_begin(FrameBegin(xfer, total, chunk, crc), seq)
        lines.append(f"rxbegin {seq} {xfer} {total} {chunk} {crc:08x} {_hex(st.pack())}")

    def chunk(seq, reply, xfer, index, data):
        st, done = rx.on_chunk(FrameChunk(xfer, index, data), seq, reply)
        lines.append(f"rxchunk {seq} {int(reply)} {xfer} {index} {_hex(data)} "
                     f"{_hex(st.pack()) if st else '-'} {int(done is not None)}")
        if done is not None:
            lines.append(f"rxframe {_hex(done)}")

    frame = rb(1000)
    crc = crc32(frame)
    parts = [frame[i:i + 100] for i in range(0, 1000, 100)]
    begin(1, 77, 1000, 100, crc)
    order = [0, 2, 5, 2, 9, 1, 40, 3]  # out of order, a duplicate, an index past the end
    for k, i in enumerate(order):
        data = parts[i] if i < len(parts) else b"x" * 100
        chunk(2 + k, k % 2 == 1, 77, i, data)
    chunk(10, True, 77, 4, parts[4][:50])      # wrong length: ignored
    chunk(11, True, 78, 4, parts[4])           # unknown transfer id
    begin(12, 77, 1000, 100, crc)              # resume: reports what arrived
    for k, i in enumerate([4, 6, 7, 8]):
        chunk(13 + k, False, 77, i, parts[i])
    begin(20, 77, 1000, 100, crc)              # after completion: COMPLETE, not delivered again
    chunk(21, True, 77, 8, parts[8])
    begin(22, 5, 4001, 100, 0)                 # too large
    begin(23, 5, 100, 257, 0)                  # chunk too big
    begin(24, 5, 0, 100, 0)                    # empty
    bad = rb(300)
    begin(25, 6, 300, 256, crc32(bad) ^ 1)     # wrong CRC: all chunks arrive, then CRC_MISMATCH
    chunk(26, False, 6, 1, bad[256:])
    chunk(27, False, 6, 0, bad[:256])
    small = rb(33)
    begin(28, 7, 33, 256, crc32(small))        # one short chunk
    chunk(29, False, 7, 0, small)
    big = rb(3900)
    begin(30, 8, 3900, 64, crc32(big))         # 61 chunks: the mask spans 32 beyond next
    idx = list(range(61))
    rng.shuffle(idx)
    for k, i in enumerate(idx):
        chunk((31 + k) & 0xFF, k % 7 == 0, 8, i, big[64 * i:64 * i + 64])
    begin(100, 9, 500, 100, 0)
    lines.append("rxabort 9")
    rx.on_abort(9)
    chunk(101, True, 9, 0, bytes(100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        ok = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if ok else 'differs from the generator'}")
        return 0 if ok else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
