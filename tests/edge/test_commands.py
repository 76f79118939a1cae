"""Commands and triggers: strict parsing, and the round trip through a real broker."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.commands import CommandError, Pause, Reload, SetThreshold, Trigger, parse_command, parse_trigger

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"command": "pause"}', Pause(command="pause")),
        (b'{"command": "set_threshold", "value": 1}', SetThreshold(command="set_threshold", value=1.0)),
        (
            b'{"command": "set_threshold", "value": 0.7, "request_id": "r1"}',
            SetThreshold(command="set_threshold", value=0.7, request_id="r1"),
        ),
        (
            f'{{"command": "reload", "bundle": "/m/b", "sha256": "{SHA}"}}'.encode(),
            Reload(command="reload", bundle=Path("/m/b"), sha256=SHA),
        ),
    ],
)
def test_valid_commands_parse(payload, expected):
    assert parse_command(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"pause", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'["pause"]', "must be a JSON object, got list"),
        (b'{"value": 0.5}', "missing field 'command'"),
        (b'{"command": "explode"}', "unknown command 'explode' (expected one of pause, resume, reload, set_threshold)"),
        (b'{"command": "set_threshold"}', "invalid set_threshold command: value: Field required"),
        (b'{"command": "set_threshold", "value": 1.5}', "value: Input should be less than or equal to 1 (got 1.5)"),
        (b'{"command": "set_threshold", "value": -0.1}', "value: Input should be greater than or equal to 0"),
        (b'{"command": "set_threshold", "value": "0.5"}', "value: Input should be a valid number (got '0.5')"),
        (b'{"command": "set_threshold", "value": true}', "value: Input should be a valid number (got True)"),
        (b'{"command": "pause", "force": true}', "invalid pause command: force: Extra inputs are not permitted"),
        (b'{"command": "pause", "request_id": 7}', "request_id: Input should be a valid string (got 7)"),
        (b'{"command": "reload"}', "invalid reload command: bundle: Field required"),
        (b'{"command": "reload", "bundle": 3}', "bundle: Value error, must be a non-empty path string (got 3)"),
        (b'{"command": "reload", "bundle": ""}', "bundle: Value error, must be a non-empty path string"),
        (b'{"command": "reload", "bundle": "/m", "sha256": "xyz"}', "sha256: String should match pattern"),
    ],
)
def test_malformed_commands_are_refused_with_a_specific_reason(payload, reason):
    with pytest.raises(CommandError) as refused:
        parse_command(payload)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "not valid JSON"),
        (b'"item-1"', "must be a JSON object, got str"),
        (b"{}", "item_id: Field required"),
        (b'{"item_id": ""}', "item_id: String should have at least 1 character"),
        (b'{"item_id": 42}', "item_id: Input should be a valid string (got 42)"),
        (b'{"item_id": "bad\\u0000id"}', "item_id: Value error, must contain printable characters only"),
        (json.dumps({"item_id": "x" * 129}).encode(), "item_id: String should have at most 128 characters"),
    ],
)
def test_malformed_triggers_are_refused_with_a_specific_reason(payload, reason):
    with pytest.raises(CommandError) as refused:
        parse_trigger(payload)
    assert reason in str(refused.value)


def test_a_trigger_keeps_its_id_and_ignores_gateway_fields():
    assert parse_trigger(b'{"item_id": "PLC-0042 A", "ts": 1712}') == Trigger(item_id="PLC-0042 A")


# --------------------------------------------------------------------------- over MQTT


def _command_link(make_link, broker, **handlers):
    calls = []

    def on_command(command):
        calls.append(command)
        if isinstance(command, Reload) and not command.bundle.exists():
            raise CommandError(f"{command.bundle}: no such bundle directory")
        return {"threshold": command.value} if isinstance(command, SetThreshold) else {}

    link = make_link(broker.settings(), on_command=on_command, **handlers)
    assert link.wait_connected(5)
    return link, calls


def test_valid_commands_reach_the_handler_and_get_its_reply(mosquitto, subscriber, make_link):
    link, calls = _command_link(make_link, mosquitto)
    replies = subscriber(mosquitto, link.topics.command_reply)
    for payload in ({"command": "pause", "request_id": "a"}, {"command": "set_threshold", "value": 0.75}):
        replies.client.publish(link.topics.command, json.dumps(payload), qos=1)
    got = [m.json() for m in replies.wait_for(2)]
    assert calls == [Pause(command="pause", request_id="a"), SetThreshold(command="set_threshold", value=0.75)]
    assert [(r["ok"], r["request_id"], r["command"]) for r in got] == [
        (True, "a", "pause"),
        (True, None, "set_threshold"),
    ]
    assert got[1]["threshold"] == 0.75 and got[1]["device"] == "line-1"


def test_malformed_commands_get_error_replies_and_the_handler_is_not_called(mosquitto, subscriber, make_link):
    link, calls = _command_link(make_link, mosquitto)
    replies = subscriber(mosquitto, link.topics.command_reply)
    bad = [
        b"not json",
        b'{"command": "explode", "request_id": "r-1"}',
        b'{"command": "set_threshold", "value": "high", "request_id": "r-2"}',
        b'{"command": "pause", "now": true}',
    ]
    for payload in bad:
        replies.client.publish(link.topics.command, payload, qos=1)
    got = [m.json() for m in replies.wait_for(4)]
    assert calls == []
    assert all(reply["ok"] is False for reply in got)
    assert [reply["request_id"] for reply in got] == [None, "r-1", "r-2", None]
    assert "not valid JSON" in got[0]["error"]
    assert "unknown command 'explode'" in got[1]["error"]
    assert "value: Input should be a valid number (got 'high')" in got[2]["error"]
    assert "now: Extra inputs are not permitted" in got[3]["error"]


def test_a_command_the_handler_refuses_gets_its_reason(mosquitto, subscriber, make_link, tmp_path):
    link, calls = _command_link(make_link, mosquitto)
    replies = subscriber(mosquitto, link.topics.command_reply)
    missing = tmp_path / "no-such-bundle"
    replies.client.publish(link.topics.command, json.dumps({"command": "reload", "bundle": str(missing)}), qos=1)
    (reply,) = [m.json() for m in replies.wait_for(1)]
    assert len(calls) == 1
    assert reply["ok"] is False and reply["command"] == "reload"
    assert reply["error"] == f"{missing}: no such bundle directory"


def test_mqtt5_response_topic_under_the_reply_topic_and_correlation_data_are_honoured(mosquitto, subscriber, make_link):
    link, calls = _command_link(make_link, mosquitto)
    asked = f"{link.topics.command_reply}/hmi-7"
    replies = subscriber(mosquitto, [asked, link.topics.command_reply])
    request = Properties(PacketTypes.PUBLISH)
    request.ResponseTopic = asked
    request.CorrelationData = b"\x00corr-42"
    replies.client.publish(link.topics.command, b'{"command": "resume"}', qos=1, properties=request)
    (reply,) = replies.wait_for(1)
    assert reply.topic == asked
    assert reply.properties.CorrelationData == b"\x00corr-42"
    assert reply.json()["ok"] is True and reply.json()["command"] == "resume"
    assert [command.command for command in calls] == ["resume"]


def test_a_response_topic_outside_the_reply_topic_is_not_published_on(mosquitto, subscriber, make_link):
    link, _calls = _command_link(make_link, mosquitto)
    replies = subscriber(mosquitto, ["#"])
    for topic in (link.topics.decision, link.topics.status, "hmi/replies/7"):
        request = Properties(PacketTypes.PUBLISH)
        request.ResponseTopic = topic
        request.CorrelationData = topic.encode()
        replies.client.publish(link.topics.command, b'{"command": "pause"}', qos=1, properties=request)
    got = replies.wait_for(lambda received: sum(m.topic == link.topics.command_reply for m in received) == 3)
    answered = [m for m in got if m.topic != link.topics.command and "ok" in m.json()]  # replies, wherever sent
    assert [m.topic for m in answered] == [link.topics.command_reply] * 3
    assert [m.properties.CorrelationData for m in answered] == [b"sortline/line-1/decision", b"sortline/line-1/status",
                                                              b"hmi/replies/7"]  # fmt: skip


def test_a_slow_command_replies_when_done_and_later_commands_go_on_meanwhile(mosquitto, subscriber, make_link):
    slow: Future = Future()

    def on_command(command):
        return slow if isinstance(command, Reload) else {"ok_now": command.command}

    link = make_link(mosquitto.settings(), on_command=on_command)
    assert link.wait_connected(5)
    replies = subscriber(mosquitto, link.topics.command_reply)
    replies.client.publish(link.topics.command, b'{"command": "reload", "bundle": "/srv/b", "request_id": "r"}', qos=1)
    replies.client.publish(link.topics.command, b'{"command": "pause", "request_id": "p"}', qos=1)
    (first,) = [m.json() for m in replies.wait_for(1)]
    assert (first["request_id"], first["ok_now"]) == ("p", "pause")  # not held up by the reload
    slow.set_result({"model": "m-2"})
    last = replies.wait_for(2)[-1].json()
    assert (last["request_id"], last["ok"], last["model"]) == ("r", True, "m-2")


def test_long_names_and_paths_are_not_echoed_whole(mosquitto, subscriber, make_link, caplog):
    link, calls = _command_link(make_link, mosquitto)
    replies = subscriber(mosquitto, link.topics.command_reply)
    replies.client.publish(link.topics.command, json.dumps({"command": "x" * 10_000}), qos=1)
    replies.client.publish(link.topics.command, json.dumps({"command": "reload", "bundle": "/" + "p" * 12_000}), qos=1)
    got = [m for m in replies.wait_for(2)]
    assert calls == []
    assert all(len(m.payload) < 600 for m in got), [len(m.payload) for m in got]
    assert "unknown command 'xxx" in got[0].json()["error"]
    assert "bundle: Value error, is 12001 characters long; at most 1024" in got[1].json()["error"]
    assert max(len(record.getMessage()) for record in caplog.records) < 600


def test_a_number_a_float_cannot_hold_is_refused_not_rounded_to_zero():
    with pytest.raises(CommandError, match="out of range"):
        parse_command(b'{"command": "set_threshold", "value": 1e-400}')
    with pytest.raises(CommandError, match="out of range"):
        parse_command(b'{"command": "set_threshold", "value": 1E400}')
    assert parse_command(b'{"command": "set_threshold", "value": 0.0e-3}').value == 0.0


def test_triggers_reach_the_handler_and_malformed_ones_are_reported(mosquitto, subscriber, make_link):
    triggers = []
    link = make_link(mosquitto.settings(), on_trigger=triggers.append)
    assert link.wait_connected(5)
    errors = subscriber(mosquitto, link.topics.trigger_error)
    publish = errors.client.publish
    publish(link.topics.trigger, b'{"item_id": 17}', qos=1)
    publish(link.topics.trigger, b"\x00garbage", qos=1)
    publish(link.topics.trigger, b'{"item_id": "tray-0001"}', qos=1)
    reported = [m for m in errors.wait_for(2)]
    assert [m.retain for m in reported] == [False, False]
    assert "item_id: Input should be a valid string (got 17)" in reported[0].json()["error"]
    assert "not valid JSON" in reported[1].json()["error"]
    errors.wait_for(lambda _: triggers)  # the link survived both
    assert triggers == [Trigger(item_id="tray-0001")]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"command": "pause", "pad": "' + b"x" * 20_000 + b'"}', "bytes; at most 16384 are accepted"),
        (b"[" * 1000 + b"]" * 1000, "nested deeper than 8 levels"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested deeper than 8 levels"),
        (b'{"command": "set_threshold", "value": ' + b'{"a":' * 9 + b"1" + b"}" * 9 + b"}", "nested deeper than 8"),
    ],
)
def test_oversized_and_deeply_nested_payloads_are_refused_before_parsing_them_fully(payload, reason):
    with pytest.raises(CommandError, match=reason):
        parse_command(payload)


def test_bad_values_are_echoed_cut_short():
    with pytest.raises(CommandError) as refused:
        parse_trigger(json.dumps({"item_id": "y" * 10_000}).encode())
    message = str(refused.value)
    assert "item_id: String should have at most 128 characters" in message
    assert "(10002 characters)" in message and len(message) < 300


def test_retained_commands_and_triggers_are_never_acted_on(mosquitto, subscriber, make_link):
    """A retained pause would pause the line after every reconnect; a retained trigger makes a phantom item."""
    from edge.mqtt import Topics

    topics = Topics.under("sortline", "line-1")
    setter = subscriber(mosquitto, [topics.command_reply, topics.trigger_error])
    setter.client.publish(topics.command, b'{"command": "pause", "request_id": "kept"}', qos=1, retain=True)
    setter.client.publish(topics.trigger, b'{"item_id": "ghost"}', qos=1, retain=True).wait_for_publish(5)
    triggers: list[Trigger] = []
    _, calls = _command_link(make_link, mosquitto, on_trigger=triggers.append)
    got = {m.topic: m.json() for m in setter.wait_for(2)}
    assert calls == [] and triggers == []
    assert got[topics.command_reply]["ok"] is False and got[topics.command_reply]["request_id"] == "kept"
    assert "ignored a retained message" in got[topics.command_reply]["error"]
    assert "retain=false" in got[topics.trigger_error]["error"]
    # the same command sent as it should be, not retained, is carried out
    setter.client.publish(topics.command, b'{"command": "pause", "request_id": "once"}', qos=1)
    setter.wait_for(3)
    assert [command.request_id for command in calls] == ["once"]


def test_a_trigger_the_daemon_cannot_use_is_reported_not_dropped(mosquitto, subscriber, make_link):
    def refuse(trigger: Trigger) -> None:
        raise CommandError("trigger.mode is presence: triggers are used in external mode only")

    link = make_link(mosquitto.settings(), on_trigger=refuse)
    assert link.wait_connected(5)
    errors = subscriber(mosquitto, link.topics.trigger_error)
    errors.client.publish(link.topics.trigger, b'{"item_id": "tray-7"}', qos=1)
    (reported,) = [m.json() for m in errors.wait_for(1)]
    assert reported["item_id"] == "tray-7" and "external mode only" in reported["error"]
