"""The send stage against an in-memory link whose server can go away: order, spooling, acks, drain."""
from __future__ import annotations

import queue
import threading

import pytest

from edgecodec.edge.encoder import Encoded
from edgecodec.edge.sender import SendPolicy, SendStage
from edgecodec.edge.spool import Spool
from edgecodec.transport import AuthRefused, Link, LinkError
from tests.stream_support import frame_packet, link_config, wait_until

pytestmark = pytest.mark.timeout(60)


class FakeServer:
    """Stores frames once per sequence, like the real one; ``up`` and ``ack`` are switched by the test."""

    def __init__(self):
        self.up = True
        self.blackhole = False  # frames vanish on the way: neither stored nor acknowledged
        self.stored: list[int] = []
        self.received: list[int] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.attempts = 0  # connection attempts
        self.script: list[str] = []  # outcomes of the next attempts: "refuse", "down" or "ok"

    def last(self):
        return self.stored[-1] if self.stored else None


class FakeLink(Link):
    def __init__(self, server: FakeServer):
        super().__init__(link_config("tcp://fake:1"))
        self.server = server
        self.open = False
        self.acked = None

    def connect(self):
        self.server.attempts += 1
        outcome = self.server.script.pop(0) if self.server.script else "ok"
        if outcome == "refuse":
            raise AuthRefused("server fake:1 refused camera 'cam1': wrong secret or unknown camera id")
        if not self.server.up or outcome == "down":
            raise LinkError("connection refused")
        self.open = True
        return self.server.last()

    def _check(self):
        if not (self.open and self.server.up):
            self.open = False
            raise LinkError("connection lost")

    def send_frame(self, sequence, packet):
        self._check()
        with self.server.lock:
            if self.server.blackhole:
                return
            self.server.received.append(sequence)
            if self.server.last() is None or sequence > self.server.last():
                self.server.stored.append(sequence)
            self.acked = sequence

    def send_dropped(self, count):
        self._check()
        self.server.dropped += count

    def keepalive(self):
        self._check()

    def poll(self, timeout):
        self._check()
        return self.acked

    def close(self):
        self.open = False


def make_stage(tmp_path, server, **policy):
    inbox: queue.Queue = queue.Queue(maxsize=4)
    spool = Spool(tmp_path / "spool", max_bytes=policy.pop("spool_bytes", 1 << 20)).open()
    stage = SendStage(inbox, lambda: FakeLink(server), spool,
                      policy=SendPolicy(retry_min=0.01, retry_max=0.05, **policy))
    return stage, inbox, spool


def feed(inbox, sequences):
    for seq in sequences:
        inbox.put(Encoded(seq, 0, 1, frame_packet(seq, size=300)), timeout=5)


def test_live_frames_are_sent_in_order_and_acknowledged(tmp_path):
    server = FakeServer()
    stage, inbox, spool = make_stage(tmp_path, server)
    stage.start()
    wait_until(lambda: stage.connected, 5)
    feed(inbox, range(50))
    wait_until(lambda: stage.acked == 50, 10, what="all acked")
    stage.stop()
    stage.join(5)
    assert server.stored == list(range(50)) and len(spool) == 0 and stage.spooled == 0


def test_frames_produced_during_an_outage_are_spooled_then_delivered_in_order(tmp_path):
    server = FakeServer()
    stage, inbox, spool = make_stage(tmp_path, server)
    stage.start()
    feed(inbox, range(0, 10))
    wait_until(lambda: server.stored[-1:] == [9], 10)
    server.up = False
    feed(inbox, range(10, 40))
    wait_until(lambda: len(spool) == 30, 10, what="outage frames in the spool")
    server.up = True
    feed(inbox, range(40, 60))
    wait_until(lambda: server.stored[-1:] == [59] and stage.acked >= 50, 10, what="catch-up")
    stage.stop()
    stage.join(5)
    assert server.stored == list(range(60))
    assert len(spool) == 0


def test_frames_that_arrive_while_connecting_are_spooled_and_sent_first(tmp_path):
    server = FakeServer()
    stage, inbox, spool = make_stage(tmp_path, server)
    feed(inbox, range(3))  # queued before the stage (and its first connection attempt) starts
    stage.start()
    feed(inbox, range(3, 30))
    wait_until(lambda: stage.acked == 30, 10, what="all acked")
    stage.stop()
    stage.join(5)
    assert server.stored == list(range(30)) and len(spool) == 0


