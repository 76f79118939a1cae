"""The Node-RED example flow imports cleanly: valid JSON, every wire and broker reference resolves,
and the lane switch covers every lane of the default lane map plus the reject lane."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_flow_wires_resolve_and_cover_every_lane():
    nodes = json.loads((ROOT / "deploy/node-red/sortline-lanes.json").read_text())
    ids = {node["id"] for node in nodes}
    assert len(ids) == len(nodes)
    for node in nodes:
        for output in node.get("wires", []):
            assert set(output) <= ids, f"{node['id']} wires to a missing node"
        if node["type"] == "mqtt in":
            assert node["broker"] in ids
    (mqtt_in,) = [n for n in nodes if n["type"] == "mqtt in" and n["topic"].endswith("/decision")]
    assert mqtt_in["topic"] == "sortline/+/decision" and mqtt_in["qos"] == "1"
    (lanes,) = [n for n in nodes if n["type"] == "switch" and n["property"] == "lane"]
    assert lanes["outputs"] == len(lanes["rules"]) == len(lanes["wires"])
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads the TOML template")
    template = tomllib.loads((ROOT / "deploy/edge.toml.example").read_text())
    expected = {template["lanes"]["reject"], *template["lanes"]["map"].values()}
    assert {int(rule["v"]) for rule in lanes["rules"] if rule["t"] == "eq"} == expected


def test_broker_session_survives_restarts_and_is_not_shared():
    nodes = json.loads((ROOT / "deploy/node-red/sortline-lanes.json").read_text())
    (broker,) = [n for n in nodes if n["type"] == "mqtt-broker"]
    assert broker["cleansession"] is False and int(broker["sessionExpiry"]) >= 600
    assert broker["autoUnsubscribe"] is False  # Node-RED 4 would unsubscribe (ending the session) on redeploy
    assert broker["clientid"] == "${SORTLINE_NODE_RED_CLIENT_ID}"  # one per instance, from its environment
    assert (broker["broker"], broker["port"]) == ("${SORTLINE_MQTT_HOST}", "${SORTLINE_MQTT_PORT}")  # not fixed


# Runs a function node's code as Node-RED does (msg, node, context), with a context whose "file" store
# outlives the function object: what a restart of Node-RED with the localfilesystem store keeps.
_HARNESS = r"""
const [code, calls, variables] = [process.argv[1], JSON.parse(process.argv[2]), JSON.parse(process.argv[3])];
const env = { get: (name) => variables[name] };
const frozen = JSON.parse(process.argv[4]);  // the clock, epoch ms, when a test fixes it
if (frozen !== null) Date.now = () => frozen;
const stores = { default: {}, file: {} };
const context = {
  get: (key, store = 'default') => stores[store][key],
  set: (key, value, store = 'default') => { stores[store][key] = JSON.parse(JSON.stringify(value)); },
};
const warnings = [];
const node = { warn: (text) => warnings.push(text) };
const results = [];
for (const msg of calls) {
  if (msg === 'restart') { stores.default = {}; continue; }  // a restart forgets the memory store only
  results.push(new Function('msg', 'node', 'context', 'env', code)(msg, node, context, env));
}
console.log(JSON.stringify({ results, warnings }));
"""


def _run_function(node_id: str, messages: list, env: dict[str, str] | None = None, now: float | None = None) -> dict:
    """The node's function on each message in turn; `now` (epoch seconds) fixes its clock."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is not installed")
    nodes = json.loads((ROOT / "deploy/node-red/sortline-lanes.json").read_text())
    (function,) = [n for n in nodes if n["id"] == node_id]
    result = subprocess.run(
        [
            node,
            "-e",
            _HARNESS,
            function["func"],
            json.dumps(messages),
            json.dumps(env or {}),
            json.dumps(None if now is None else now * 1000),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dedupe_survives_a_restart_and_late_decisions_are_dropped():
    future = time.time() + 60
    decision = {"run_id": "r1", "seq": 1, "deadline": future, "lane": 2, "item_id": "r1-1", "label": "trousers"}
    late = {**decision, "seq": 2, "deadline": time.time() - 1}
    out = _run_function("sortline-filter", [{"payload": decision}, "restart", {"payload": decision}, {"payload": late}])
    first, redelivered, dropped = out["results"]
    assert first["lane"] == 2 and first["payload"]["item_id"] == "r1-1"
    assert redelivered is None  # the same run_id + seq after Node-RED restarted
    assert dropped is None and "past its deadline" in out["warnings"][0]


def test_offline_alarm_fires_on_changes_and_clears_when_online():
    def status(state: str) -> dict:
        return {"topic": "sortline/line-1/status", "payload": {"state": state, "ts": 1.0}}

    out = _run_function(
        "sortline-offline",
        [status("online"), status("offline"), "restart", status("offline"), status("online"), status("online")],
    )
    online, offline, offline_again_after_restart, back_online, unchanged = out["results"]
    assert online[0] is None and online[1]["payload"]["state"] == "online"
    assert offline[0]["payload"] == {"device": "line-1", "state": "offline", "reason": None, "ts": 1.0}
    assert offline[1] is None
    assert offline_again_after_restart is None  # the retained status at a restart: the alarm is already known
    assert back_online[0] is None and back_online[1]["payload"]["state"] == "online"  # clears the alarm
    assert unchanged is None


NOW = 1_796_400_000.0  # the function node's clock in these tests, epoch seconds


def _crossed(seconds_ago: float, lane: int = 2, **fields) -> dict:
    decision = {"item_id": "r1-5", "lane": lane, "crossed_at": NOW - seconds_ago, "belt_speed_mm_s": 500.0}
    return {"decision": {**decision, **fields}, "payload": {}}


def test_each_lane_fires_when_its_item_reaches_its_diverter():
    per_lane = {"SORTLINE_DIVERTER_MM": json.dumps({"1": 600, "2": 1000, "0": 2000})}
    out = _run_function("sortline-arrival", [_crossed(0.2), _crossed(0.2, lane=0)], per_lane, now=NOW)
    to_lane_2, to_reject = out["results"]
    assert to_lane_2["delay"] == 1800  # 1000 mm at 500 mm/s = 2 s after crossing, 0.2 s of it gone
    assert to_reject["delay"] == 3800
    same = _run_function("sortline-arrival", [_crossed(0.5)], {"SORTLINE_DIVERTER_MM": "1200"}, now=NOW)
    assert same["results"][0]["delay"] == 1900 and "decision" not in same["results"][0]


def test_an_item_past_its_diverter_is_dropped_and_untimed_decisions_go_at_once():
    out = _run_function(
        "sortline-arrival",
        [_crossed(3.0), _crossed(0.1, crossed_at=None), _crossed(0.1, belt_speed_mm_s=None)],
        {"SORTLINE_DIVERTER_MM": "1000"},
        now=NOW,
    )
    missed, external, uncalibrated = out["results"]
    assert missed is None and "missed" in out["warnings"][0]
    assert external["delay"] == 0 and uncalibrated["delay"] == 0
