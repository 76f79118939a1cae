"""MqttLink against a real mosquitto: ordering, queueing across outages, status and will, TLS, protocols."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge.config import TlsSettings
from edge.decision import as_late
from edge.mqtt import MqttLink, MqttLinkError

REPO = Path(__file__).resolve().parents[2]


def publish(link: MqttLink, seq: int, ttl_s: float, made_ago_s: float = 0.0) -> bool:
    """Queue decision ``seq`` as the daemon does: with its deadline, and the late reject it turns into after it."""
    decision = {"seq": seq, "item_id": f"item-{seq}", "label": "jeans", "lane": 1, "confidence": 0.93,
                "deadline": time.time() - made_ago_s + ttl_s}  # fmt: skip
    return link.publish_decision(decision, ttl_s=ttl_s, late=as_late(decision, reject_lane=0))


def _first_seen_seqs(payloads: list[dict]) -> list[int]:
    """Sequence numbers in arrival order with redeliveries removed, as a subscriber dedupes."""
    seen: set[int] = set()
    order = []
    for payload in payloads:
        if payload["seq"] not in seen:
            seen.add(payload["seq"])
            order.append(payload["seq"])
    return order


def test_decisions_arrive_in_order_as_qos1_never_retained(mosquitto, subscriber, make_link, wait_until):
    link = make_link(mosquitto.settings())
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    assert link.protocol == "5"
    for seq in range(200):
        assert publish(link, seq, 10)
    got = sub.wait_for(200)
    assert [(m.json()["seq"], m.json()["label"]) for m in got] == [(seq, "jeans") for seq in range(200)]
    assert {(m.qos, m.retain) for m in got} == {(1, False)}
    wait_until(lambda: link.queue_depth == 0, what="the last PUBACKs")
    assert link.dropped == 0


def test_mqtt5_message_expiry_is_the_decision_ttl(mosquitto, subscriber, make_link):
    link = make_link(mosquitto.settings())
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    publish(link, 0, 7.5)
    (message,) = sub.wait_for(1)
    # the broker forwards what is left of the interval: ceil(7.5) = 8 s, minus the time in transit
    assert 6 <= message.properties.MessageExpiryInterval <= 8


def test_forced_mqtt_311_publishes_without_v5_properties(mosquitto, subscriber, make_link):
    link = make_link(mosquitto.settings(protocol="3.1.1"))
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    assert link.protocol == "3.1.1"
    publish(link, 0, 5)
    (message,) = sub.wait_for(1)
    assert message.json()["seq"] == 0 and message.json()["label"] == "jeans" and message.qos == 1
    assert not hasattr(message.properties, "MessageExpiryInterval")


def test_auto_falls_back_to_311_on_a_broker_without_mqtt5(mosquitto, subscriber, make_link, tcp_proxy, caplog):
    caplog.set_level(logging.INFO, logger="edge.mqtt")
    old_broker = tcp_proxy(mosquitto, reject_mqtt5=True)
    sub = subscriber(mosquitto, "sortline/line-1/decision")
    link = MqttLink(mosquitto.settings(port=old_broker.port), "line-1")
    publish(link, 0, 5)  # queued before the first connection: must survive the switch
    link.start(lambda command: {}, lambda trigger: None)
    try:
        assert link.wait_connected(5), link.last_error
        assert link.protocol == "3.1.1"
        assert old_broker.refused_mqtt5 >= 1
        publish(link, 1, 5)
        assert [m.json()["seq"] for m in sub.wait_for(2)] == [0, 1]
        assert "does not speak MQTT 5; falling back to MQTT 3.1.1" in caplog.text
    finally:
        link.close(flush_timeout=0)


def test_birth_is_retained_and_the_last_will_says_offline_when_the_daemon_dies(mosquitto, subscriber, wait_until):
    settings = mosquitto.settings()
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from edge.config import MqttSettings
        from edge.mqtt import MqttLink
        link = MqttLink(MqttSettings.model_validate_json({settings.model_dump_json()!r}), "line-1")
        link.set_status({{"state": "online", "model": "apparel-vgg16-int8", "version": "1.0.0"}})
        link.start(lambda command: {{}}, lambda trigger: None)
        assert link.wait_connected(5)
        print("connected", flush=True)
        time.sleep(60)
    """)
    started = time.time()
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout.readline().strip() == "connected"
        # a subscriber arriving later gets the retained birth
        late = subscriber(mosquitto, "sortline/line-1/status")
        birth = late.wait_for(1)[0]
        assert birth.retain
        assert birth.json()["state"] == "online"
        assert birth.json()["model"] == "apparel-vgg16-int8" and birth.json()["device"] == "line-1"
        os.kill(daemon.pid, signal.SIGKILL)  # no clean disconnect: only the broker's last will can tell
        will = late.wait_for(2)[1].json()
        assert will["state"] == "offline" and will["device"] == "line-1" and will["reason"] == "connection lost"
        assert started <= will["ts"] <= time.time()  # stamped like every status: when that connection was made
    finally:
        daemon.kill()
        daemon.wait()
    after = subscriber(mosquitto, "sortline/line-1/status")
    retained = after.wait_for(1)[0]
    assert retained.retain and retained.json()["state"] == "offline"


