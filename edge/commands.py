"""Messages the daemon accepts over MQTT: commands (pause, resume, reload, set_threshold) and
external triggers. Parsing is strict, so a malformed message is refused with a reason that names
the bad field and never reaches the daemon.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

# Bounds on what a sender can make the daemon parse and echo: commands and triggers are a few hundred bytes.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_DEPTH = 8  # JSON nesting; ~1000 levels would otherwise raise RecursionError in the parser
MAX_ECHO_CHARS = 80  # a bad value quoted back in a reply or a log line
MAX_PATH_CHARS = 1024  # a bundle path on the device; longer is a mistake or an attack, and would be echoed


class CommandError(Exception):
    """A command that cannot be carried out; the message goes back to the sender in the reply."""


class _Command(BaseModel):
    # strict: "0.5" is not a number and 1 is not a string; extra fields are typos, not options.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: str | None = Field(default=None, max_length=128)  # echoed in the reply


class Pause(_Command):
    """Stop publishing decisions; frames are still read so the camera stays warm."""

    command: Literal["pause"]


class Resume(_Command):
    command: Literal["resume"]


class Reload(_Command):
    """Roll out the model bundle in ``bundle`` (a directory on the device) or at ``url`` (an http(s)
    tar archive of a bundle directory, downloaded into the models directory); ``sha256`` pins the
    model file expected there and is required for a URL. ``force`` rolls out a model that is worse than the
    live one on the line's own held-back crops (`edge.line_check`), which is otherwise refused."""

    command: Literal["reload"]
    bundle: Annotated[Path | None, Field(strict=False)]  # a JSON string; strict mode would demand a Path object
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s/]+[^\s]*$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    force: bool = False  # roll out even a model worse than the live one on the line's held-back crops

    @model_validator(mode="before")
    @classmethod
    def _url_instead_of_bundle(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("url") is not None and "bundle" not in data:
            return {**data, "bundle": None}
        return data

    @field_validator("bundle", mode="before")
    @classmethod
    def _non_empty_string(cls, value: Any) -> Any:
        if value is None or isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty path string")
        if len(value) > MAX_PATH_CHARS:
            raise ValueError(f"is {len(value)} characters long; at most {MAX_PATH_CHARS}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Reload:
        if (self.bundle is None) == (self.url is None):
            raise ValueError("give either bundle (a path on the device) or url, not both")
        if self.url is not None and self.sha256 is None:
            raise ValueError("a download needs the sha256 of its model file")
        return self


class SetThreshold(_Command):
    command: Literal["set_threshold"]
    value: float = Field(ge=0.0, le=1.0)


Command = Annotated[Pause | Resume | Reload | SetThreshold, Field(discriminator="command")]
COMMAND_NAMES = ("pause", "resume", "reload", "set_threshold")
_COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class Trigger(BaseModel):
    """A photo-eye or PLC saying an item is in front of the camera; the decision echoes ``item_id``."""

    # Gateways (Node-RED, PLC bridges) often add their own fields such as a timestamp: ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    item_id: str = Field(min_length=1, max_length=128)

    @field_validator("item_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must contain printable characters only")
        return value


def parse_command(payload: bytes) -> Command:
    """The command in ``payload`` or CommandError saying precisely what is wrong with it."""
    document = _json_object(payload, "command")
    name = document.get("command")
    if name is None:
        raise CommandError(f"missing field 'command' (one of {', '.join(COMMAND_NAMES)})")
    if name not in COMMAND_NAMES:
        raise CommandError(f"unknown command {echo(name)} (expected one of {', '.join(COMMAND_NAMES)})")
    try:
        return _COMMAND_ADAPTER.validate_python(document)
    except ValidationError as exc:
        raise CommandError(f"invalid {name} command: {_describe(exc, skip_tag=True)}") from None


def parse_trigger(payload: bytes) -> Trigger:
    """The trigger in ``payload`` or CommandError saying what is wrong with it."""
    document = _json_object(payload, "trigger")
    try:
        return Trigger.model_validate(document)
    except ValidationError as exc:
        raise CommandError(f"invalid trigger: {_describe(exc)}") from None


def request_id_of(payload: bytes) -> str | None:
    """Best-effort request id of a payload that failed validation, so even an error reply can be matched."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        document = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return None
    value = document.get("request_id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"{what} is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES} are accepted")
    try:
        # decode first: json.loads would guess UTF-16/32
        document = json.loads(payload.decode("utf-8"), parse_float=_exact_float)
    except UnicodeDecodeError:
        raise CommandError(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise CommandError(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CommandError(f"a {what} must be a JSON object, got {type(document).__name__}")
    if _depth(document) > MAX_DEPTH:
        raise CommandError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return document


def _exact_float(text: str) -> float:
    """A JSON number as a float, refusing one a float cannot hold: 1e-400 would be read as 0 and 1e400 as
    infinity, and a threshold of 0 lets every item through."""
    value = float(text)
    if math.isinf(value) or (value == 0.0 and any(digit in "123456789" for digit in text.lower().partition("e")[0])):
        raise ValueError(f"the number {echo(text)} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def echo(value: Any) -> str:
    """repr of a bad value, cut short: a sender must not be able to fill replies and logs."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else f"{text[:MAX_ECHO_CHARS]}… ({len(text)} characters)"


def _describe(exc: ValidationError, skip_tag: bool = False) -> str:
    """'value: Input should be less than or equal to 1 (got 1.5); extra: ...' from pydantic's errors."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if skip_tag and loc:
            loc = loc[1:]  # drop the union tag pydantic puts first
        field = ".".join(loc) or "<root>"
        got = "" if err["type"] == "missing" else f" (got {echo(err['input'])})"
        parts.append(f"{field}: {err['msg']}{got}")
    return "; ".join(parts)
