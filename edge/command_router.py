"""Commands and triggers in, replies and trigger errors out: the MQTT link hands every message here.

paho's callback only hands over: a trigger is parsed and given to the daemon at once (the daemon only queues
it, or refuses it with a reason that goes to ``trigger/error``); a command waits for the command thread, which
runs the daemon's handler one command at a time. A handler that returns a Future (a reload: minutes of
download and self-test) is replied to when it is done, and the commands after it go on meanwhile. Replies go
to ``command/reply``, or to the MQTT 5 response topic with the command's correlation data when that topic lies
under ``command/reply/`` (a sender must not make the daemon publish on its own decision or status topics).
A retained command or trigger is never acted on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.commands import Command, CommandError, Trigger, echo, parse_command, parse_trigger, request_id_of

if TYPE_CHECKING:
    from edge.mqtt import Topics

log = logging.getLogger(__name__)

COMMANDS_WAITING = 16  # commands come one at a time from an operator or an HMI; more waiting is a flood

CommandHandler = Callable[[Command], "dict[str, Any] | Future[dict[str, Any]]"]
Send = Callable[[str, dict[str, Any], "Properties | None"], None]  # topic, JSON body, MQTT 5 properties


class CommandRouter:
    def __init__(
        self, topics: Topics, send: Send, on_command: CommandHandler, on_trigger: Callable[[Trigger], None]
    ) -> None:
        self._topics, self._send = topics, send
        self._on_command, self._on_trigger = on_command, on_trigger
        self._commands: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue(maxsize=COMMANDS_WAITING)
        self._thread = threading.Thread(target=self._work, name="mqtt-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """After the command being handled; the ones still waiting are dropped (the daemon is stopping)."""
        while True:
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break
        self._commands.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def route(self, message: mqtt.MQTTMessage) -> None:
        """paho's on_message: a command is handed to the command thread, a trigger to the daemon."""
        if message.retain:
            self._refuse_retained(message)
        elif message.topic == self._topics.command:
            try:
                self._commands.put_nowait(message)
            except queue.Full:
                error = f"{COMMANDS_WAITING} commands are already waiting: this one is refused"
                log.warning("%s", error)
                self._reply(message, {"ok": False, "request_id": request_id_of(message.payload), "error": error})
        elif message.topic == self._topics.trigger:
            self._handle_trigger(message)

    def _refuse_retained(self, message: mqtt.MQTTMessage) -> None:
        """A retained command or trigger would be carried out again at every reconnect (a retained pause
        pauses the line each time, a retained trigger makes a phantom decision): never act on one."""
        if not message.payload:
            return  # an empty retained message is how a retained one is cleared
        error = (
            f"ignored a retained message on {message.topic}: commands and triggers act once, so send them with "
            "retain=false (clear this one by publishing an empty retained message to the topic)"
        )
        log.warning("%s", error)
        if message.topic == self._topics.command:
            self._reply(message, {"ok": False, "request_id": request_id_of(message.payload), "error": error})
        else:
            self._send(self._topics.trigger_error, {"error": error}, None)

    def _handle_trigger(self, message: mqtt.MQTTMessage) -> None:
        try:
            trigger = parse_trigger(message.payload)
        except CommandError as exc:
            log.warning("ignored a malformed trigger on %s: %s", message.topic, exc)
            preview = message.payload[:200].decode(errors="replace")
            self._send(self._topics.trigger_error, {"error": str(exc), "payload": preview}, None)
            return
        try:
            self._on_trigger(trigger)
        except CommandError as exc:  # a valid trigger the daemon cannot use, e.g. outside external mode
            log.warning("ignored trigger %s: %s", trigger.item_id, exc)
            reply = {"error": str(exc), "item_id": trigger.item_id}
            self._send(self._topics.trigger_error, reply, None)
        except Exception:
            log.exception("trigger handler failed for item %r", trigger.item_id)

    def _work(self) -> None:
        while (message := self._commands.get()) is not None:
            try:
                self._handle_command(message)
            except Exception:  # a failed reply must not stop later commands
                log.exception("handling a command failed")

    def _handle_command(self, message: mqtt.MQTTMessage) -> None:
        try:
            command = parse_command(message.payload)
        except CommandError as exc:
            log.warning("refused a command on %s: %s", message.topic, exc)
            self._reply(message, {"ok": False, "request_id": request_id_of(message.payload), "error": str(exc)})
            return
        log.info("command %s (request %s)", command.command, command.request_id)
        try:
            result = self._on_command(command)
        except Exception as exc:
            self._reply(message, self._outcome(command, exc))
            return
        if isinstance(result, Future):  # slow work (a reload) replies when it is done; later commands go on
            result.add_done_callback(lambda done: self._reply(message, self._outcome(command, done)))
        else:
            self._reply(message, self._outcome(command, result))

    @staticmethod
    def _outcome(command: Command, result: dict | Future | Exception) -> dict[str, Any]:
        """The reply to ``command``: its handler's result, or the reason it failed."""
        if isinstance(result, Future):
            result = result.exception() or result.result()
        head = {"request_id": command.request_id, "command": command.command}
        if isinstance(result, CommandError):
            log.warning("command %s failed: %s", command.command, result)
            return {"ok": False, **head, "error": str(result)}
        if isinstance(result, Exception):
            log.error("command %s raised", command.command, exc_info=result)
            return {"ok": False, **head, "error": f"internal error: {type(result).__name__}: {result}"}
        return {**(result or {}), "ok": True, **head}

    def _reply(self, message: mqtt.MQTTMessage, reply: dict[str, Any]) -> None:
        """To the MQTT 5 response topic with its correlation data when it lies under the device's reply topic,
        else to /command/reply: a sender must not make the daemon publish on its decision or status topic."""
        topic, properties = self._topics.command_reply, None
        request = getattr(message, "properties", None)
        response_topic = getattr(request, "ResponseTopic", None)
        if response_topic:  # an MQTT 5 property: a 3.1.1 message has none
            if not response_topic.startswith(f"{self._topics.command_reply}/") or any(
                c in response_topic for c in "#+"
            ):
                log.warning(
                    "ignored response topic %s (replies go under %s/, without wildcards); replying on %s",
                    echo(response_topic),
                    self._topics.command_reply,
                    topic,
                )
            else:
                topic = response_topic
            properties = Properties(PacketTypes.PUBLISH)
            correlation = getattr(request, "CorrelationData", None)
            if correlation is not None:
                properties.CorrelationData = correlation
        self._send(topic, reply, properties)
