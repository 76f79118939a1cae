"""The scraper's one settings model, read from a TOML file and the command line (the command line wins).

Every option is a field here, so ``sortline-scrape --help`` and the TOML file describe the same
things under the same names (nested groups become ``--browser.remote-url`` on the command line and
``[browser]`` tables in TOML).
"""

from __future__ import annotations

import re
from argparse import ArgumentParser
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic_settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, CliSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from edge.config import SettingSources, validation_problems

USER_AGENT = "Mozilla/5.0 (compatible; sortline-scraper/0.1; labelled product photos for an edge sorting model)"
# What robots.txt rules are matched against: the product token of the User-Agent.
ROBOTS_AGENT = "sortline-scraper"
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NO_DEFAULT_SHOWN = re.compile(r"\s*\((?:default: None|default factory: (?:dict|list))\)")
# How pydantic-settings reports a command-line value it cannot parse (broken JSON): the key, then why.
_UNPARSABLE_OPTION = re.compile(r"^Parsing error encountered for (?P<key>[\w.]+): (?P<why>.*)$", re.DOTALL)


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrowserSettings(_Group):
    binary: Path = Field(Path("/usr/bin/chromium"), description="Chromium executable (local browser only)")
    driver: Path = Field(
        Path("/usr/bin/chromedriver"),
        description="chromedriver; given explicitly so Selenium Manager never goes to the network",
    )
    remote_url: str | None = Field(None, description="Selenium Grid / remote WebDriver URL instead of a local browser")
    extra_args: list[str] = Field(default_factory=list, description="more Chromium command-line flags")
    block_images: bool = Field(True, description="the browser skips images: they are fetched once, by the downloader")
    page_load_timeout_s: float = Field(30.0, gt=0, description="limit for one page load")
    render_timeout_s: float = Field(10.0, gt=0, description="limit for tiles or a lazy image to appear")
    page_retries: int = Field(3, ge=0, description="retries of a search page answered with HTTP 429 or 5xx")
    page_retry_backoff_s: float = Field(
        30.0, ge=0, description="wait before the first retry of a busy search page, twice as long before each next"
    )


class PolitenessSettings(_Group):
    page_delay_s: float = Field(3.0, ge=0, description="pause between two search-page loads")
    host_interval_s: float = Field(1.0, ge=0, description="per-host rate limit: least seconds between two requests")
    user_agent: str = Field(USER_AGENT, min_length=1, description="sent with every request; add your contact to it")
    obey_robots: bool = Field(True, description="obey robots.txt; switch off only for a site you are allowed to scrape")


class DownloadSettings(_Group):
    timeout_s: float = Field(20.0, gt=0, description="connect timeout, and longest wait for the next bytes")
    deadline_s: float = Field(
        60.0, gt=0, description="longest one image download may take in all, however slowly the server sends it"
    )
    retries: int = Field(3, ge=0, description="retries of a failed request (connection errors, 429, 5xx)")
    backoff_s: float = Field(
        1.0, ge=0, description="first retry at once, the second after this long, each next one twice as long"
    )
    max_bytes: int = Field(10_000_000, gt=0, description="larger responses are refused unread")
    max_pixels: int = Field(40_000_000, gt=0, description="decompression-bomb guard: larger images are refused")
    min_side: int = Field(100, gt=0, description="images whose shorter side is smaller are refused")
    jpeg_quality: int = Field(92, ge=50, le=100)
    near_duplicate_distance: int = Field(
        4, ge=-1, le=64, description="perceptual-hash Hamming distance counted as a near duplicate (-1: off)"
    )
    max_consecutive_failures: int = Field(
        5, gt=0, description="stop a class after this many image requests in a row fail (host down)"
    )