def test_when_acks_stop_new_frames_go_to_the_spool_instead_of_being_dropped(tmp_path):
    server = FakeServer()
    stage, inbox, spool = make_stage(tmp_path, server, window_frames=4, stall_spool=0.1, ack_timeout=1.5)
    stage.start()
    wait_until(lambda: stage.connected, 5)
    server.blackhole = True  # sends succeed, acks never come: a stalled peer
    feed(inbox, range(20))  # would block on a full queue if the stage stopped taking frames
    wait_until(lambda: len(spool) == 20, 5, what="window then spool")
    server.blackhole = False  # after the ack timeout the edge reconnects and resends
    wait_until(lambda: server.stored == list(range(20)), 10, what="resend from the spool")
    stage.stop()
    stage.join(5)


def test_frames_lost_on_a_dead_link_are_spooled_and_resent_after_reconnecting(tmp_path):
    server = FakeServer()
    server.blackhole = True  # the peer is gone but the socket does not know it yet
    stage, inbox, spool = make_stage(tmp_path, server, ack_timeout=0.3)
    stage.start()
    feed(inbox, range(5))
    wait_until(lambda: stage.sent >= 5, 10)
    server.blackhole = False
    wait_until(lambda: server.stored == list(range(5)), 10, what="resend after the ack timeout")
    wait_until(lambda: len(spool) == 0, 10, what="spool emptied by the acks")
    stage.stop()
    stage.join(5)
    assert stage.connects == 2


def test_frames_the_server_already_stored_are_not_sent_again_after_reconnecting(tmp_path):
    server = FakeServer()
    server.stored = [0, 1, 2, 3]  # stored, but the acks were lost with the connection
    stage, inbox, spool = make_stage(tmp_path, server)
    for seq in range(6):
        spool.append(seq, frame_packet(seq))
    stage.start()
    wait_until(lambda: server.stored[-1] == 5, 10)
    stage.stop()
    stage.join(5)
    assert server.received == [4, 5]


def test_stop_while_offline_keeps_every_frame_in_the_spool_for_the_next_run(tmp_path):
    server = FakeServer()
    server.up = False
    stage, inbox, spool = make_stage(tmp_path, server, drain_timeout=0.2)
    stage.start()
    feed(inbox, range(8))
    stage.stop()
    assert stage.join(5)
    again = Spool(tmp_path / "spool", max_bytes=1 << 20).open()
    assert [seq for seq, _ in again.frames()] == list(range(8))


def test_stop_while_connected_waits_for_the_last_acknowledgements(tmp_path):
    server = FakeServer()
    stage, inbox, spool = make_stage(tmp_path, server, drain_timeout=2.0)
    stage.start()
    feed(inbox, range(4))
    stage.stop()
    assert stage.join(5)
    assert server.stored == [0, 1, 2, 3] and stage.acked == 4 and len(spool) == 0


def test_frames_lost_on_the_edge_are_reported_to_the_server(tmp_path):
    server = FakeServer()
    lost = [0]
    inbox: queue.Queue = queue.Queue()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20).open()
    stage = SendStage(inbox, lambda: FakeLink(server), spool, lost_total=lambda: lost[0],
                      policy=SendPolicy(retry_min=0.01))
    stage.start()
    lost[0] = 7
    feed(inbox, [0])
    wait_until(lambda: server.dropped == 7, 5)
    lost[0] = 9
    feed(inbox, [1])
    wait_until(lambda: server.dropped == 9, 5)
    stage.stop()
    stage.join(5)


def test_a_small_spool_drops_the_oldest_outage_frames_and_delivers_the_rest_in_order(tmp_path):
    server = FakeServer()
    server.up = False
    stage, inbox, spool = make_stage(tmp_path, server, spool_bytes=6_000)
    stage.start()
    feed(inbox, range(40))
    wait_until(lambda: stage.spooled == 40, 10)
    server.up = True
    wait_until(lambda: server.stored and server.stored[-1] == 39, 10)
    stage.stop()
    stage.join(5)
    first = server.stored[0]
    assert first > 0 and server.stored == list(range(first, 40)) and spool.dropped == first


def stream_item(seq: int, key: bool) -> Encoded:
    from tests.test_edge_spool import delta_packet

    return Encoded(seq, 0, 1, frame_packet(seq, size=300) if key else delta_packet(seq, size=300), key)


