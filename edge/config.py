"""The daemon's configuration: one pydantic-settings model, read from a TOML file, environment
variables (``SORTLINE_…``, nested with ``__``) and secret files.

Precedence, highest first: environment, secret files (systemd ``LoadCredential`` puts them in
``$CREDENTIALS_DIRECTORY``, each named ``sortline_`` + the key, e.g. ``sortline_mqtt__password``), the TOML file,
defaults. Secrets are ``SecretStr`` so they print as ``**********`` everywhere.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("sortline_config_file", default=None)


class ConfigError(Exception):
    """Invalid configuration; the message names each bad key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Roi(_Section):
    """Region of the frame that holds the belt; everything outside is ignored."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    unit: Literal["fraction", "px"] = "fraction"

    @model_validator(mode="after")
    def _inside_frame(self) -> Roi:
        if self.unit == "fraction" and (self.x + self.width > 1.0 + 1e-9 or self.y + self.height > 1.0 + 1e-9):
            raise ValueError("a fractional ROI must lie inside the frame (x + width <= 1, y + height <= 1)")
        return self

    def to_pixels(self, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) clipped to the frame; an ROI that misses the frame is an error."""
        sx, sy = (frame_width, frame_height) if self.unit == "fraction" else (1, 1)
        x0, y0 = round(self.x * sx), round(self.y * sy)
        x1 = min(frame_width, round((self.x + self.width) * sx))
        y1 = min(frame_height, round((self.y + self.height) * sy))
        if x1 - x0 < 8 or y1 - y0 < 8:
            raise ConfigError(
                f"camera.roi {self.model_dump()} leaves no usable area in a {frame_width}x{frame_height} frame"
            )
        return x0, y0, x1, y1


