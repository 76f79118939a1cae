"""Picking the image URL out of an <img>: the largest ``srcset`` candidate, else a plain URL."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urljoin, urlsplit


def parse_srcset(value: str) -> list[tuple[str, str]]:
    """(url, descriptor) pairs, split as the HTML standard does: URLs may themselves contain commas."""
    candidates, pos, end = [], 0, len(value)
    while pos < end:
        while pos < end and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < end and not value[pos].isspace():
            pos += 1
        url, descriptor = value[start:pos], ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = pos
            while pos < end and value[pos] != ",":
                pos += 1
            descriptor = value[start:pos].strip()
        if url:
            candidates.append((url, descriptor))
    return candidates


def largest_candidate(srcset: str) -> str | None:
    """Width descriptors ("640w") beat densities ("2x"); no descriptor means 1x."""

    def size(descriptor: str) -> tuple[float, float]:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([wx])", descriptor.strip().lower())
        if not match:
            return (0.0, 1.0)
        number = float(match[1])
        return (number, 0.0) if match[2] == "w" else (0.0, number)

    candidates = parse_srcset(srcset)
    return max(candidates, key=lambda candidate: size(candidate[1]))[0] if candidates else None


def image_url(
    attributes: Mapping[str, str], order: Iterable[str], placeholder: re.Pattern[str], base_url: str
) -> str | None:
    """The first real (non-placeholder, http/https) URL found in the attributes, in profile order."""
    for name in order:
        value = (attributes.get(name) or "").strip()
        url = largest_candidate(value) if "srcset" in name else value
        if not url or placeholder.search(url):
            continue
        absolute = urljoin(base_url, url)
        if urlsplit(absolute).scheme in ("http", "https"):
            return absolute
    return None
