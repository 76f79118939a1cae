"""The reject threshold: model.thresholds per label, else model.threshold, else the bundle's recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_config_cli import run_cli

from edge.bundle import BundleError, load_bundle
from edge.config import ConfigError, LaneSettings, ModelSettings
from edge.decision import FALLBACK_THRESHOLD, ItemVote, Thresholds, decide, lane_label

LANES = LaneSettings(map={"red": 1, "green": 2, "blue": 3}, reject=9)


def _recommend(bundle: Path, threshold: float) -> Path:
    """The trainer writes this field; here it is set on a test bundle (metadata only, the model is unchanged)."""
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["recommended_threshold"] = threshold
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return bundle


def test_config_wins_over_the_bundle_and_the_bundle_over_the_fallback(color_bundle):
    plain = load_bundle(color_bundle).metadata
    recommending = load_bundle(_recommend(color_bundle, 0.83)).metadata
    assert Thresholds.resolve(ModelSettings(), plain) == Thresholds(FALLBACK_THRESHOLD, {}, "fallback")
    assert Thresholds.resolve(ModelSettings(), recommending) == Thresholds(0.83, {}, "bundle")
    assert Thresholds.resolve(ModelSettings(threshold=0.4), recommending) == Thresholds(0.4, {}, "config")


def test_a_per_label_threshold_applies_to_items_whose_top_label_it_names(color_bundle):
    meta = load_bundle(color_bundle).metadata
    thresholds = Thresholds.resolve(ModelSettings(threshold=0.7, thresholds={"red": 0.95}), meta)
    red, blue = ItemVote("a"), ItemVote("b")
    red.add(np.array([0.9, 0.05, 0.05], np.float32), 0.0, 1.0)
    blue.add(np.array([0.05, 0.05, 0.9], np.float32), 0.0, 1.0)
    assert decide(red, meta.labels, thresholds, LANES, 10)["lane"] == 9  # 0.9 < red's 0.95
    assert decide(blue, meta.labels, thresholds, LANES, 10)["label"] == "blue"  # 0.9 >= the default 0.7


def test_the_bundles_per_label_thresholds_apply_until_one_threshold_is_set(color_bundle):
    meta = json.loads((color_bundle / "bundle.json").read_text())
    meta |= {"recommended_threshold": 0.7, "recommended_thresholds": {"red": 0.95, "green": 0.5, "blue": 0.6}}
    (color_bundle / "bundle.json").write_text(json.dumps(meta))
    bundle = load_bundle(color_bundle).metadata
    from_bundle = Thresholds.resolve(ModelSettings(thresholds={"blue": 0.8}), bundle)
    assert from_bundle.source == "bundle"
    assert [from_bundle.for_label(label) for label in ("red", "green", "blue")] == [0.95, 0.5, 0.8]  # config wins
    commanded = from_bundle.commanded(0.66)  # set_threshold over MQTT: one number, except what the config pins
    assert [commanded.for_label(label) for label in ("red", "green", "blue")] == [0.66, 0.66, 0.8]
    configured = Thresholds.resolve(ModelSettings(threshold=0.4), bundle)
    assert [configured.for_label(label) for label in ("red", "green", "blue")] == [0.4, 0.4, 0.4]


def test_per_label_thresholds_that_miss_a_label_are_refused_with_the_file_named(color_bundle):
    meta = json.loads((color_bundle / "bundle.json").read_text())
    meta["recommended_thresholds"] = {"red": 0.9}
    (color_bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"bundle.json: invalid bundle metadata: .*must name every label"):
        load_bundle(color_bundle)


def test_an_unfamiliar_item_is_rejected_whatever_its_scores(color_bundle):
    labels, thresholds = ("red", "green", "blue"), Thresholds(0.5)
    sure = np.array([0.99, 0.005, 0.005], np.float32)
    assert lane_label(sure, 0.4, labels, thresholds) == ("red", pytest.approx(0.99), None)
    assert lane_label(sure, None, labels, thresholds)[0] == "red"  # a bundle without the check
    assert lane_label(sure, 1.3, labels, thresholds) == ("reject", pytest.approx(0.99), "unfamiliar")
    odd = ItemVote("odd")  # novelty is averaged over frames like the scores: one odd view does not reject it
    odd.add(sure, 0.0, 1.0, novelty=1.6)
    odd.add(sure, 0.1, 1.0, novelty=0.2)
    decision = decide(odd, labels, thresholds, LANES, 10)
    assert (decision["label"], decision["novelty"], decision["reason"]) == ("red", 0.9, None)
    odd.add(sure, 0.2, 1.0, novelty=2.0)
    decision = decide(odd, labels, thresholds, LANES, 10)
    assert (decision["lane"], decision["novelty"], decision["reason"]) == (9, 1.267, "unfamiliar")
    lenient = Thresholds.resolve(ModelSettings(threshold=0.5, max_novelty=1.5), load_bundle(color_bundle).metadata)
    assert decide(odd, labels, lenient, LANES, 10)["label"] == "red"  # model.max_novelty raised for this line
    assert lenient.commanded(0.6).max_novelty == 1.5


def test_a_label_whose_familiarity_limit_the_bundle_tightens_rejects_further_items_of_that_label_only():
    """Trousers a new shop sends to the jeans lane lie further from the training jeans than its jeans do: the
    bundle keeps a tighter limit for items whose top label is jeans (here red). The config's max_novelty scales
    it, and a threshold set over MQTT leaves it in place."""
    labels = ("red", "green", "blue")
    thresholds = Thresholds(0.5, novelty_shares={"red": 0.3})
    red, green = np.array([0.99, 0.005, 0.005], np.float32), np.array([0.005, 0.99, 0.005], np.float32)
    assert lane_label(red, 0.25, labels, thresholds)[0] == "red"
    assert lane_label(red, 0.4, labels, thresholds) == ("reject", pytest.approx(0.99), "unfamiliar")
    assert lane_label(green, 0.4, labels, thresholds)[0] == "green"  # the bundle's own limit: 1
    assert lane_label(green, 1.1, labels, thresholds)[2] == "unfamiliar"
    assert thresholds.commanded(0.9).novelty_limit("red") == pytest.approx(0.3)
    lenient = Thresholds(0.5, max_novelty=2.0, novelty_shares={"red": 0.3})
    assert lenient.novelty_limit("red") == pytest.approx(0.6) and lane_label(red, 0.4, labels, lenient)[0] == "red"
    assert lenient.describe()["max_novelty_per_label"] == {"red": pytest.approx(0.6)}


@pytest.mark.parametrize(
    ("per_label", "error"),
    [({"jeans": 0.2}, r"familiarity.per_label names \['jeans'\]"), ({"red": 1.5}, r"less than or equal to 1")],
)
def test_a_bundle_whose_per_label_familiarity_limits_make_no_sense_is_refused(color_bundle, per_label, error):
    meta = json.loads((color_bundle / "bundle.json").read_text())
    meta["familiarity"] = {"sha256": "0" * 64, "embedding_size": 8, "limit": 0.3, "per_label": per_label}
    (color_bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=rf"bundle.json: invalid bundle metadata: .*{error}"):
        load_bundle(color_bundle)


def test_a_per_label_threshold_for_a_label_the_model_lacks_is_refused(color_bundle):
    with pytest.raises(ConfigError, match=r"model.thresholds names \['jeans'\]"):
        Thresholds.resolve(ModelSettings(thresholds={"jeans": 0.9}), load_bundle(color_bundle).metadata)


def test_classify_and_check_config_use_the_bundle_threshold_unless_configured(tmp_path, color_bundle):
    _recommend(color_bundle, 0.95)
    pinkish = tmp_path / "pinkish.png"  # mostly red, but not sure: about 0.84 red
    cv2.imwrite(str(pinkish), np.full((40, 40, 3), (150, 150, 200), np.uint8))
    config = tmp_path / "edge.toml"
    lanes = "[lanes]\nmap = { red = 1, green = 2, blue = 3 }\n"
    config.write_text(f'[model]\nbundle = "{color_bundle}"\n{lanes}')

    checked = run_cli("--config", str(config), "check-config")
    assert checked.returncode == 0 and "reject threshold 0.95 (from bundle)" in checked.stderr
    line = json.loads(run_cli("--config", str(config), "classify", str(pinkish)).stdout)
    assert line["label"] == "reject" and 0.6 < line["confidence"] < 0.95

    config.write_text(f'[model]\nbundle = "{color_bundle}"\nthresholds = {{ red = 0.6 }}\n{lanes}')
    line = json.loads(run_cli("--config", str(config), "classify", str(pinkish)).stdout)
    assert line["label"] == "red"