def test_status_is_republished_after_a_connection_loss(mosquitto, subscriber, make_link, tcp_proxy, wait_until):
    proxy = tcp_proxy(mosquitto)
    sub = subscriber(mosquitto, "sortline/line-1/status")
    link = make_link(mosquitto.settings(port=proxy.port))
    link.set_status({"state": "online", "model": "m", "version": "2"})
    assert link.wait_connected(5)
    wait_until(lambda: any(p.get("model") == "m" for p in sub.payloads()), what="the birth message")
    # the broker sees the connection die without DISCONNECT and publishes the will; held until it has, since a
    # reconnect that reaches the broker first takes the session over and no will is due (once in a dozen runs
    # on a loaded core). The old status may be sent again after the new one, unacknowledged when the cable went
    proxy.pause()
    proxy.cut()
    sub.wait_for(lambda got: "offline" in [m.json()["state"] for m in got], timeout=30)
    proxy.resume()
    states = sub.wait_for(lambda got: [m.json()["state"] for m in got][-1] == "online", timeout=30)
    seen = [m.json()["state"] for m in states]
    assert "online" in seen[seen.index("offline") + 1 :]  # the will, then the birth again
    assert states[-1].json()["model"] == "m" and states[-1].retain
    assert link.reconnects == 1


def test_every_decision_arrives_in_order_when_the_broker_restarts_mid_stream(
    mosquitto, subscriber, make_link, wait_until
):
    link = make_link(mosquitto.settings())
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    total, published = 600, threading.Event()

    def stream() -> None:  # 200 decisions a second, like a fast line, for 3 s
        for seq in range(total):
            assert publish(link, seq, 30)
            time.sleep(0.005)
        published.set()

    producer = threading.Thread(target=stream)
    producer.start()
    sub.wait_for(100)
    mosquitto.stop()
    down_at = len(sub.received())
    wait_until(lambda: not link.connected, what="the link to notice the broker is gone")
    # the outage itself: decisions keep coming while the broker is away, and wait in the link
    wait_until(lambda: link.queue_depth >= 100, what="100 decisions waiting", timeout=30)
    mosquitto.start()
    producer.join()
    assert published.is_set()
    sub.wait_for(lambda got: len({m.json()["seq"] for m in got}) == total, timeout=20)
    assert _first_seen_seqs(sub.payloads()) == list(range(total))
    assert 0 < down_at < total
    assert link.reconnects == 1 and link.dropped == 0
    wait_until(lambda: link.queue_depth == 0, what="the last PUBACKs")


