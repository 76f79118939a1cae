"""The sorter as an OPC UA server (the ``opcua`` extra: asyncua, pure Python), beside MQTT: a PLC or SCADA that
speaks OPC UA browses it instead of subscribing to a broker. Both carry the same decisions.

Address space, under ``Objects/Sortline/<device_id>`` in namespace ``urn:sortline`` (browse names are fixed:
integrators rely on them):

  LastDecision    ItemId (String), Label (String), Lane (Int32), Confidence (Float), DecidedAt (DateTime),
                  CrossedAt (DateTime; 1601-01-01, OPC UA's null, outside presence mode), Seq (UInt64),
                  Reason (String, "" when none)
  Status          State (String: Initializing, Ready, Paused, Error), Camera (String), Model (String),
                  Threshold (Double), Frames, Decisions, Rejects (UInt64)
  events          SortDecisionEventType (a BaseEventType) with the LastDecision fields, one per decision, in
                  order, emitted by the device object: a client subscribed to events misses none between polls
  methods         Pause(), Resume(), SetThreshold(Double), Trigger(String itemId): the MQTT commands, through
                  the same handler (the frame loop carries them out); refused with BadTypeMismatch (a wrong
                  type), BadOutOfRange (a threshold outside 0..1), BadInvalidArgument (an invalid item id) or
                  BadInvalidState (e.g. Trigger outside external mode, a repeated item id)

The server runs on an asyncio loop in a thread of its own; the frame loop only hands it decisions, status and
figures (a bounded queue: ``WAITING`` decisions, more are dropped and counted), so a slow or hostile client never
holds up the line. Security: on loopback anonymous clients and no message security; on any other address
only ``opcua.username`` with its password, over Basic256Sha256 Sign or SignAndEncrypt, with a server
certificate created on first start in ``<state_directory>/opcua`` (see `edge.opcua_certificate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator
from asyncua.crypto.validator import CertificateValidatorOptions as Options
from asyncua.server.user_managers import User, UserManager, UserRole
from pydantic import ValidationError

from edge.command_router import CommandHandler
from edge.commands import CommandError, Pause, Resume, SetThreshold, Trigger, echo
from edge.config import ConfigError, OpcUaSettings, is_loopback
from edge.opcua_certificate import ServerCertificate, application_uri

log = logging.getLogger(__name__)

NAMESPACE = "urn:sortline"
WAITING = 256  # decisions handed over and not yet written; more are dropped (counted in `dropped`)
DECISION_FIELDS = (
    ("ItemId", ua.VariantType.String),
    ("Label", ua.VariantType.String),
    ("Lane", ua.VariantType.Int32),
    ("Confidence", ua.VariantType.Float),
    ("DecidedAt", ua.VariantType.DateTime),
    ("CrossedAt", ua.VariantType.DateTime),
    ("Seq", ua.VariantType.UInt64),
    ("Reason", ua.VariantType.String),
)
STATUS_FIELDS = (
    ("State", ua.VariantType.String),
    ("Camera", ua.VariantType.String),
    ("Model", ua.VariantType.String),
    ("Threshold", ua.VariantType.Double),
    ("Frames", ua.VariantType.UInt64),
    ("Decisions", ua.VariantType.UInt64),
    ("Rejects", ua.VariantType.UInt64),
)
KINDS = dict(DECISION_FIELDS + STATUS_FIELDS)  # each variable's OPC UA type, by browse name


NULL_TIME = datetime(1601, 1, 1, tzinfo=timezone.utc)  # how OPC UA says "no time"
NOTHING_YET = {
    ua.VariantType.String: "",
    ua.VariantType.Int32: 0,
    ua.VariantType.UInt64: 0,
    ua.VariantType.Float: 0.0,
    ua.VariantType.Double: 0.0,
    ua.VariantType.DateTime: NULL_TIME,
}


class OpcUaError(ConfigError):
    """The server cannot start (port in use, unreadable certificate): the settings must change."""


class OneUser(UserManager):
    """``opcua.username`` with its password; anonymous clients only when the server listens on loopback."""

    def __init__(self, username: str | None, password: str | None, anonymous: bool) -> None:
        self._username, self._password, self._anonymous = username, password, anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None):
        if username is None:
            return User(role=UserRole.User) if self._anonymous else None
        if (
            self._username is not None
            and self._password is not None
            and secrets.compare_digest(username.encode(), self._username.encode())
            and secrets.compare_digest((password or "").encode(), self._password.encode())
        ):
            return User(role=UserRole.User, name=username)
        return None


class OpcUaServer:
    def __init__(
        self,
        settings: OpcUaSettings,
        device_id: str,
        certificate: ServerCertificate | None,
        on_command: CommandHandler,
        on_trigger: Callable[[Trigger], None],
    ) -> None:
        self._settings, self._device_id, self._certificate = settings, device_id, certificate
        self._on_command, self._on_trigger = on_command, on_trigger
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decisions: asyncio.Queue[dict] | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._nodes: dict[str, Any] = {}
        self.endpoint = settings.endpoint

    # ---- called from the daemon's threads ----------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self._ready.is_set():
            raise OpcUaError(
                f"the OPC UA server could not start on {self.endpoint}: {self._error or 'no answer in 30 s'}"
            )
        log.info("OPC UA server on %s", self.endpoint)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def decision(self, message: dict) -> None:
        """From the frame loop: written to LastDecision and sent as an event, in order; never blocks."""
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._enqueue, dict(message))
        except RuntimeError:  # the server's loop has ended (logged when it did): the line goes on without it
            self.dropped += 1

    def status(self, status: dict, figures: dict) -> None:
        """From the frame loop: the Status node's values (only the newest matter)."""
        if self._loop is None or self._loop.is_closed():
            return
        values = _status_values(status, figures)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            asyncio.run_coroutine_threadsafe(self._write(self._nodes["Status"], values), self._loop)

    # ---- on the server's own loop ------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); a server that dies later is logged
            self._error = exc
            if self._ready.is_set():
                log.error("the OPC UA server stopped: %s", exc)
            self._ready.set()

    async def _serve(self) -> None:
        if not log.isEnabledFor(logging.DEBUG):  # asyncua's INFO is a line per standard node it builds
            logging.getLogger("asyncua").setLevel(logging.WARNING)
        self._loop = asyncio.get_running_loop()
        self._decisions = asyncio.Queue(maxsize=WAITING)
        self._stop = asyncio.Event()
        settings = self._settings
        password = settings.password.get_secret_value() if settings.password else None
        server = Server(user_manager=OneUser(settings.username, password, anonymous=is_loopback(settings.host)))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"Sortline {self._device_id}")
        await server.set_application_uri(application_uri(self._device_id))
        if self._certificate is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        else:
            await server.load_certificate(str(self._certificate.cert_file))
            await server.load_private_key(str(self._certificate.key_file))
            server.set_security_policy(
                [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
            )
            server.set_identity_tokens([ua.UserNameIdentityToken])
            if settings.trusted_clients is not None:
                server.set_certificate_validator(await _trusted_only(settings.trusted_clients))
        events = await self._address_space(server)
        quiet = logging.getLogger("asyncua.server.server")
        level, quiet.level = quiet.level, logging.CRITICAL  # a port in use: our one-line error, not its traceback
        try:
            await server.start()
        finally:
            quiet.setLevel(level)
        try:
            writer = asyncio.create_task(self._write_decisions(events))
            self._ready.set()
            await self._stop.wait()
            writer.cancel()
        finally:
            await server.stop()

    async def _address_space(self, server: Server) -> Any:
        index = await server.register_namespace(NAMESPACE)
        sortline = await server.nodes.objects.add_object(index, "Sortline")
        device = await sortline.add_object(index, self._device_id)
        for group, fields in (("LastDecision", DECISION_FIELDS), ("Status", STATUS_FIELDS)):
            node = await device.add_object(index, group)
            self._nodes[group] = {
                name: await node.add_variable(index, name, ua.Variant(NOTHING_YET[kind], kind), varianttype=kind)
                for name, kind in fields
            }
        await self._write(self._nodes["Status"], {"State": "Initializing"})
        event_type = await server.create_custom_event_type(
            index, "SortDecisionEventType", ua.ObjectIds.BaseEventType, list(DECISION_FIELDS)
        )
        double, string = ua.VariantType.Double, ua.VariantType.String
        methods = (
            ("Pause", self._pause, [], []),
            ("Resume", self._resume, [], []),
            ("SetThreshold", self._set_threshold, [_argument("Threshold", double)], []),
            ("Trigger", self._trigger, [_argument("ItemId", string)], []),
        )
        for name, method, inputs, outputs in methods:
            await device.add_method(index, name, method, inputs, outputs)
        device_events = await server.get_event_generator(event_type, device)
        await device.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        return device_events

    def _enqueue(self, message: dict) -> None:
        assert self._decisions is not None
        try:
            self._decisions.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("OPC UA clients are not keeping up: %d decision(s) not written", self.dropped)

    async def _write_decisions(self, events: Any) -> None:
        assert self._decisions is not None
        while True:
            message = await self._decisions.get()
            values = _decision_values(message)
            await self._write(self._nodes["LastDecision"], values)
            for name, value in values.items():
                setattr(events.event, name, value)
            await events.trigger(message=f"item {values['ItemId']}: {values['Label']}, lane {values['Lane']}")

    @staticmethod
    async def _write(nodes: dict[str, Any], values: dict[str, Any]) -> None:
        for name, value in values.items():
            await nodes[name].write_value(ua.DataValue(ua.Variant(value, KINDS[name])))

    async def _command(self, command: Any) -> list | ua.StatusCode:
        """Through the daemon's command handler, off this loop (the frame loop may take a moment): no output
        arguments, or the refusal's status code (asyncua turns a method's exception into BadUnexpectedError)."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, self._on_command, command)
            if isinstance(result, Future):
                await asyncio.wrap_future(result)
        except CommandError as exc:
            log.warning("OPC UA %s refused: %s", command.command, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        return []

    async def _pause(self, _parent: Any) -> list | ua.StatusCode:
        return await self._command(Pause(command="pause"))

    async def _resume(self, _parent: Any) -> list | ua.StatusCode:
        return await self._command(Resume(command="resume"))

    async def _set_threshold(self, _parent: Any, value: ua.Variant) -> list | ua.StatusCode:
        if not isinstance(value.Value, float | int) or isinstance(value.Value, bool):
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        try:
            command = SetThreshold(command="set_threshold", value=float(value.Value))
        except ValidationError:
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        return await self._command(command)

    async def _trigger(self, _parent: Any, item_id: ua.Variant) -> list | ua.StatusCode:
        if not isinstance(item_id.Value, str):
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        try:
            trigger = Trigger(item_id=item_id.Value)
        except ValidationError:
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._on_trigger, trigger)
        except CommandError as exc:
            log.warning("OPC UA trigger %s refused: %s", echo(trigger.item_id), exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        return []


async def _trusted_only(folder: Path) -> CertificateValidator:
    """Client certificates must be in ``folder`` (read at start), within their validity, and made for clients."""
    if not folder.is_dir():
        raise OpcUaError(f"opcua.trusted_clients: {folder} is not a folder")
    store = TrustStore([folder], [])
    await store.load()
    options = Options.TRUSTED | Options.TIME_RANGE | Options.PEER_CLIENT
    return CertificateValidator(options, store)


def _argument(name: str, kind: ua.VariantType) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(kind.value)
    argument.ValueRank = -1
    return argument


def _decision_values(message: dict) -> dict[str, Any]:
    return {
        "ItemId": str(message["item_id"]),
        "Label": str(message["label"]),
        "Lane": int(message["lane"]),
        "Confidence": float(message["confidence"]),
        "DecidedAt": _when(message["decided_at"]),
        "CrossedAt": _when(message.get("crossed_at")),
        "Seq": int(message["seq"]),
        "Reason": message.get("reason") or "",
    }


def _status_values(status: dict, figures: dict) -> dict[str, Any]:
    camera = str(status.get("camera") or "")
    if status.get("paused"):
        state = "Paused"
    elif camera == "streaming":
        state = "Ready"
    elif camera in ("", "starting"):
        state = "Initializing"
    else:
        state = "Error"
    return {
        "State": state,
        "Camera": camera,
        "Model": str(status.get("model") or ""),
        "Threshold": float(status.get("threshold") or 0.0),
        "Frames": int(figures.get("frames", 0)),
        "Decisions": sum(figures.get("decisions", {}).values()),
        "Rejects": int(figures.get("rejects", 0)),
    }


def _when(epoch: float | None) -> datetime:
    """OPC UA's null DateTime (1601-01-01) for a time not known, e.g. no crossing outside presence mode."""
    return NULL_TIME if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)
