"""The OPC UA server against a real asyncua client: the real daemon on a real clip and model, browsed, read,
subscribed to and commanded as a PLC or SCADA would."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.edge.daemon_helpers import command, start_daemon, static_clip, terminate, write_config
from tests.edge.test_config_cli import run_cli
from tests.ports import free_port

asyncua = pytest.importorskip("asyncua", reason="the OPC UA server needs the opcua extra")
ua = asyncua.ua

DEVICE = "line-1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def opcua_config(tmp_path: Path, mosquitto, color_bundle: Path, **opcua: object) -> tuple[Path, str]:
    port = free_port()
    clip = static_clip(tmp_path / "blue.avi", (30, 40, 220))
    config = write_config(
        tmp_path, mosquitto, color_bundle, clip, camera={"realtime": True, "loop": True},
        trigger={"mode": "continuous", "min_interval_s": 0.2}, opcua={"enabled": True, "port": port, **opcua},
    )  # fmt: skip
    host = opcua.get("host", "127.0.0.1")
    return config, f"opc.tcp://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/sortline/"


class Events:
    """SortDecisionEventType notifications, in the order they came."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)


class Changes:
    """Data-change notifications of a subscription."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.received.append(value)


async def connect(url: str, **options: Any) -> Any:
    """A connected client, retried while the daemon is still starting."""
    for _ in range(150):
        client = asyncua.Client(url, timeout=10)
        for name, value in options.items():
            getattr(client, name)(value)
        try:
            await client.connect()
            return client
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
    raise AssertionError(f"no OPC UA server at {url}")


async def device_node(client: Any) -> tuple[Any, int]:
    index = await client.get_namespace_index("urn:sortline")
    return await client.nodes.objects.get_child([f"{index}:Sortline", f"{index}:{DEVICE}"]), index


async def read(node: Any, index: int, group: str, names: list[str]) -> dict[str, Any]:
    folder = await node.get_child(f"{index}:{group}")
    return {name: await (await folder.get_child(f"{index}:{name}")).read_value() for name in names}


def test_decisions_status_events_and_methods_over_opcua(tmp_path, mosquitto, subscriber, color_bundle):
    config, url = opcua_config(tmp_path, mosquitto, color_bundle)
    sub = subscriber(mosquitto, [f"sortline/{DEVICE}/decision", f"sortline/{DEVICE}/command/reply"])
    daemon = start_daemon(config)

    async def session() -> tuple[list[Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        client = await connect(url)
        try:
            device, index = await device_node(client)
            events = Events()
            subscription = await client.create_subscription(20, events)
            event_type = await client.nodes.base_event_type.get_child(f"{index}:SortDecisionEventType")
            await subscription.subscribe_events(device, event_type)
            while len(events.received) < 5:
                await asyncio.sleep(0.05)
            last = await read(device, index, "LastDecision", ["ItemId", "Label", "Lane", "Seq", "Reason", "DecidedAt"])
            await device.call_method(f"{index}:SetThreshold", ua.Variant(0.999, ua.VariantType.Double))
            refusals = {}
            for name, arguments in (
                ("SetThreshold", [ua.Variant(1.5, ua.VariantType.Double)]),
                ("SetThreshold", [ua.Variant("high", ua.VariantType.String)]),
                ("Trigger", [ua.Variant("PLC-1", ua.VariantType.String)]),  # continuous mode takes none
            ):
                with pytest.raises(ua.UaStatusCodeError) as refused:
                    await device.call_method(f"{index}:{name}", *arguments)
                refusals[f"{name}({arguments[0].Value})"] = refused.value.code
            await device.call_method(f"{index}:Pause")
            status = {}
            for _ in range(200):  # the counts are the daemon's figures, refreshed once a second
                status = await read(device, index, "Status", ["State", "Threshold", "Model", "Frames", "Decisions"])
                if status["State"] == "Paused" and status["Decisions"] >= 5:
                    break
                await asyncio.sleep(0.05)
            await device.call_method(f"{index}:Resume")
            return events.received, last, status, refusals
        finally:
            await client.disconnect()

    try:
        received, last, status, refusals = asyncio.run(session())
        decisions = sub.wait_for(lambda got: len(got) >= 5)
        reply = command(sub, {"command": "resume"})
    finally:
        terminate(daemon)
    by_seq = {d["seq"]: d for d in (m.json() for m in decisions if m.topic.endswith("/decision"))}
    seqs = [event.Seq for event in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one event per decision, none missed, in order
    for event in received[:5]:
        sent = by_seq[event.Seq]  # the same decision as over MQTT
        assert (event.ItemId, event.Label, event.Lane) == (sent["item_id"], sent["label"], sent["lane"])
    assert last["Label"] == "blue" and last["Lane"] == 3 and last["Reason"] == "" and last["Seq"] >= 5
    assert last["DecidedAt"].year >= 2026
    assert status["State"] == "Paused" and status["Threshold"] == pytest.approx(0.999)
    assert status["Model"].startswith("color-test") and status["Decisions"] >= 5 and status["Frames"] > 0
    assert refusals == {
        "SetThreshold(1.5)": ua.StatusCodes.BadOutOfRange,
        "SetThreshold(high)": ua.StatusCodes.BadTypeMismatch,
        "Trigger(PLC-1)": ua.StatusCodes.BadInvalidState,
    }
    assert reply["threshold"] == pytest.approx(0.999)  # one daemon state, whichever way the command came in


def test_beyond_loopback_only_the_configured_user_over_signed_messages(tmp_path, mosquitto, color_bundle):
    state, trusted = tmp_path / "state", tmp_path / "trusted"
    trusted.mkdir()
    client_certificate(tmp_path, "client")
    client_certificate(tmp_path, "stranger")
    (trusted / "client-cert.der").write_bytes((tmp_path / "client-cert.der").read_bytes())
    config, url = opcua_config(
        tmp_path, mosquitto, color_bundle, host="0.0.0.0", username="plc", trusted_clients=str(trusted)
    )
    refused = run_cli("--config", str(config), "check-config", env={"STATE_DIRECTORY": str(state)})
    assert refused.returncode == 2 and "set username and a password" in refused.stderr

    env = {"STATE_DIRECTORY": str(state), "SORTLINE_OPCUA__PASSWORD": "opc-secret-7"}
    checked = run_cli("--config", str(config), "check-config", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "opc-secret-7" not in checked.stdout + checked.stderr
    certificate = state / "opcua" / "server-cert.der"
    assert certificate.is_file() and oct((state / "opcua" / "server-key.pem").stat().st_mode & 0o777) == "0o600"
    thumbprint = checked.stdout.split("OPC UA server certificate thumbprint ")[1].split()[0]

    daemon = start_daemon(config, env)

    async def attempts() -> dict[str, Any]:
        outcomes: dict[str, Any] = {}
        for name, options in {
            "anonymous, no security": {},
            "user, no security": {"set_user": "plc", "set_password": "opc-secret-7"},
            "wrong password, signed": {"set_user": "plc", "set_password": "guess"},
            "user, signed and encrypted": {"set_user": "plc", "set_password": "opc-secret-7"},
            "user, signed": {"set_user": "plc", "set_password": "opc-secret-7"},
            "user, signed by a certificate not trusted": {"set_user": "plc", "set_password": "opc-secret-7"},
        }.items():
            try:
                client = asyncua.Client(url, timeout=10)
                for option, value in options.items():
                    getattr(client, option)(value)
                if "signed" in name:
                    who = "stranger" if "not trusted" in name else "client"
                    mode = "SignAndEncrypt" if "encrypted" in name or "not trusted" in name else "Sign"
                    await client.set_security_string(f"Basic256Sha256,{mode},{tmp_path / f'{who}-cert.der'},"
                                                     f"{tmp_path / f'{who}-key.pem'}")  # fmt: skip
                await client.connect()
            except Exception as exc:  # what a client sees when it is refused
                outcomes[name] = type(exc).__name__
                continue
            device, index = await device_node(client)
            outcomes[name] = await (
                await (await device.get_child(f"{index}:Status")).get_child(f"{index}:State")
            ).read_value()
            await client.disconnect()
        return outcomes

    try:
        asyncio.run(connect_any(url))
        outcomes = asyncio.run(attempts())
    finally:
        stderr = terminate(daemon)
    assert outcomes == {
        "anonymous, no security": "UaError",  # no endpoint without security is offered
        "user, no security": "UaError",
        "wrong password, signed": "BadUserAccessDenied",
        "user, signed and encrypted": "Ready",
        "user, signed": "Ready",
        "user, signed by a certificate not trusted": "BadCertificateUntrusted",
    }
    assert "opc-secret-7" not in stderr

    again = run_cli("--config", str(config), "check-config", env=env)  # the certificate survives a restart
    assert f"OPC UA server certificate thumbprint {thumbprint}" in again.stdout


def client_certificate(directory: Path, name: str) -> None:
    """A client's own key and certificate, as an integrator's OPC UA client makes on first use."""
    from edge.opcua_certificate import ServerCertificate

    made = ServerCertificate(directory / f"{name}-cert.der", directory / f"{name}-key.pem").ensure(f"urn:test:{name}")
    assert made.exists


async def connect_any(url: str) -> None:
    """Wait until the server answers at all (an endpoint listing needs no session)."""
    for _ in range(150):
        try:
            await asyncua.Client(url, timeout=5).connect_and_get_server_endpoints()
            return
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
    raise AssertionError(f"no OPC UA server at {url}")


def test_a_port_in_use_is_a_clear_error_and_check_config_names_the_endpoint(tmp_path, mosquitto, color_bundle):
    config, url = opcua_config(tmp_path, mosquitto, color_bundle)
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_server(("127.0.0.1", port)):
        daemon = start_daemon(config)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 2 and "Traceback" not in stderr
    assert f"the OPC UA server could not start on opc.tcp://127.0.0.1:{port}/sortline/" in stderr
    checked = run_cli("--config", str(config), "check-config")
    assert f"OPC UA server opc.tcp://127.0.0.1:{port}/sortline/: loopback, anonymous clients" in checked.stdout


def test_fifty_clients_at_once_and_a_greedy_subscription_do_not_stop_the_line(
    tmp_path, mosquitto, subscriber, color_bundle
):
    config, url = opcua_config(tmp_path, mosquitto, color_bundle)
    sub = subscriber(mosquitto, f"sortline/{DEVICE}/decision")
    daemon = start_daemon(config)

    async def crowd() -> tuple[int, int, int]:
        greedy = await connect(url)
        try:
            device, index = await device_node(greedy)
            changes = Changes()
            subscription = await greedy.create_subscription(0, changes)  # 0 ms: as fast as the server allows
            variables = []
            for group in ("LastDecision", "Status"):
                variables += await (await device.get_child(f"{index}:{group}")).get_children()
            await subscription.subscribe_data_change(variables, sampling_interval=0)

            async def one_more() -> bool:
                client = asyncua.Client(url, timeout=20)
                try:
                    await client.connect()
                except Exception:  # a server that refuses some of fifty may do so with a status; it must not die
                    return False
                await client.disconnect()
                return True

            connected = sum(await asyncio.gather(*(one_more() for _ in range(50))))
            with pytest.raises(ua.UaStatusCodeError) as unknown:
                await greedy.get_node(f"ns={index};s=NoSuchNode").read_value()
            await asyncio.sleep(1.0)
            return connected, unknown.value.code, len(changes.received)
        finally:
            await greedy.disconnect()

    try:
        sub.wait_for(1, timeout=30)
        connected, unknown, changes = asyncio.run(crowd())
        before = len(sub.received())
        sub.wait_for(before + 5, timeout=20)  # still deciding
    finally:
        terminate(daemon)
    assert connected == 50 and changes > 0
    assert unknown == ua.StatusCodes.BadNodeIdUnknown


def test_a_generic_opcua_client_browses_the_sorter_in_a_terminal(tmp_path, mosquitto, subscriber, color_bundle):
    """asyncua's own `uals`, run as an integrator would in a terminal (under tmux: what the terminal shows)."""
    config, url = opcua_config(tmp_path, mosquitto, color_bundle)
    sub = subscriber(mosquitto, f"sortline/{DEVICE}/decision")
    daemon = start_daemon(config)
    try:
        sub.wait_for(2, timeout=30)

        async def namespace() -> int:
            client = await connect(url)
            try:
                return await client.get_namespace_index("urn:sortline")
            finally:
                await client.disconnect()

        index = asyncio.run(namespace())
        uals = Path(sys.executable).with_name("uals")
        listing = [str(uals), "-u", url, "-p", f"0:Objects,{index}:Sortline,{index}:{DEVICE}", "-l", "-d", "2"]
        screen = terminal(listing, "LastDecision") if shutil.which("tmux") else subprocess.run(
            listing, capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    finally:
        terminate(daemon)
    for name in (
        "LastDecision",
        "Status",
        "ItemId",
        "Label",
        "Lane",
        "Seq",
        "State",
        "Pause",
        "SetThreshold",
        "Trigger",
    ):
        assert f"{index}:{name}" in screen, screen
    if os.environ.get("SORTLINE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        render_terminal(f"$ uals -u {url} -p 0:Objects,{index}:Sortline,{index}:{DEVICE} -l -d 2\n" + screen,
                        SCREENSHOTS / "opcua-uals.png")  # fmt: skip


def terminal(command: list[str], until: str) -> str:
    """Run ``command`` in a 150x45 tmux window and return what the window shows once ``until`` appears."""
    session = f"sortline-{os.getpid()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "45",
                    f"{shlex.join(command)}; sleep 60"], check=True)  # fmt: skip
    try:
        for _ in range(300):
            shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if until in shown and "Trigger" in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"the terminal never showed {until!r}:\n{shown}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def render_terminal(text: str, path: Path) -> None:
    """The terminal's text as a picture for the docs (DejaVu Sans Mono, light on dark)."""
    from PIL import Image, ImageDraw, ImageFont

    lines = text.rstrip().splitlines()
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 14)
    width = max(int(font.getlength(line)) for line in lines) + 24
    image = Image.new("RGB", (width, 18 * len(lines) + 24), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((12, 12 + 18 * number), line, font=font, fill=(220, 220, 220))
    image.save(path)
