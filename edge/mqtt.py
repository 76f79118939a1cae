"""The daemon's one MQTT connection: decisions out, status and stats, commands and triggers in.

Delivery contract for decisions: QoS 1, in the order they were made, at least once. While the broker
is away decisions wait in the outbox (`edge.outbox`: ``mqtt.queue_size`` at most; when it is full new ones
are refused and counted in ``dropped``) and go out in order once it is back; one whose deadline passed
meanwhile goes out as a ``late`` reject. A decision the broker had not acknowledged when the connection
died is sent again, so a subscriber may see it twice: subscribers dedupe by the decision's ``seq``.
Commands and triggers are routed by `edge.command_router`; paho's callbacks here only hand over.

Why the queue is ours and not paho's: paho keeps unacknowledged QoS 1 messages and resends them on
reconnect, but a message published while it is reconnecting (CONNECT sent, CONNACK not yet in) goes
straight out ahead of the older ones it resends after CONNACK, and it cannot switch protocol version
without a new client. So decisions are handed to paho by a single sender thread, at most ``_WINDOW``
unacknowledged at a time, and only between the SUBACK that follows a CONNACK (paho has re-queued
its resends by then) and the next disconnect.

Topics, under ``<topic_prefix>/<device_id>``:
  status          retained JSON ``{"state": "online"|"offline", ..., "device", "ts"}``; the last will
                  (retained ``offline``) covers a crash or a pulled cable
  decision        QoS 1, never retained; MQTT 5 Message Expiry = what is left before the decision's
                  deadline when it is sent (at least 1 s). Over 3.1.1 only the payload's deadline tells.
  stats           QoS 0, not retained, skipped while disconnected
  command         in: JSON commands (edge.commands); replies on command/reply, with the MQTT 5
                  correlation data when the command carries one, on its response topic when that lies
                  under command/reply/
  trigger         in: ``{"item_id": "..."}``; refused triggers are explained on trigger/error
The link keeps no broker session (clean start): commands sent while the daemon was away are stale.
Subscribers that must not miss decisions while *they* are away need a persistent session on a
broker with persistence enabled.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.command_router import CommandHandler, CommandRouter
from edge.commands import Trigger
from edge.config import MqttSettings
from edge.outbox import Outbox

log = logging.getLogger(__name__)
paho_log = logging.getLogger(f"{__name__}.paho")

_WINDOW = 16  # decisions handed to paho and not yet acknowledged (less if the broker's Receive Maximum says so)
_PAHO_INFLIGHT = 64  # above _WINDOW so status and replies never make paho hold decisions back itself
_UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason; paho also maps a 3.1.1 broker's "refused: protocol version" to it


class MqttLinkError(Exception):
    """The link cannot be set up (unreadable TLS files, wrong key password, start twice)."""


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, under ``<prefix>/<device_id>``."""

    status: str  # retained: online/offline and what the daemon runs
    decision: str  # QoS 1, never retained
    stats: str  # periodic figures, QoS 0
    command: str  # subscribed: JSON commands
    command_reply: str  # replies when the command carries no MQTT 5 response topic
    trigger: str  # subscribed: {"item_id": "..."} from a photo-eye or PLC
    trigger_error: str  # why a trigger was refused

    @classmethod
    def under(cls, prefix: str, device_id: str) -> Topics:
        base = f"{prefix.rstrip('/')}/{device_id}"
        return cls(
            status=f"{base}/status",
            decision=f"{base}/decision",
            stats=f"{base}/stats",
            command=f"{base}/command",
            command_reply=f"{base}/command/reply",
            trigger=f"{base}/trigger",
            trigger_error=f"{base}/trigger/error",
        )