def test_spool_overflow_leads_to_a_key_frame_and_no_delta_frame_is_sent_without_its_reference(tmp_path):
    server = FakeServer()
    server.up = False
    requests: list[str] = []
    inbox: queue.Queue = queue.Queue(maxsize=4)
    spool = Spool(tmp_path / "spool", max_bytes=6_000).open()
    stage = SendStage(inbox, lambda: FakeLink(server), spool, request_key=requests.append,
                      policy=SendPolicy(retry_min=0.01, retry_max=0.05))
    stage.start()
    for seq in range(40):  # the encoder's stream: a key frame, then delta frames (each on the one before)
        inbox.put(stream_item(seq, seq == 0), timeout=5)
    wait_until(lambda: stage.spooled == 40, 10)
    assert requests and spool.dropped > 0  # the spool overflowed: the encoder is asked for a key frame
    for seq in range(40, 45):  # delta frames already encoded before the request came through
        inbox.put(stream_item(seq, False), timeout=5)
    inbox.put(stream_item(45, True), timeout=5)  # the key frame asked for
    for seq in range(46, 50):
        inbox.put(stream_item(seq, False), timeout=5)
    server.up = True
    wait_until(lambda: server.stored and server.stored[-1] == 49, 10)
    stage.stop()
    stage.join(5)
    assert server.stored == list(range(45, 50))  # nothing whose chain back to a key frame was broken
    assert server.dropped == 45  # and the server is told how many frames it will never see


def test_reconnecting_asks_the_encoder_for_a_key_frame(tmp_path):
    server = FakeServer()
    requests: list[str] = []
    inbox: queue.Queue = queue.Queue(maxsize=4)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20).open()
    stage = SendStage(inbox, lambda: FakeLink(server), spool, request_key=requests.append,
                      policy=SendPolicy(retry_min=0.01, retry_max=0.05))
    stage.start()
    feed(inbox, range(5))
    wait_until(lambda: server.stored[-5:] == list(range(5)), 10)
    assert requests == []  # the first connection: the stream starts with a key frame anyway
    spooled = stage.spooled
    server.up = False
    feed(inbox, range(5, 8))
    wait_until(lambda: stage.spooled > spooled, 10)
    server.up = True
    wait_until(lambda: server.stored and server.stored[-1] == 7, 10)
    stage.stop()
    stage.join(5)
    assert requests == ["reconnected"]


def test_refused_credentials_end_the_stage_after_auth_retries_and_keep_the_frames(tmp_path):
    server = FakeServer()
    server.script = ["refuse"] * 100
    stage, inbox, spool = make_stage(tmp_path, server, auth_retries=3)
    feed(inbox, range(4))
    stage.start()
    assert stage.finished.wait(10), "the stage kept retrying refused credentials"
    assert isinstance(stage.error, AuthRefused)
    assert "wrong secret or unknown camera id" in str(stage.error) and "gave up after 3" in str(stage.error)
    assert server.attempts == 3
    assert server.stored == []
    kept = Spool(tmp_path / "spool", max_bytes=1 << 20).open()  # what the next run will send
    assert [seq for seq, _ in kept.frames()] == [0, 1, 2, 3]


def test_an_unreachable_server_is_retried_for_ever_not_counted_as_a_refusal(tmp_path):
    server = FakeServer()
    server.up = False
    stage, inbox, spool = make_stage(tmp_path, server, auth_retries=1)
    stage.start()
    feed(inbox, range(3))
    wait_until(lambda: server.attempts >= 10, 10, what="ten connection attempts")
    assert not stage.finished.is_set() and stage.error is None
    server.up = True
    wait_until(lambda: server.stored == [0, 1, 2], 10, what="delivery after the outage")
    stage.stop()
    stage.join(5)


def test_only_refusals_in_a_row_count_a_successful_connection_starts_over(tmp_path):
    server = FakeServer()
    server.script = ["refuse", "refuse", "down", "ok"]  # an outage between refusals does not reset
    stage, inbox, spool = make_stage(tmp_path, server, auth_retries=3)
    stage.start()
    wait_until(lambda: stage.connected, 10, what="the connection after two refusals")
    server.up = False  # the link breaks; the next attempts are refused twice, then accepted
    feed(inbox, range(2))
    wait_until(lambda: not stage.connected, 10, what="the link to break")
    server.script = ["refuse", "refuse", "ok"]
    server.up = True
    wait_until(lambda: server.stored == [0, 1], 10, what="delivery after two more refusals")
    assert stage.error is None and stage.connects == 2
    stage.stop()
    stage.join(5)