def test_decisions_in_flight_when_the_broker_dies_are_sent_again(
    mosquitto, subscriber, make_link, tcp_proxy, wait_until
):
    proxy = tcp_proxy(mosquitto)
    sub = subscriber(mosquitto, "sortline/line-1/decision")
    link = make_link(mosquitto.settings(port=proxy.port))
    assert link.wait_connected(5)
    publish(link, 0, 30)
    sub.wait_for(1)
    wait_until(lambda: link.queue_depth == 0, what="the first decision's PUBACK")  # or pause() would hold it
    proxy.pause()  # the next decisions leave the daemon but never reach the broker: no PUBACK
    for seq in range(1, 41):
        publish(link, seq, 30)
    time.sleep(0.2)  # let the sender put a window of them on the wire
    assert link.queue_depth == 40
    mosquitto.kill()  # the broker dies with them unacknowledged, and with every session (nothing saved)
    proxy.cut()
    mosquitto.start()
    sub.wait_subscribed(2)  # listening again before the link can resend, or the resent decisions reach nobody
    proxy.resume()
    sub.wait_for(lambda got: len({m.json()["seq"] for m in got}) == 41, timeout=20)
    assert _first_seen_seqs(sub.payloads()) == list(range(41))
    wait_until(lambda: link.queue_depth == 0, what="the last PUBACKs")