class CameraSettings(_Section):
    # "0" or "/dev/video0" (V4L2), a video file, rtsp://… or http://…, a GStreamer pipeline ending in
    # appsink, or "picamera2" / "picamera2:N" for a Raspberry Pi CSI camera.
    source: str = "0"
    loop: bool = False  # restart a video file at its end instead of reporting end-of-stream
    realtime: bool = True  # play video files at their own frame rate, as a camera would deliver them
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    fps: float | None = Field(default=None, gt=0)
    roi: Roi | None = None
    read_timeout_s: float = Field(default=5.0, gt=0)  # no frame for this long counts as a failure
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

    @field_validator("source", mode="before")
    @classmethod
    def _device_index(cls, value: object) -> object:
        """`source = 0` in TOML is a device index, as a plant engineer writes it; keep it as "0"."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        return value


class ModelSettings(_Section):
    bundle: Path = Path("models/apparel-efficientnet-lite2-int8")
    threads: int = Field(default=2, ge=1, le=64)
    # Below the threshold the decision is "reject". Unset: the bundle's recommended threshold (chosen by
    # the trainer on validation photos), else 0.6. `thresholds` overrides it per top label.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = {}
    # An item whose novelty (its distance from the training images in the model's feature space, over the
    # bundle's limit) is above this is an "unfamiliar" reject whatever its scores. Raise it where good items
    # come out unfamiliar (crops unlike the training photos: bench/belt.py's top-to-bottom line); 1e9: no check.
    # Where the bundle tightens the limit for a top label (familiarity.per_label), that label's limit scales too.
    max_novelty: float = Field(default=1.0, gt=0)


class PresenceSettings(_Section):
    """Items are what differs from the learned moving, empty belt; followed along it, timed at a reference line."""

    # A pixel differs from the belt when it is further from the belt's learned colour there than `sigmas` times
    # the belt's own variation at that pixel (grain, seams passing) and than `pixel_delta` grey levels: 10
    # finds black trousers on a black rubber belt.
    pixel_delta: int = Field(default=6, ge=1, le=255)
    sigmas: float = Field(default=4.0, gt=0)
    # Smallest new item, as a share of the ROI: less is a mark or a reflection (2 %: garments a third of the
    # belt's width on a 640x480 view are 2.7 % each). Down to half of it, a candidate is an item once followed
    # wholly in view, where the belt moved it, five frames in a row (garments a fifth of the belt wide; the belt's
    # speed must be known: edge.tracking). An item already followed is followed down to leave_fraction
    # (hysteresis), as it leaves the view.
    enter_fraction: float = Field(default=0.02, gt=0, lt=1)
    leave_fraction: float = Field(default=0.007, gt=0, lt=1)
    min_frames: int = Field(default=2, ge=1)  # frames an item must be seen before it counts (debounce)
    max_frames: int = Field(default=15, ge=1)  # classified views per item; decided then once it has crossed
    background_frames: int = Field(default=20, ge=1)  # empty-belt frames to learn before the first item
    background_rate: float = Field(default=0.02, ge=0, le=1)  # how fast the belt model follows light and wear
    # Something in view that appeared at once (not moving in: a lamp switched on, the camera knocked) and nothing
    # moving for this many frames: learn the empty belt again instead of seeing an item there forever. A belt
    # that stops with items on it keeps them, however long it stands. 0: never.
    relearn_after_frames: int = Field(default=300, ge=0)
    # After a restart, start from the empty belt the last run kept in the state directory when it was kept at
    # most this many seconds ago (and fits the first frame), instead of learning it for `background_frames` while
    # items pass unseen. A belt, lamp or camera changed while the daemon was down may still fit it: then items
    # can be missed or seen that are not there for a few seconds, until the belt's check learns it again. 0:
    # always learn afresh.
    kept_belt_for_s: float = Field(default=3600.0, ge=0)
    # Travel of the belt in the camera's view; auto: learned from the first items' tracks.
    direction: Literal["auto", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"] = "auto"
    # The line across the belt where an item's crossing is timed (`crossed_at`), as a share of the ROI along
    # the travel, from the edge where items come in: 0.5 is the ROI's centre line.
    reference_line: float = Field(default=0.5, gt=0, lt=1)
    # Millimetres per pixel on the belt plane (mark a known length on the page): decisions then also carry
    # belt_speed_mm_s.
    mm_per_px: float | None = Field(default=None, gt=0)
    # An item longer than this along the belt (share of the ROI's length) is not one item: a reject
    # (too_long). Unset: 1.8 times the median length of the items this line has carried so far.
    max_item_length: float | None = Field(default=None, gt=0, le=1)
    # Classify the item's bounding box (plus a margin), not the whole ROI, and only while the item is in
    # full view: the model then sees the item framed as in the training photos, whatever the belt
    # width. Off: every frame's whole ROI is classified.
    crop_to_item: bool = True
    # Margin around the item's box, as a share of the box size on every side. Unset: the bundle's
    # input.item_margin (how its trainer framed items), else 0 (the box hugs the item).
    item_margin: float | None = Field(default=None, ge=0, le=0.5)

    @model_validator(mode="after")
    def _hysteresis(self) -> PresenceSettings:
        if self.leave_fraction >= self.enter_fraction:
            raise ValueError("leave_fraction must be below enter_fraction")
        return self


class TriggerSettings(_Section):
    mode: Literal["continuous", "presence", "external"] = "presence"
    min_interval_s: float = Field(default=0.5, ge=0)  # continuous: at most one decision per interval
    presence: PresenceSettings = PresenceSettings()
    external_frames: int = Field(default=3, ge=1)  # external: frames voted per trigger
    external_timeout_s: float = Field(default=2.0, gt=0)  # external: give up (reject) without frames
    # Once an item has left the view, how long its decision may wait for a crop still queued behind other
    # items' (a classifier slower than the items come): then it is decided on what it has, a reject
    # (no_frames) if nothing. A crop already being classified is always waited for.
    decision_wait_s: float = Field(default=2.0, gt=0)


class LaneSettings(_Section):
    """Label -> lane number: PLCs read integers. Every model label needs a lane."""

    map: dict[str, int] = Field(default_factory=lambda: {"jeans": 1, "trousers": 2, "saree": 3})
    reject: int = 0


class TlsSettings(_Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    insecure: bool = False  # skip hostname check; only for brokers addressed by IP on a closed network

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5 when the broker speaks it
    client_id: str | None = None  # default: sortline-<device_id>
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings = TlsSettings()
    keepalive_s: int = Field(default=30, ge=5)
    topic_prefix: str = Field(default="sortline", pattern=r"^[^#+]+$")
    queue_size: int = Field(default=10000, ge=1)  # decisions held while the broker is away
    decision_ttl_s: float = Field(default=10.0, gt=0)  # a decision older than this must not be acted on
    stats_interval_s: float = Field(default=10.0, gt=0)
    flush_timeout_s: float = Field(default=5.0, ge=0)  # on shutdown, wait this long for queued decisions
    reconnect_initial_s: float = Field(default=0.25, gt=0)  # first wait after losing the broker, doubling
    # up to this: a broker that comes back is found within a second, well inside decision_ttl_s
    reconnect_max_s: float = Field(default=1.0, gt=0)


class CropSettings(_Section):
    """Low-confidence crops saved for retraining, with a bounded disk budget."""

    directory: Path | None = None  # None: saving is off
    below_confidence: float = Field(default=0.8, ge=0, le=1)
    max_megabytes: float = Field(default=200.0, gt=0)
    # Crops labelled on the commissioning page move here, by label, with a manifest: a data folder for
    # sortline-train. Unset: "labelled" beside `directory`.
    labelled_directory: Path | None = None

    @property
    def labelled(self) -> Path | None:
        if self.labelled_directory is not None or self.directory is None:
            return self.labelled_directory
        return self.directory.parent / "labelled"


class RolloutSettings(_Section):
    """Model rollouts while the line runs: verify, load beside the live model, self-test, swap between items."""

    # Where downloaded bundles are unpacked. None: the directory that holds model.bundle.
    models_dir: Path | None = None
    watch: bool = False  # roll out when model.bundle (or the symlink it is) changes on disk
    watch_interval_s: float = Field(default=2.0, gt=0)  # how often the watch looks (stat only, cheap)
    max_download_mb: float = Field(default=500.0, gt=0)  # a bundle archive bigger than this is refused
    download_timeout_s: float = Field(default=600.0, gt=0)  # the whole transfer; a silent server fails sooner
    require_self_test: bool = False  # refuse bundles that carry no reference images
    self_test_min_accuracy: float = Field(default=1.0, ge=0, le=1)  # share of reference images to get right
    state_file: Path | None = None  # live model and last rollout result as JSON, for local health checks


class MetricsSettings(_Section):
    """Optional Prometheus text endpoint (``/metrics``); off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback: expose it to the plant network only on purpose
    port: int = Field(default=9108, ge=0, le=65535)  # 0: any free port (tests)