class ScrapeSettings(BaseSettings):
    """Collect labelled product photos from a shop's search pages (see docs/scraping.md)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        cli_prog_name="sortline-scrape",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_shortcuts={"out": "o"},
        cli_hide_none_type=True,  # `--base-url BASE_URL`, not `{str,null}`
        cli_avoid_json=True,  # groups are set key by key (`--browser.remote-url`), not as one JSON blob
    )

    config: Path | None = Field(None, description="TOML file with these settings; command-line values win")
    classes: dict[str, list[str]] = Field(
        default_factory=dict, description='label -> search queries, e.g. {"jeans": ["men jeans"]}'
    )
    per_class: int = Field(200, gt=0, description="images to save per label (across all its queries)")
    out: Path = Field(Path("data/scraped"), description="output folder: OUT/<label>/*.jpg and OUT/manifest.csv")
    site: str = Field("amazon", description="site profile: a built-in name or the path of a profile TOML file")
    base_url: str | None = Field(None, description="override the profile's base URL (regional shop, mirror)")
    max_pages: int = Field(20, gt=0, description="search-result pages to read per query at most")
    dry_run: bool = Field(False, description="list what would be fetched; download and write nothing")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    politeness: PolitenessSettings = Field(default_factory=PolitenessSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):
        # load_settings merges TOML and command line itself; environment variables are not read.
        return (init_settings,)

    @field_validator("classes")
    @classmethod
    def _labels_are_folder_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for label, queries in value.items():
            if not _LABEL.match(label):
                raise ValueError(f"label {label!r} must be lowercase letters, digits, '-' or '_' (it names a folder)")
            if not queries or any(not q.strip() for q in queries):
                raise ValueError(f"label {label!r} needs at least one non-empty search query")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_a_web_address(cls, value: str | None) -> str | None:
        """A missing scheme or host would otherwise surface much later, as an unreadable robots.txt."""
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host, e.g. https://www.amazon.de")
            if parts.port == 0:  # reading .port raises ValueError itself for one that is not a number or too big
                raise ValueError("port 0 cannot be connected to")
        return value


class SettingsError(Exception):
    """Settings that cannot be used; the message names each bad key, its value and the source that set it."""

    @classmethod
    def listing(cls, heading: str, error: ValidationError, sources: SettingSources | None = None) -> SettingsError:
        """One indented 'key: reason (got value)' line per problem under ``heading``: the form every Sortline
        program reports bad settings in, instead of pydantic's own multi-line text."""
        problems = validation_problems(error, sources)
        return cls("\n".join([heading, *(f"  {problem}" for problem in problems)]))


def load_settings(argv: Sequence[str]) -> ScrapeSettings:
    """Command line over TOML over defaults. Raises SystemExit on --help or bad arguments, like argparse,
    and SettingsError for values that parse but are not valid."""
    try:
        cli_values = CliSettingsSource(
            ScrapeSettings, cli_parse_args=list(argv), add_argument_method=_add_argument_named_for_users
        )()
    except pydantic_settings.SettingsError as error:
        raise SettingsError(_unparsable_option(error)) from None
    config = Path(cli_values["config"]) if cli_values.get("config") else None
    toml_values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise SettingsError(f"{config}: config file not found")
        try:
            toml_values = TomlConfigSettingsSource(ScrapeSettings, toml_file=config)()
        except ValueError as error:  # tomllib.TOMLDecodeError
            raise SettingsError(f"{config}: not valid TOML: {error}") from None
    try:
        settings = ScrapeSettings(**_deep_merge(toml_values, cli_values))
    except ValidationError as error:
        sources = SettingSources(config_file=config, flags=cli_values)
        raise SettingsError.listing("bad settings:", error, sources) from None
    if not settings.classes:
        raise SettingsError('no classes to scrape: give [classes] in --config or --classes \'{"label": ["query"]}\'')
    return settings


def _unparsable_option(error: pydantic_settings.SettingsError) -> str:
    """Names the option as it was typed (`--browser.extra-args`), where pydantic-settings names the field."""
    match = _UNPARSABLE_OPTION.match(str(error))
    if match is None:
        return str(error)
    option = "--" + match["key"].replace("_", "-")
    return f"{option}: cannot be read ({match['why']}); it takes JSON, see `sortline-scrape --help`"


def _add_argument_named_for_users(parser: ArgumentParser, *names: str, **kwargs: Any) -> Any:
    """Show `--per-class PER_CLASS` in --help, as argparse does, instead of the Python type (`int`, `Path`),
    and no default where there is none to show (`None`, an empty dict or list)."""
    if "metavar" in kwargs:
        kwargs["metavar"] = names[0].lstrip("-").rsplit(".", 1)[-1].replace("-", "_").upper()
    if isinstance(kwargs.get("help"), str):
        kwargs["help"] = _NO_DEFAULT_SHOWN.sub("", kwargs["help"])
    return parser.add_argument(*names, **kwargs)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "classes":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