def test_a_full_queue_refuses_and_counts_then_delivers_the_rest_in_order(mosquitto, subscriber, make_link, wait_until):
    link = make_link(mosquitto.settings(queue_size=5))
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    mosquitto.stop()
    wait_until(lambda: not link.connected, what="the link to notice the broker is gone")
    accepted = [publish(link, seq, 30) for seq in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert link.dropped == 3 and link.queue_depth == 5
    mosquitto.start()
    assert [m.json()["seq"] for m in sub.wait_for(5)] == [0, 1, 2, 3, 4]
    wait_until(lambda: link.queue_depth == 0, what="the queue to drain")
    assert link.dropped == 3


def test_decisions_that_waited_past_their_deadline_for_the_broker_go_out_as_late_rejects(
    mosquitto, subscriber, make_link, wait_until
):
    link = make_link(mosquitto.settings())
    sub = subscriber(mosquitto, link.topics.decision)
    assert link.wait_connected(5)
    mosquitto.stop()
    wait_until(lambda: not link.connected, what="the link to notice the broker is gone")
    publish(link, 0, 30, made_ago_s=31)  # its item went by a second ago
    publish(link, 1, 60)
    mosquitto.start()
    got = [m.json() for m in sub.wait_for(2)]
    assert [(d["seq"], d["label"], d["lane"], d.get("reason")) for d in got] == [(0, "reject", 0, "late"),
                                                                             (1, "jeans", 1, None)]  # fmt: skip
    assert got[0]["confidence"] == 0.93  # what the model said stays on the record
    assert link.late == 1


def test_close_flushes_says_offline_and_reports_what_was_left(mosquitto, subscriber, wait_until):
    sub = subscriber(mosquitto, ["sortline/line-1/decision", "sortline/line-1/status"])
    link = MqttLink(mosquitto.settings(), "line-1")
    link.start(lambda command: {}, lambda trigger: None)
    assert link.wait_connected(5)
    for seq in range(50):
        publish(link, seq, 30)
    assert link.close(flush_timeout=5) == 0  # all 50 acknowledged by the broker before close() returned ...
    sub.wait_for(lambda got: len([m for m in got if m.topic.endswith("/decision")]) >= 50)  # ... and delivered
    assert [p["seq"] for p in sub.payloads("sortline/line-1/decision")] == list(range(50))
    status = sub.wait_for(lambda got: any(m.json().get("reason") == "shutdown" for m in got))
    assert status[-1].retain and status[-1].json()["state"] == "offline"
    with pytest.raises(MqttLinkError):
        publish(link, 99, 30)

    mosquitto.stop()  # with the broker away, close() gives up after flush_timeout and counts
    stranded = MqttLink(mosquitto.settings(), "line-2")
    stranded.start(lambda command: {}, lambda trigger: None)
    for seq in range(3):
        publish(stranded, seq, 30)
    started = time.monotonic()
    assert stranded.close(flush_timeout=0.3) == 3
    assert time.monotonic() - started < 3


def test_tls_with_the_test_ca_and_a_password(mosquitto_tls, subscriber, make_link, caplog):
    caplog.set_level(logging.DEBUG)  # paho's packet log included
    link = make_link(mosquitto_tls.settings())
    sub = subscriber(mosquitto_tls, link.topics.decision)
    assert link.wait_connected(5), link.last_error
    publish(link, 0, 5)
    assert sub.wait_for(1)[0].json()["seq"] == 0
    link.close(flush_timeout=1)
    assert f"{mosquitto_tls.host}:{mosquitto_tls.port}" in caplog.text and "user sortline" in caplog.text
    assert mosquitto_tls.password not in caplog.text


def test_tls_against_the_wrong_ca_fails_clearly(mosquitto_tls, make_link, tls_files, caplog, wait_until):
    caplog.set_level(logging.DEBUG)
    settings = mosquitto_tls.settings(tls=TlsSettings(enabled=True, ca_file=tls_files.wrong_ca_file))
    link = make_link(settings)
    assert not link.wait_connected(1)
    wait_until(lambda: link.last_error, what="a connection error")
    assert "TLS certificate verification failed" in link.last_error
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("TLS certificate verification failed" in message for message in errors)
    assert mosquitto_tls.password not in caplog.text


def test_a_wrong_password_is_refused_clearly_without_logging_it(mosquitto_tls, make_link, caplog, wait_until):
    caplog.set_level(logging.DEBUG)
    link = make_link(mosquitto_tls.settings(password="not-the-password-xyz"))
    wait_until(lambda: link.last_error, what="the broker's refusal")
    assert not link.connected
    assert "refused the connection" in link.last_error
    assert "not-the-password-xyz" not in caplog.text and mosquitto_tls.password not in caplog.text


def test_client_certificate_with_an_encrypted_key(make_mosquitto, tls_files, make_link, caplog, wait_until):
    caplog.set_level(logging.DEBUG)
    broker = make_mosquitto(tls=tls_files, extra_config="require_certificate true")
    client_tls = TlsSettings(
        enabled=True,
        ca_file=tls_files.ca_file,
        cert_file=tls_files.client_cert,
        key_file=tls_files.client_key,
        key_password=tls_files.client_key_password,
    )
    link = make_link(broker.settings(tls=client_tls))
    assert link.wait_connected(5), link.last_error
    assert tls_files.client_key_password not in caplog.text

    without_cert = make_link(broker.settings(), device_id="line-2")  # CA only: the broker wants a certificate
    assert not without_cert.wait_connected(1)
    assert "CERTIFICATE_REQUIRED" in wait_until(lambda: without_cert.last_error, what="the TLS alert")

    wrong_password = TlsSettings(**{**client_tls.model_dump(), "key_password": "wrong"})
    with pytest.raises(MqttLinkError, match="TLS setup failed"):
        MqttLink(broker.settings(tls=wrong_password), "line-3").start(lambda c: {}, lambda t: None)


def test_stats_are_published_with_device_and_time(mosquitto, subscriber, make_link):
    link = make_link(mosquitto.settings())
    sub = subscriber(mosquitto, link.topics.stats)
    assert link.wait_connected(5)
    link.publish_stats({"fps": 25.0, "queue_depth": link.queue_depth})
    stats = sub.wait_for(1)[0]
    assert not stats.retain
    assert json.loads(stats.payload) | {"ts": 0} == {"fps": 25.0, "queue_depth": 0, "device": "line-1", "ts": 0}
