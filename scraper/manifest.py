"""OUT/manifest.csv: one row per image URL the scraper has dealt with, saved or skipped.

It is the scraper's memory (a rerun never fetches a URL that has a row) and the data set's
provenance (where each file came from). Rows are appended and flushed to disk one at a time, so a
crash loses at most the row being written.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scraper.errors import ScrapeError

MANIFEST_FILE = "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    file: str  # relative to the output folder; empty when skipped
    label: str
    query: str
    product_id: str
    title: str
    product_url: str
    image_url: str
    sha256: str
    phash: str  # 64-bit perceptual hash, hex
    width: str
    height: str
    fetched_at: str  # UTC, ISO 8601
    site: str
    status: str  # saved | skipped
    reason: str  # why skipped: duplicate, near-duplicate, not-an-image, too-large, ...
    detail: str


COLUMNS = tuple(field.name for field in fields(ManifestRow))
_ONE_LINE = re.compile(r"[\r\n]+")


def read_manifest(path: Path) -> list[ManifestRow]:
    if not path.exists():
        return []
    text = _complete_lines(path.read_bytes()).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ScrapeError(
            f"{path} has columns {reader.fieldnames}, expected {list(COLUMNS)}: "
            "not a manifest this scraper wrote; choose another output folder"
        )
    return [ManifestRow(**row) for row in reader]


def _complete_lines(data: bytes) -> bytes:
    """Drops a last line cut short by a crash (fields never hold newlines: `ManifestWriter` flattens them)."""
    return data[: data.rfind(b"\n") + 1]


class ManifestWriter:
    def __init__(self, path: Path) -> None:
        if path.exists():
            os.truncate(path, len(_complete_lines(path.read_bytes())))
        new = not path.exists() or path.stat().st_size == 0
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS)
        if new:
            self._writer.writeheader()
            self._sync()

    def append(self, row: ManifestRow) -> None:
        # One physical line per row, whatever a page put in a field: a crash then cuts at most the last line.
        self._writer.writerow({name: _ONE_LINE.sub(" ", value) for name, value in asdict(row).items()})
        self._sync()

    def close(self) -> None:
        self._handle.close()

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