class UiSettings(_Section):
    """The commissioning page served by the daemon (the `ui` extra); off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback: only this device; anything else needs a password
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    password: SecretStr | None = None  # from $CREDENTIALS_DIRECTORY/sortline_ui__password, never the TOML
    # DNS names the page is opened by, besides IP addresses, localhost and this machine's own names; any other
    # Host is refused (DNS rebinding: a hostile site pointing its own name at the device)
    allowed_hosts: list[str] = []

    @model_validator(mode="after")
    def _password_beyond_loopback(self) -> UiSettings:
        if self.enabled and self.password is None and not is_loopback(self.host):
            raise ValueError(
                f"the page is served on {self.host}, beyond this device: set a password "
                "(credential file sortline_ui__password, or SORTLINE_UI__PASSWORD)"
            )
        return self


class OpcUaSettings(_Section):
    """The sorter as an OPC UA server (the `opcua` extra), beside MQTT; off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback: anonymous clients, no message security; anything else needs a user
    port: int = Field(default=4840, ge=0, le=65535)
    username: str | None = Field(default=None, min_length=1, max_length=64)
    password: SecretStr | None = None  # from $CREDENTIALS_DIRECTORY/sortline_opcua__password, never the TOML
    # Beyond loopback: a folder of client certificates (DER or PEM); set, only clients whose certificate is in it
    # connect. Unset, any client with the user's password does (its certificate still signs the messages).
    trusted_clients: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/sortline/"

    @model_validator(mode="after")
    def _user_beyond_loopback(self) -> OpcUaSettings:
        if self.enabled and not is_loopback(self.host) and (self.username is None or self.password is None):
            raise ValueError(
                f"the OPC UA server listens on {self.host}, beyond this device: set username and a password "
                "(credential file sortline_opcua__password, or SORTLINE_OPCUA__PASSWORD)"
            )
        return self


def _systemd_state_directory() -> Path | None:
    value = os.environ.get("STATE_DIRECTORY", "")
    return Path(value.split(":")[0]) if value else None


