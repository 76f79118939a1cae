"""The Node-RED example flow imports cleanly: valid JSON, every wire and broker reference resolves,
and the lane switch covers every lane of the default lane map plus the reject lane."""

from __future__ import annotations

import json
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