class MqttLink:
    """Owns the paho client; safe to call from any thread."""

    def __init__(self, settings: MqttSettings, device_id: str) -> None:
        self._settings = settings
        self._device_id = device_id
        self.topics = Topics.under(settings.topic_prefix, device_id)
        self._client_id = settings.client_id or f"sortline-{device_id}"
        self._protocol = "3.1.1" if settings.protocol == "3.1.1" else "5"

        self._lock = threading.Condition()  # guards the state below; never held while calling paho
        # held by the sender from "ready?" to handing a decision over, and while the client is replaced
        self._send_lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._outbox = Outbox(settings.queue_size)  # decisions, in order, until the broker has them
        self._acks: list[tuple[mqtt.Client, int, ReasonCode]] = []  # settled by the sender thread only
        self._ready = False  # connected and subscribed: decisions may be handed over
        self._window = _WINDOW
        self._connected = threading.Event()
        self._subscribe_mid: int | None = None
        self._status: dict[str, Any] = {"state": "online"}
        self._connects = 0
        self._last_error: str | None = None
        self._socket_error: str | None = None  # paho's last socket-level error, for the next failure report
        self._refused = False  # this attempt's CONNACK refusal was already reported
        self._started = False
        self._closing = False  # close() called: no new decisions
        self._stopped = False  # close() done: worker threads exit

        self._router: CommandRouter | None = None
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # ----------------------------------------------------------------- public API

    def start(self, on_command: CommandHandler, on_trigger: Callable[[Trigger], None]) -> None:
        """Connect in the background; reconnects for ever with backoff until close().

        ``on_command`` runs on the command thread, one command at a time (`edge.command_router`);
        ``on_trigger`` runs on the network thread and must only hand the trigger on, or raise CommandError
        to refuse it (the reason goes to the trigger error topic).
        """
        if self._started:
            raise MqttLinkError("MqttLink.start() called twice")
        self._started = True
        self._router = CommandRouter(self.topics, self._publish_json, on_command, on_trigger)
        self._router.start()
        self._sender.start()
        self._client = self._new_client()
        self._connect(self._client)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def set_status(self, payload: dict) -> None:
        """Retained device status; remembered and published again after every reconnect."""
        with self._lock:
            self._status = dict(payload)
        client = self._client
        if client is not None and self.connected:
            self._publish_status(client)

    def publish_decision(self, decision: dict, ttl_s: float, late: dict) -> bool:
        """Queue a decision for in-order delivery; False (and counted) when the queue is full. ``late`` is what
        goes out instead once the decision's ``deadline`` has passed (a reject: the item has gone by)."""
        payload = json.dumps(decision, separators=(",", ":")).encode()
        late_payload = json.dumps(late, separators=(",", ":")).encode()
        with self._lock:
            if self._closing:
                raise MqttLinkError("publish_decision() after close()")
            if not self._outbox.put(payload, late_payload, float(decision["deadline"]), ttl_s):
                dropped = self._outbox.dropped
                if dropped == 1 or dropped % 100 == 0:
                    log.warning(
                        "decision queue full (%d waiting for the broker): dropped %d so far", self._outbox.size, dropped
                    )
                return False
            self._lock.notify_all()
        return True

    def publish_stats(self, stats: dict) -> None:
        """Best effort: stats are periodic, so while disconnected they are skipped, not queued."""
        client = self._client
        if client is not None and self.connected:
            client.publish(self.topics.stats, self._stamped(stats), qos=0)

    def close(self, flush_timeout: float) -> int:
        """Flush, say offline, disconnect; returns the number of decisions left undelivered."""
        with self._lock:
            self._closing = True
            self._lock.wait_for(lambda: not self._outbox, timeout=flush_timeout)
            left = len(self._outbox)
            self._status = {"state": "offline", "reason": "shutdown"}
            self._lock.notify_all()
        with self._send_lock:  # a 3.1.1 fallback has swapped its client in, or sees _closing and starts none
            client = self._client
        if client is not None:
            if self.connected:
                info = client.publish(self.topics.status, self._stamped(self._status), qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=max(1.0, min(flush_timeout, 5.0)))
                except (RuntimeError, ValueError):
                    log.debug("offline status not confirmed; the broker publishes the last will instead")
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        if self._router is not None:
            self._router.stop()
        if self._sender.is_alive():
            self._sender.join(timeout=5)
        if left:
            log.warning("%d decision(s) not delivered at shutdown", left)
        log.info("MQTT link closed")
        return left

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queue_depth(self) -> int:
        """Decisions not yet acknowledged by the broker (queued or in flight)."""
        with self._lock:
            return len(self._outbox)

    @property
    def dropped(self) -> int:
        """Decisions refused because the queue was full, or rejected by the broker (MQTT 5 PUBACK)."""
        with self._lock:
            return self._outbox.dropped

    @property
    def late(self) -> int:
        """Decisions whose deadline passed while they waited for the broker: sent as ``late`` rejects."""
        with self._lock:
            return self._outbox.late

    @property
    def reconnects(self) -> int:
        return max(0, self._connects - 1)

    @property
    def protocol(self) -> str:
        """The MQTT version in use, or being tried: "5" or "3.1.1"."""
        return self._protocol

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped; None once connected."""
        return self._last_error

    # ----------------------------------------------------------------- connection

    def _new_client(self) -> mqtt.Client:
        settings = self._settings
        v5 = self._protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # No broker session: commands sent while the daemon was away are stale, and
            # unacknowledged decisions are resent by this side anyway.
            clean_session=None if v5 else True,
        )
        client.suppress_exceptions = True  # a bug in a callback is logged, never kills the network thread
        client.on_log = self._on_paho_log
        client.max_inflight_messages_set(_PAHO_INFLIGHT)
        client.reconnect_delay_set(settings.reconnect_initial_s, settings.reconnect_max_s)
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            self._configure_tls(client)
        client.on_pre_connect = self._set_last_will  # before every (re)connect: the will carries that time
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _set_last_will(self, client: mqtt.Client, _userdata: Any) -> None:
        """The status the broker publishes if this connection dies; its ts is when the connection was made."""
        will = {"state": "offline", "reason": "connection lost"}
        client.will_set(self.topics.status, self._stamped(will), qos=1, retain=True)

    def _configure_tls(self, client: mqtt.Client) -> None:
        tls = self._settings.tls
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,  # None: the system's CA store
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                keyfile_password=tls.key_password.get_secret_value() if tls.key_password else None,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            files = ", ".join(str(p) for p in (tls.ca_file, tls.cert_file, tls.key_file) if p)
            raise MqttLinkError(f"MQTT TLS setup failed ({files}): {exc}") from None
        # insecure skips the host name check only; the chain is still verified against the CA.
        client.tls_insecure_set(tls.insecure)

    def _connect(self, client: mqtt.Client) -> None:
        settings = self._settings
        log.info(
            "connecting to MQTT broker %s:%d (MQTT %s, TLS %s, user %s, client id %s)",
            settings.host,
            settings.port,
            self._protocol,
            "on" if settings.tls.enabled else "off",
            settings.username or "<anonymous>",
            self._client_id,
        )
        clean_start = True if self._protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        client.connect_async(settings.host, settings.port, settings.keepalive_s, clean_start=clean_start)
        client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, properties: Properties
    ) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            if reason.value == _UNSUPPORTED_PROTOCOL and self._settings.protocol == "auto" and self._protocol == "5":
                log.warning("broker %s does not speak MQTT 5; falling back to MQTT 3.1.1", self._where())
                threading.Thread(target=self._fall_back_to_311, args=(client,), daemon=True).start()
                return
            self._refused = True
            self._note_failure(f"broker refused the connection: {reason}")
            return
        self._connects += 1
        self._last_error = None
        # MQTT 5 brokers say how many unacknowledged QoS 1 messages they accept; leave room for status and replies.
        receive_maximum = getattr(properties, "ReceiveMaximum", 65535)
        with self._lock:
            self._window = min(_WINDOW, max(1, receive_maximum - 4))
        result, self._subscribe_mid = client.subscribe([(self.topics.command, 1), (self.topics.trigger, 1)])
        self._publish_status(client)
        self._connected.set()
        log.info(
            "connected to MQTT broker %s (MQTT %s)%s",
            self._where(),
            self._protocol,
            f", reconnect #{self.reconnects}" if self.reconnects else "",
        )
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:  # no SUBACK will come to open the gate
            log.error("subscribing to %s failed: %s", self.topics.command, mqtt.error_string(result))
            self._open_gate()

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, mid: int, reasons: list, _props: Any) -> None:
        if client is not self._client or mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reasons if code.is_failure]
        if refused:
            log.error("broker refused the command/trigger subscriptions: %s", ", ".join(refused))
        # paho queued its resends of unacknowledged decisions while handling CONNACK, before this
        # SUBACK: newer decisions handed over from now on go out after them.
        self._open_gate()

    def _open_gate(self) -> None:
        with self._lock:
            self._ready = True
            self._lock.notify_all()

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if client is not self._client:
            return
        # Only hand over: waiting here for the sender (inside client.publish, which takes paho's callback lock
        # this runs under) could deadlock. A decision handed over meanwhile waits in paho's queue and goes
        # out, in order, with its resends after the reconnect.
        with self._lock:
            self._ready = False
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not was_connected:  # an attempt that failed after the TCP connect (TLS alert, broker closed)
            if not self._refused and not self._closing:
                self._note_failure(self._socket_error or f"the broker closed the connection ({reason})")
            self._refused, self._socket_error = False, None
            return
        if self._closing:
            log.info("disconnected from MQTT broker %s", self._where())
        else:
            self._last_error = f"connection lost: {reason}"
            log.warning(
                "disconnected from MQTT broker %s: %s; %d decision(s) waiting, reconnecting",
                self._where(),
                reason,
                self.queue_depth,
            )

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        if client is not self._client:
            return
        # paho calls this from inside its `except OSError` block, so the cause is at hand.
        exc = sys.exc_info()[1]
        # a broker that is down or restarting is expected on a plant network; a TLS problem is not
        self._note_failure(
            _describe_connect_error(exc), logging.ERROR if isinstance(exc, ssl.SSLError) else logging.WARNING
        )

    def _on_paho_log(self, _client: mqtt.Client, _userdata: Any, level: int, message: str) -> None:
        """paho's own messages at DEBUG, except bugs in our callbacks; socket errors feed our reports."""
        if message.startswith("Caught exception in"):
            paho_log.error("%s", message)
            return
        if level == mqtt.MQTT_LOG_ERR:
            self._socket_error = message
        paho_log.debug("%s", message)

    def _note_failure(self, message: str, level: int = logging.ERROR) -> None:
        """Log a failure once, then quietly while it repeats (reconnecting every few seconds)."""
        level = logging.DEBUG if message == self._last_error else level
        self._last_error = message
        log.log(level, "cannot connect to MQTT broker %s: %s (retrying with backoff)", self._where(), message)

    def _fall_back_to_311(self, old: mqtt.Client) -> None:
        old.disconnect()
        old.loop_stop()
        with self._send_lock:
            with self._lock:
                if self._closing:
                    return
                self._outbox.send_again()  # the new client starts with an empty session
                self._ready = False
                self._protocol = "3.1.1"
                self._client = self._new_client()
                client = self._client
            self._connect(client)

    def _where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    # ----------------------------------------------------------------- decisions

    def _send_loop(self) -> None:
        """The only thread that hands decisions to paho, so they leave in the order they were queued."""
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._acks or self._stopped or self._can_send())
                self._settle_acks()
                if self._stopped:
                    return
            with self._send_lock:
                with self._lock:
                    if not self._can_send():
                        continue
                    item, payload, expiry = self._outbox.take()
                    client = self._client
                    properties = self._expiry(expiry)
                assert client is not None
                # Outside self._lock: paho calls on_publish holding its own lock, which takes ours.
                info = client.publish(self.topics.decision, payload, qos=1, properties=properties)
                with self._lock:
                    self._outbox.sent(info.mid, item)  # an early PUBACK waits in _acks until this is done

    def _can_send(self) -> bool:
        return self._ready and self._outbox.can_send(self._window)

    def _on_publish(self, client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        with self._lock:
            self._acks.append((client, mid, reason))
            self._lock.notify_all()

    def _settle_acks(self) -> None:
        for client, mid, reason in self._acks:
            if client is not self._client:
                continue  # an acknowledgement from a client replaced since (3.1.1 fallback)
            item = self._outbox.acknowledged(mid, refused=reason.is_failure)
            if item is not None:
                log.error("broker refused a decision (%s): %s", reason, item.payload[:200].decode(errors="replace"))
        self._acks.clear()
        self._lock.notify_all()  # close() may be waiting for the queue to drain

    def _expiry(self, seconds: int) -> Properties | None:
        """MQTT 5 Message Expiry (`edge.outbox.Outgoing.now`); 3.1.1 has none."""
        if self._protocol != "5":
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = seconds
        return properties

    # ----------------------------------------------------------------- helpers

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is self._client and self._router is not None:
            self._router.route(message)

    def _publish_json(self, topic: str, body: dict[str, Any], properties: Properties | None) -> None:
        """A reply or trigger error, stamped, QoS 1, on whichever client is current."""
        client = self._client
        if client is not None:
            client.publish(topic, self._stamped(body), qos=1, properties=properties)

    def _stamped(self, payload: dict) -> str:
        return json.dumps({**payload, "device": self._device_id, "ts": round(time.time(), 3)}, separators=(",", ":"))

    def _publish_status(self, client: mqtt.Client) -> None:
        with self._lock:
            status = dict(self._status)
        client.publish(self.topics.status, self._stamped(status), qos=1, retain=True)


def _describe_connect_error(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running and listening on this port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name: {exc}"
    if isinstance(exc, OSError):
        return str(exc) or type(exc).__name__
    return "connection failed"