def missing_extra(section: str, exc: ModuleNotFoundError) -> ConfigError:
    """The error for ``[section] enabled = true`` on an install without that section's extra."""
    return ConfigError(
        f"{section}.enabled needs the {section} extra (missing {exc.name}): pip install 'sortline[{section}]'"
    )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SORTLINE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    device_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9._-]+$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    camera: CameraSettings = CameraSettings()
    model: ModelSettings = ModelSettings()
    trigger: TriggerSettings = TriggerSettings()
    lanes: LaneSettings = LaneSettings()
    mqtt: MqttSettings = MqttSettings()
    crops: CropSettings = CropSettings()
    rollout: RolloutSettings = RolloutSettings()
    metrics: MetricsSettings = MetricsSettings()
    ui: UiSettings = UiSettings()
    opcua: OpcUaSettings = OpcUaSettings()
    watchdog_stall_s: float = Field(default=10.0, gt=0)  # no processed frame for this long: stop pinging systemd
    # What the daemon changes while it runs (the ROI set on the page) is kept here, so /etc stays read-only.
    # Unset: systemd's $STATE_DIRECTORY (the unit's StateDirectory=), else nothing is kept across restarts.
    state_directory: Path | None = Field(default_factory=lambda: _systemd_state_directory())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            sources.append(
                NestedSecretsSettingsSource(
                    file_secret_settings,
                    secrets_dir=credentials,
                    secrets_prefix="sortline_",
                    secrets_nested_delimiter="__",
                )
            )
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _opcua_certificate_kept(self) -> EdgeSettings:
        if self.opcua.enabled and not is_loopback(self.opcua.host) and self.state_directory is None:
            raise ValueError(
                "opcua beyond loopback needs state_directory: the server's certificate is kept there, so clients "
                "that trust it keep trusting it after a restart"
            )
        return self

    def opcua_certificate_directory(self) -> Path | None:
        """Where the OPC UA server's certificate lives; None on loopback, where it serves without security."""
        if is_loopback(self.opcua.host) or self.state_directory is None:
            return None
        return self.state_directory / "opcua"

    def masked_json(self) -> str:
        """Effective configuration as JSON, secrets shown as ********** (safe for logs)."""
        return self.model_dump_json(indent=2)


def load_settings(config_file: Path | None = None) -> EdgeSettings:
    """Build the effective settings or raise ConfigError listing every bad key and where it came from."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"{config_file}: config file not found")
    token = _CONFIG_FILE.set(config_file)
    try:
        return EdgeSettings()
    except ValidationError as exc:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        sources = SettingSources(
            env_prefix="SORTLINE_", config_file=config_file, credentials_dir=Path(credentials) if credentials else None
        )
        lines = [f"  {problem}" for problem in validation_problems(exc, sources)]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"{config_file}: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)


@dataclass(frozen=True)
class SettingSources:
    """Where a program's settings come from, so a bad value can be traced to the one that set it."""

    env_prefix: str | None = None  # e.g. "SORTLINE_", nested keys joined with "__"
    config_file: Path | None = None
    credentials_dir: Path | None = None  # systemd credentials, named like the environment variables
    flags: Mapping[str, Any] = field(default_factory=dict)  # command-line values, nested like the settings

    def of(self, loc: Sequence[int | str]) -> str:
        """The source of the key at ``loc`` in precedence order: flag, environment variable or credential
        (for the key or a whole section above it), else the TOML file, else the defaults."""
        keys = [str(part) for part in loc]
        if _has_path(self.flags, keys):
            return "command line"
        environment = {name.upper(): name for name in os.environ}
        for depth in range(len(keys), 0, -1):
            name = "__".join(keys[:depth])
            if self.env_prefix and f"{self.env_prefix}{name}".upper() in environment:
                return f"environment {environment[f'{self.env_prefix}{name}'.upper()]}"
            credential = f"{(self.env_prefix or '').lower()}{name}"
            if self.credentials_dir and (self.credentials_dir / credential).is_file():
                return f"credential {credential}"
        return ", ".join([*self._inside(keys), str(self.config_file) if self.config_file is not None else "defaults"])

    def _inside(self, keys: list[str]) -> list[str]:
        """Environment variables and credentials that set keys inside the section at ``keys`` (a check of the
        whole section, such as "a password when the host is not loopback", may fail because of them)."""
        if not keys or not self.env_prefix:
            return []
        head = f"{self.env_prefix}{'__'.join(keys)}__"
        found = [f"environment {name}" for name in sorted(os.environ) if name.upper().startswith(head.upper())]
        if self.credentials_dir and self.credentials_dir.is_dir():
            found += [f"credential {p.name}" for p in sorted(self.credentials_dir.glob(f"{head.lower()}*"))]
        return found


def _has_path(values: Mapping[str, Any], keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(values, Mapping) or key not in values:
            return False
        values = values[key]
    return bool(keys)


def validation_problems(exc: ValidationError, sources: SettingSources | None = None) -> list[str]:
    """One 'key: reason (got value) [from source]' line per error, the form every Sortline program reports
    bad settings in."""
    return [
        f"{'.'.join(str(part) for part in err['loc']) or '<root>'}: {err['msg']}"
        + (f" (got {err['input']!r})" if _shows_input(err) else "")
        + (f" [from {sources.of(err['loc'])}]" if sources else "")
        for err in exc.errors()
    ]


def _shows_input(err: dict) -> bool:
    """Echo the bad value unless it could be a secret or a whole section."""
    loc = ".".join(str(part) for part in err["loc"])
    return not any(word in loc for word in ("password", "secret", "key")) and not isinstance(err.get("input"), dict)
