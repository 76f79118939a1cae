"""Settings precedence (defaults < TOML < env < flags) and command-line errors that stop before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import EXIT_BAD_INPUT, build_parser, main
from trainer.config import TrainConfig, load_config
from trainer.pipeline import _cache_key


def test_toml_env_and_flags_layer_in_order(tmp_path, monkeypatch):
    toml = tmp_path / "train.toml"
    toml.write_text("image_size = 160\nbatch_size = 8\nseed = 5\n[augmentation]\ngrayscale_p = 0.5\n")
    monkeypatch.setenv("SORTLINE_TRAIN_BATCH_SIZE", "12")
    monkeypatch.setenv("SORTLINE_TRAIN_AUGMENTATION__HUE_P", "0.1")

    cfg = load_config(toml, data="d", out="models/x", seed="9")

    assert cfg.image_size == 160  # TOML over default
    assert cfg.batch_size == 12  # env over TOML
    assert cfg.seed == 9  # flag over everything
    assert cfg.augmentation.grayscale_p == 0.5 and cfg.augmentation.hue_p == 0.1
    assert cfg.name == "x" and cfg.work_dir == Path("runs/x")


def test_each_backbone_gets_its_own_cut_learning_rate_and_members_unless_set():
    lite = TrainConfig(data="d", out="o", backbone="efficientnet-lite2")
    vgg = TrainConfig(data="d", out="o", backbone="vgg16")
    assert (lite.finetune_from, lite.finetune_lr, lite.image_size, lite.members) == ("block20", 3e-4, 320, 3)
    assert (vgg.finetune_from, vgg.finetune_lr, vgg.image_size, vgg.members) == ("block5_conv1", 1e-4, 224, 1)
    assert TrainConfig(data="d", out="o", backbone="vgg16", finetune_lr=5e-5).finetune_lr == 5e-5
    assert TrainConfig(data="d", out="o", backbone="efficientnet-lite2", members=1).members == 1


def test_train_flags_are_generated_from_the_config_model():
    args = build_parser().parse_args(["train", "data", "--out", "o", "--finetune-epochs", "3", "--weights", "none"])
    assert vars(args) == {
        "command": "train",
        "data": [Path("data")],
        "config": None,
        "out": "o",
        "finetune_epochs": "3",
        "weights": "none",
    }
    for name in set(TrainConfig.model_fields) - {"data", "more_data", "augmentation"}:
        parsed = build_parser().parse_args(["train", "data", f"--{name.replace('_', '-')}", "v"])
        assert getattr(parsed, name) == ([Path("v")] if name in ("ood", "line") else "v")  # --ood, --line repeat
    more = build_parser().parse_args(["train", "shop", "line-crops", "more", "--out", "o"])
    assert more.data == [Path("shop"), Path("line-crops"), Path("more")]  # the first is data, the rest more_data


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image-size", "8"], "image_size: Input should be greater than or equal to 32 (got '8')"),
        (
            ["--views", "abc"],
            "views: Input should be a valid integer, unable to parse string as an integer (got 'abc')",
        ),
        (["--val-fraction", "0.45", "--test-fraction", "0.45"], "at least 20 %"),
        (["--name", "bad name!"], "name"),
        (["--config", "/nonexistent.toml"], "config file does not exist"),
    ],
)
def test_invalid_settings_exit_before_any_work(tmp_path, capsys, argv, message):
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    assert code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_invalid_settings_read_as_key_reason_value_without_pydantic_links(tmp_path, capsys, monkeypatch):
    toml = tmp_path / "train.toml"
    toml.write_text("views = [\n")
    assert main(["train", str(tmp_path), "--out", "o", "--config", str(toml)]) == EXIT_BAD_INPUT
    assert f"{toml}: not valid TOML" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", "o", "--batch-size", "0"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "batch_size: Input should be greater than or equal to 1 (got '0') [from command line]" in err
    assert "errors.pydantic.dev" not in err and "Traceback" not in err
    toml.write_text("head_epochs = 0\n")
    monkeypatch.setenv("SORTLINE_TRAIN_VIEWS", "0")
    assert main(["train", str(tmp_path), "--out", "o", "--config", str(toml)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"head_epochs: Input should be greater than or equal to 1 (got 0) [from {toml}]" in err
    assert "views: Input should be greater than or equal to 1 (got '0') [from environment SORTLINE_TRAIN_VIEWS]" in err


def test_help_shows_real_defaults():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "PydanticUndefined" not in text and "(required)" in text and "(default: 5)" in text


def test_bad_data_folders_exit_with_a_clear_message(make_dataset, tmp_path, capsys):
    root = make_dataset(per_class=4, classes=("red_box",))
    code = main(
        [
            "train",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--work-dir",
            str(tmp_path / "w"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--weights",
            "none",
            "--image-size",
            "32",
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "a classifier needs at least 2" in capsys.readouterr().err


def test_predict_refuses_a_missing_bundle(tmp_path, capsys):
    assert main(["predict", "--bundle", str(tmp_path / "none"), "x.jpg"]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_precision_auto_picks_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    from trainer import accelerator

    monkeypatch.setattr(accelerator, "gpu_count", lambda: 0)
    monkeypatch.setattr(accelerator, "cpu_has_bf16", lambda: True)
    assert accelerator.compute_policy("auto") == "mixed_bfloat16"
    monkeypatch.setattr(accelerator, "cpu_has_bf16", lambda: False)
    assert accelerator.compute_policy("auto") == "float32"
    assert accelerator.compute_policy("mixed_float16") == "mixed_float16"  # an explicit choice is kept
    monkeypatch.setattr(accelerator, "gpu_count", lambda: 1)
    assert accelerator.compute_policy("auto") == "mixed_float16"


def test_warm_start_flag_parses_as_a_boolean():
    cfg = load_config(None, data="d", out="o", warm_start="true", precision="float32")
    assert cfg.warm_start is True and cfg.warm_start_epochs >= 1
    with pytest.raises(ValueError, match="precision"):
        load_config(None, data="d", out="o", precision="fp8")


def test_belt_views_off_keep_the_feature_cache_key_of_before_they_existed():
    """Runs from before belt views reuse their cached features; any belt share is a cache of its own."""
    without = _cache_key(TrainConfig(data="d", out="o"), "float32", "w")
    assert "belt_p" not in without["augmentation"]
    with_belt = _cache_key(TrainConfig(data="d", out="o", augmentation={"belt_p": 0.2}), "float32", "w")
    assert with_belt["augmentation"]["belt_p"] == 0.2
    assert {k: v for k, v in with_belt["augmentation"].items() if k != "belt_p"} == without["augmentation"]
