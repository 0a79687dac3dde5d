"""Frames over a real mosquitto broker on loopback: signed frames in, signed acks out."""
from __future__ import annotations

import contextlib
import threading
import time

import pytest

from edgecodec.transport import AuthRefused, LinkError, open_link
from tests.stream_support import (Mosquitto, ServerThread, frame_packet, link_config,
                                  mosquitto_path, wait_until)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(mosquitto_path() is None,
                       reason="mosquitto is not installed (apt-get install -y mosquitto; .ci/run does)"),
]


@pytest.fixture()
def broker(tmp_path):
    b = Mosquitto(tmp_path)
    yield b
    b.close()


def mqtt_server(tmp_path, broker, **kw):
    return ServerThread(tmp_path, mqtt=broker.url, **kw)


def send_one_acked_frame(broker, camera_id: str) -> None:
    """A well-behaved camera connects, sends frame 0 and gets it acknowledged."""
    link = open_link(link_config(broker.url, camera_id=camera_id))
    link.connect()
    link.send_frame(0, frame_packet(0))
    wait_ack(link, 0)
    link.close()


def wait_ack(link, sequence, timeout=10.0):
    def acked():
        last = link.poll(0.05)
        return last is not None and last >= sequence

    wait_until(acked, timeout, what=f"ack of {sequence}")


@contextlib.contextmanager
def frame_observer(broker, camera_id: str = "cam1"):
    """A plain MQTT client subscribed to a camera's frame topic: the list of the payloads the broker
    has passed on (so it has handled them), filled as they arrive."""
    from edgecodec.transport import mqtt as mq

    payloads: list[bytes] = []
    subscribed = threading.Event()
    client = mq.new_client("observer", None, None, False)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda c, userdata, msg: payloads.append(msg.payload)
    client.connect("127.0.0.1", broker.port)
    client.subscribe(mq.topic("edgecodec", camera_id, "frame"), qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10), "the observer's subscription was not acknowledged"
        yield payloads
    finally:
        client.disconnect()
        client.loop_stop()


def test_frames_published_by_a_camera_reach_the_hub_in_order_and_are_acknowledged(tmp_path, broker):
    with ServerThread(tmp_path, mqtt=broker.url + "/site-a") as server:
        link = open_link(link_config(broker.url + "/site-a"))  # a topic prefix of its own
        assert link.connect() is None
        for seq in range(20):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 19)
        link.close()
        assert server.received == [("cam1", s) for s in range(20)]
        wait_until(lambda: not server.hub.cameras()[0].connected, 5, what="offline status")


def test_resent_frames_over_mqtt_are_stored_once(tmp_path, broker):
    with mqtt_server(tmp_path, broker) as server:
        link = open_link(link_config(broker.url))
        link.connect()
        for seq in (0, 1, 2, 1, 2, 3):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 3)
        link.close()
        assert [s for _, s in server.received] == [0, 1, 2, 3]
        assert server.ingest.counters["cam1"].duplicates == 2


def test_frames_the_broker_lost_are_never_acknowledged_and_arrive_when_resent(tmp_path, broker):
    state = str(tmp_path / "state")
    with mqtt_server(tmp_path, broker, state_dir=state) as server:
        link = open_link(link_config(broker.url))
        link.connect()
        for seq in range(5):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 4)
    with frame_observer(broker) as observed:
        for seq in range(5, 10):  # no server subscribed: the broker drops these
            link.send_frame(seq, frame_packet(seq))
        # The broker handled them (it passed them on to the observer) before a server subscribes again.
        wait_until(lambda: len(observed) >= 5, 10, what="the broker to pass on frames 5..9")
    with mqtt_server(tmp_path, broker, state_dir=state) as server:
        link.send_frame(10, frame_packet(10))  # follows 9, which the server never saw
        wait_until(lambda: server.ingest.counters.get("cam1") and server.ingest.counters["cam1"].gaps == 1,
                   10, what="the gap to be noticed")
        assert link.poll(0.5) == 4  # the acknowledgement does not move past the hole
        link.close()
        link = open_link(link_config(broker.url))  # the edge times out, reconnects, resends its spool
        link.connect()
        for seq in range(5, 12):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 11)
        link.close()
        assert [s for _, s in server.received] == list(range(5, 12))


def test_frames_signed_with_a_wrong_secret_are_dropped_and_logged_once(tmp_path, broker, caplog):
    with mqtt_server(tmp_path, broker) as server:
        bad = open_link(link_config(broker.url, secret="not-the-right-secret-at-all"))
        bad.connect()
        for seq in range(5):
            bad.send_frame(seq, frame_packet(seq))
        assert bad.poll(1.0) is None  # never acknowledged
        bad.close()
        send_one_acked_frame(broker, "cam2")
        assert server.received == [("cam2", 0)]
        assert server.ingest.counters["cam1"].auth_failures == 5
    assert caplog.text.count("wrong secret") == 1


def test_garbage_payloads_on_the_frame_topic_do_not_disturb_other_cameras(tmp_path, broker):
    from edgecodec.transport import mqtt as mq

    with mqtt_server(tmp_path, broker) as server:
        raw = mq.new_client("garbage", None, None, False)
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        for payload in (b"", b"\x00" * 100, frame_packet(0) + b"short-trailer", b"\x89ECC" + b"\xff" * 60):
            raw.publish("edgecodec/cam1/frame", payload, qos=1).wait_for_publish(5)
        raw.publish("edgecodec/../frame", b"x", qos=1).wait_for_publish(5)
        raw.disconnect()
        raw.loop_stop()
        send_one_acked_frame(broker, "cam2")
        assert server.received == [("cam2", 0)]
        wait_until(lambda: server.ingest.counters["cam1"].rejected >= 2, 5, what="rejections counted")


def test_an_unreachable_broker_is_a_link_error(tmp_path):
    from tests.stream_support import free_port

    link = open_link(link_config(f"mqtt://127.0.0.1:{free_port()}", connect_timeout=1.0))
    start = time.monotonic()
    with pytest.raises(LinkError, match="cannot reach MQTT broker"):
        link.connect()
    assert time.monotonic() - start < 5


def test_a_broker_that_refuses_the_credentials_is_an_auth_refusal_not_an_outage(tmp_path):
    strict = Mosquitto(tmp_path, anonymous=False)  # no user in the URL: "Not authorized"
    try:
        with pytest.raises(AuthRefused, match="refused the credentials in the server URL"):
            open_link(link_config(strict.url)).connect()
    finally:
        strict.close()


def test_losing_the_broker_breaks_the_link_so_the_edge_spools(tmp_path, broker):
    with mqtt_server(tmp_path, broker):
        link = open_link(link_config(broker.url))
        link.connect()
        broker.close()
        with pytest.raises(LinkError):
            wait_until(lambda: link.poll(0.1) == "never", 10)
        link.close()
