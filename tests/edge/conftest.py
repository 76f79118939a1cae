"""Real MQTT brokers for the edge tests.

Fixtures:
- ``mosquitto``: a mosquitto on 127.0.0.1 (random free port, persistence on), with ``.host``, ``.port``,
  ``.stop()``, ``.start()`` (same port), ``.kill()`` (SIGKILL: no persistence save), ``.settings(**kw)``
  (an ``MqttSettings`` pointing at it).
- ``mosquitto_tls``: the same behind TLS (test CA made at test time) with a password file; also
  ``.tls`` (the ``TlsFiles``) and ``.username`` / ``.password``.
- ``make_mosquitto(tls=False, users=None, extra_config="")``: more brokers, e.g. one requiring client certs.
- ``tls_files``: the CA, server and client certificates (client key encrypted) and an unrelated CA.
- ``subscriber(broker, topics, qos=1)``: collects messages, keeps its broker session and resubscribes
  after a restart; ``.wait_for(count_or_predicate, timeout)``, ``.messages``, ``.payloads()``.
- ``tcp_proxy(broker, reject_mqtt5=False)``: a TCP relay in front of a broker, for faults that a
  broker restart cannot make: ``.pause()`` (traffic held), ``.resume()``, ``.cut()`` (connections
  reset, as when a cable is pulled); ``reject_mqtt5`` answers MQTT 5 CONNECTs like a 3.1.1-only broker.
- ``wait_until(predicate, timeout, what)``: poll with a deadline instead of sleeping.
- ``browser``: headless Chromium through Selenium (one per test module), with the scraper's quiet flags and
  every host but 127.0.0.1 unresolvable: the pages under test are the only thing it can reach.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.config import MqttSettings, TlsSettings
from tests.edge.daemon_helpers import STARTED
from tests.edge.daemon_helpers import wait_until as poll_until
from tests.ports import free_port

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
HOST = "127.0.0.1"


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=10, what="...")``: the predicate's first truthy result."""
    return poll_until


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by ca_file, CN "sortline-test-client"
    client_key: Path  # encrypted with client_key_password
    client_key_password: str
    wrong_ca_file: Path  # a CA that signed nothing here


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _sign(directory: Path, name: str, ca: tuple[Path, Path], extensions: str, key_password: str | None) -> tuple:
    cert, key, csr, ext = (directory / f"{name}.{suffix}" for suffix in ("crt", "key", "csr", "ext"))
    encrypt = ["-passout", f"pass:{key_password}"] if key_password else ["-nodes"]
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", *encrypt,
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    ext.write_text(extensions + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away PKI made with the openssl CLI (no extra Python dependency)."""
    directory = tmp_path_factory.mktemp("pki")
    ca = _make_ca(directory, "sortline-test-ca")
    wrong_ca, _ = _make_ca(directory, "unrelated-ca")
    server = _sign(directory, "localhost", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost", None)
    password = secrets.token_urlsafe(12)
    client = _sign(directory, "sortline-test-client", ca, "extendedKeyUsage=clientAuth", password)
    return TlsFiles(ca[0], server[0], server[1], client[0], client[1], password, wrong_ca)


# --------------------------------------------------------------------------- the broker


class Mosquitto:
    """One mosquitto process on a fixed port: stop() and start() keep the port, for fault tests."""

    host = HOST

    def __init__(
        self,
        directory: Path,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        extra_config: str = "",
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.users = dict(users or {})
        self.config_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self._process: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            # Persistence, as on a plant broker: a clean stop keeps queued QoS 1 messages for
            # subscribers with a session, so "every decision arrives" holds across a restart.
            "persistence true",
            f"persistence_location {directory}/",
            "max_queued_messages 100000",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to "mosquitto" and cannot read tmp_path
        if self.users:
            password_file = directory / "passwords"
            password_file.touch(mode=0o600)
            for name, password in self.users.items():
                subprocess.run([str(MOSQUITTO_PASSWD), "-b", str(password_file), name, password], check=True)
            lines.append(f"password_file {password_file}")
        if tls is not None:
            lines += [f"cafile {tls.ca_file}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
        self.config_file.write_text("\n".join([*lines, extra_config, ""]))

    @property
    def username(self) -> str | None:
        return next(iter(self.users), None)

    @property
    def password(self) -> str | None:
        return self.users.get(self.username) if self.username else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        assert not self.running, "mosquitto is already running"
        self._process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.config_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def accepting() -> bool:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self._process.returncode}): {stderr}{self.log_text()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        poll_until(accepting, timeout, f"mosquitto to accept connections on port {self.port}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID: a clean stop that saves the persistence file."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the broker dies at once, saving nothing."""
        self._signal(signal.SIGKILL, 5.0)

    def _signal(self, signum: int, timeout: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
        if process.stderr:
            process.stderr.close()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def settings(self, **overrides: Any) -> MqttSettings:
        """MqttSettings for this broker (TLS with the test CA and credentials when it has them)."""
        values: dict[str, Any] = {"host": HOST, "port": self.port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
        if self.username:
            values.update(username=self.username, password=self.password)
        if self.tls is not None:
            values["tls"] = TlsSettings(enabled=True, ca_file=self.tls.ca_file)
        values.update(overrides)
        return MqttSettings(**values)


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    if not MOSQUITTO.exists():
        pytest.skip(f"{MOSQUITTO} is not installed (apt-get install mosquitto)")
    brokers: list[Mosquitto] = []

    def make(tls: TlsFiles | None = None, users: dict[str, str] | None = None, extra_config: str = "") -> Mosquitto:
        directory = tmp_path / f"mosquitto-{len(brokers)}"
        directory.mkdir()
        broker = Mosquitto(directory, tls=tls, users=users, extra_config=extra_config)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(make_mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    return make_mosquitto()


@pytest.fixture
def mosquitto_tls(make_mosquitto: Callable[..., Mosquitto], tls_files: TlsFiles) -> Mosquitto:
    return make_mosquitto(tls=tls_files, users={"sortline": f"pw-{secrets.token_urlsafe(12)}"})


# --------------------------------------------------------------------------- a subscriber


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Collects every message on its topics. It keeps a broker session (MQTT 5, one hour) and
    resubscribes on each connect, so QoS 1 messages published while it was away still arrive."""

    def __init__(self, broker: Mosquitto, topics: str | list[str], qos: int = 1, protocol: str = "5") -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.messages: list[Received] = []
        self.connects = 0
        self.subscriptions = 0  # SUBACKs received: one per (re)connect
        self._lock = threading.Lock()
        self.v5 = v5 = protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-subscriber-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            self.client.tls_set(ca_certs=str(broker.tls.ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        connect_properties = None
        if v5:
            connect_properties = Properties(PacketTypes.CONNECT)
            connect_properties.SessionExpiryInterval = 3600
        self.client.connect_async(
            broker.host, broker.port, keepalive=10, clean_start=False, properties=connect_properties
        )
        self.client.loop_start()
        self.wait_subscribed(1)

    def wait_subscribed(self, times: int, timeout: float = 10.0) -> None:
        """Wait for the `times`-th subscription, e.g. 2: subscribed again after a broker restart."""
        poll_until(
            lambda: self.subscriptions >= times, timeout, f"subscriber on {self.topics} to be subscribed x{times}"
        )

    def _on_subscribe(self, *_args: Any) -> None:
        with self._lock:
            self.subscriptions += 1

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            self.connects += 1
            if self.v5:  # keep the retain flag as published, so tests can tell retained from live
                options = SubscribeOptions(qos=self.qos, retainAsPublished=True)
                client.subscribe([(topic, options) for topic in self.topics])
            else:
                client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        with self._lock:
            self.messages.append(Received(message.topic, message.payload, message.qos, message.retain, properties))

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def payloads(self, topic: str | None = None) -> list[Any]:
        return [m.json() for m in self.received(topic)]

    def wait_for(self, condition: int | Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Wait until ``condition`` messages arrived (or the predicate on the list holds)."""
        check = (lambda got: len(got) >= condition) if isinstance(condition, int) else condition
        poll_until(lambda: check(self.received()), timeout, f"messages on {self.topics} (have {len(self.received())})")
        return self.received()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: Mosquitto, topics: str | list[str], qos: int = 1, protocol: str = "5") -> Subscriber:
        made.append(Subscriber(broker, topics, qos, protocol))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


# --------------------------------------------------------------------------- a TCP relay for network faults


class TcpProxy:
    """Relays 127.0.0.1:<port> to a broker. pause() holds traffic in both directions (a frozen
    link: published messages stay in flight), cut() resets every connection (a pulled cable)."""

    host = HOST

    def __init__(self, broker: Mosquitto, reject_mqtt5: bool = False) -> None:
        self.broker = broker
        self.reject_mqtt5 = reject_mqtt5
        self.refused_mqtt5 = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:  # linger 0: the peer gets a reset, not a polite close
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.resume()
        self.cut()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        first = b""
        if self.reject_mqtt5:
            first = _read_connect(downstream)
            if _protocol_level(first) == 5:
                self.refused_mqtt5 += 1
                downstream.sendall(b"\x20\x02\x00\x01")  # CONNACK: refused, unacceptable protocol version
                downstream.close()
                return
        try:
            upstream = socket.create_connection((self.broker.host, self.broker.port), timeout=2)
        except OSError:
            downstream.close()
            return
        upstream.settimeout(None)
        if first:
            upstream.sendall(first)
        with self._lock:
            self._pairs.append((downstream, upstream))
        for source, sink in ((downstream, upstream), (upstream, downstream)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([source], [], [], 0.1)
                if not readable:
                    if source.fileno() < 0:
                        return
                    continue
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()


def _read_connect(sock: socket.socket) -> bytes:
    """The client's first packet (CONNECT), read whole."""
    data = b""
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
            length, used = _remaining_length(data)
            if length is not None and len(data) >= 1 + used + length:
                return data
    except OSError:
        return data
    finally:
        sock.settimeout(None)


def _remaining_length(data: bytes) -> tuple[int | None, int]:
    value, shift = 0, 0
    for used, byte in enumerate(data[1:5], start=1):
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, used
        shift += 7
    return None, 0


def _protocol_level(connect: bytes) -> int | None:
    _, used = _remaining_length(connect)
    start = 1 + used  # variable header: protocol name (2-byte length + "MQTT"), then the level
    if len(connect) < start + 7:
        return None
    name_length = int.from_bytes(connect[start : start + 2], "big")
    return connect[start + 2 + name_length]


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[..., TcpProxy]]:
    made: list[TcpProxy] = []

    def make(broker: Mosquitto, reject_mqtt5: bool = False) -> TcpProxy:
        made.append(TcpProxy(broker, reject_mqtt5))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


# --------------------------------------------------------------------------- the daemon's link


@pytest.fixture
def make_link() -> Iterator[Callable[..., Any]]:
    """``make_link(settings, device_id="line-1", on_command=None, on_trigger=None)``: a started
    MqttLink, closed at teardown. Handlers default to recording what they get in ``link.seen``."""
    from edge.mqtt import MqttLink

    made: list[MqttLink] = []

    def make(
        settings: MqttSettings,
        device_id: str = "line-1",
        on_command: Callable[..., dict] | None = None,
        on_trigger: Callable[..., None] | None = None,
    ) -> MqttLink:
        link = MqttLink(settings, device_id)
        link.seen = []  # type: ignore[attr-defined]
        link.start(
            on_command or (lambda command: link.seen.append(command) or {}),
            on_trigger or link.seen.append,
        )
        made.append(link)
        return link

    yield make
    for link in made:
        link.close(flush_timeout=0)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pages are tested in Chromium through Selenium")
    from selenium.webdriver.chrome.service import Service

    from scraper.browser import CHROMIUM_FLAGS
    from tests.scraper.shop_site import LOOPBACK_ONLY

    options = webdriver.ChromeOptions()
    for flag in (*CHROMIUM_FLAGS, *LOOPBACK_ONLY):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: what the page's CSP blocked
    os.environ.setdefault("SE_OFFLINE", "true")
    scratch = tmp_path_factory.mktemp("chromium-tmp")  # Chromium's org.chromium.Chromium.* folders, not /tmp's
    service = Service("/usr/bin/chromedriver", env={**os.environ, "TMPDIR": str(scratch)})
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def no_daemon_outlives_its_test() -> Iterator[None]:
    """A test that fails halfway must not leave its daemon running (and using the CPU) for the next ones."""
    yield
    while STARTED:
        daemon = STARTED.pop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
