"""Site profiles: where a shop keeps its product tiles, ids, titles, images and "next" link.

A profile is data (a TOML file), so a layout change is an edit to one file and a new shop is a new
file: built-in ones live in ``scraper/profiles/<name>.toml``, and ``site`` may also be the path of
a user's own profile.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scraper.config import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILE_DIR = Path(__file__).with_name("profiles")


class SiteProfile(BaseModel):
    """CSS selectors are relative to the document, except those marked as relative to a tile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    base_url: str = Field(pattern=r"^https?://[^/]+$", description="scheme and host, no trailing slash")
    search_path: str = Field(description="path and query of page 1 of a search; {query} is the URL-encoded query")
    tile: str = Field(min_length=1, description="one product in the result list")
    product_id_attribute: str = Field(min_length=1, description="attribute of the tile holding the product id")
    title: str = Field(min_length=1, description="tile-relative: the product title")
    link: str = Field(min_length=1, description="tile-relative: the link to the product page")
    image: str = Field(min_length=1, description="tile-relative: the product image")
    image_url_attributes: tuple[str, ...] = Field(
        ("srcset", "src"), min_length=1, description="image attributes holding its URL, best first; srcset is parsed"
    )
    placeholder_pattern: str = Field(
        r"^data:", description="regex: a URL matching it is a lazy-loading placeholder, not the image"
    )
    next_page: str = Field(min_length=1, description="the enabled 'next page' link")
    last_page: str | None = Field(
        None,
        description="shown on the last page instead of the next link (a disabled 'next'); with it, a full page "
        "showing neither is known to be a layout change",
    )
    no_results: str | None = Field(None, description="shown instead of tiles when a search finds nothing")
    captcha: tuple[str, ...] = Field((), description="any of these present means a bot check")
    captcha_phrases: tuple[str, ...] = Field((), description="any of these in the page text means a bot check")

    @field_validator("search_path")
    @classmethod
    def _has_query(cls, value: str) -> str:
        if "{query}" not in value or not value.startswith("/"):
            raise ValueError("must start with '/' and contain {query}")
        return value

    def search_url(self, query: str, base_url: str | None = None) -> str:
        return (base_url or self.base_url).rstrip("/") + self.search_path.format(query=quote_plus(query))


def available_profiles() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def load_profile(site: str) -> SiteProfile:
    """``site`` is a built-in profile name or the path of a profile TOML file. A profile that cannot be used
    is a settings error (exit 2), found before the browser starts."""
    path = Path(site) if site.endswith(".toml") else PROFILE_DIR / f"{site}.toml"
    if not path.is_file():
        known = ", ".join(available_profiles())
        raise SettingsError(f"unknown site profile {site!r}: built-in: {known}; or give a profile's .toml path")
    try:
        return SiteProfile(**tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"site profile {path} is not valid TOML: {error}") from None
    except ValidationError as error:
        raise SettingsError.listing(f"site profile {path} is invalid:", error) from None
