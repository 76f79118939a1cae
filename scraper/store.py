"""The output folder: OUT/<label>/<sha256 prefix>.jpg plus OUT/manifest.csv, never left half-written.

A file is written to a hidden ``.part`` file and synced, then recorded in the manifest, then
renamed into place. So a kill leaves at most a ``.part`` file, which the next run either finishes
(its row was written and its content matches the row's sha256) or deletes; a ``.jpg`` in the folder
is always complete. Files the manifest does not list are never deleted: they count for dedup. A
lock file keeps two runs from writing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import imagehash
from PIL import Image

from scraper.errors import ScrapeError
from scraper.fetch import PreparedImage
from scraper.manifest import MANIFEST_FILE, ManifestRow, ManifestWriter, read_manifest

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


@dataclass(frozen=True)
class KnownImage:
    file: str
    sha256: str
    phash: int


def file_name(image: PreparedImage) -> str:
    """Derived from the content only: nothing the page says reaches the file system."""
    return f"{image.sha256[:16]}.jpg"


class OutputFolder:
    def __init__(self, root: Path, near_duplicate_distance: int, read_only: bool = False) -> None:
        self.root = root
        self._distance = near_duplicate_distance
        self._read_only = read_only
        self._writer: ManifestWriter | None = None
        if not read_only:
            root.mkdir(parents=True, exist_ok=True)
            self._lock = (root / ".lock").open("w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ScrapeError(f"another scrape is writing to {root}; wait for it or use another folder") from None
        rows = read_manifest(root / MANIFEST_FILE)
        self._seen_urls = {row.image_url for row in rows}
        self._known: list[KnownImage] = []
        self._saved: Counter[str] = Counter()
        recorded = self._index_manifest(rows)
        self._index_other_files(recorded)
        if not read_only:
            self._writer = ManifestWriter(root / MANIFEST_FILE)

    def close(self) -> None:
        if self._writer:
            self._writer.close()
        if not self._read_only:
            self._lock.close()

    def seen(self, image_url: str) -> bool:
        return image_url in self._seen_urls

    def saved(self, label: str) -> int:
        return self._saved[label]

    def duplicate_of(self, image: PreparedImage) -> tuple[str, str] | None:
        """("duplicate" | "near-duplicate", existing file) when the folder already has this picture."""
        for known in self._known:
            if known.sha256 == image.sha256:
                return "duplicate", known.file
        if self._distance >= 0:
            for known in self._known:
                if (known.phash ^ image.phash).bit_count() <= self._distance:
                    return "near-duplicate", known.file
        return None

    def save(self, image: PreparedImage, row: ManifestRow) -> Path:
        assert self._writer, "opened read-only"
        path = self.root / row.label / file_name(image)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        recorded = False
        try:
            with partial.open("wb") as handle:
                handle.write(image.jpeg)
                handle.flush()
                os.fsync(handle.fileno())
            self._writer.append(row)
            recorded = True
        finally:  # also on Ctrl-C: finish what the manifest promises, drop what it does not know
            if recorded:
                os.replace(partial, path)
            else:
                partial.unlink(missing_ok=True)
        self._remember(row)
        return path

    def record_skip(self, row: ManifestRow) -> None:
        assert self._writer, "opened read-only"
        self._writer.append(row)
        self._seen_urls.add(row.image_url)

    def _remember(self, row: ManifestRow) -> None:
        self._seen_urls.add(row.image_url)
        self._known.append(KnownImage(row.file, row.sha256, int(row.phash, 16)))
        self._saved[row.label] += 1

    def _index_manifest(self, rows: list[ManifestRow]) -> set[str]:
        recorded = set()
        for row in rows:
            if row.status != "saved":
                continue
            recorded.add(row.file)
            path = self.root / row.file
            if not path.is_file():
                self._finish_interrupted_save(path, row.sha256)
            if path.is_file():
                self._known.append(KnownImage(row.file, row.sha256, int(row.phash, 16)))
                self._saved[row.label] += 1
            # A saved file deleted since (curated by hand) stays deleted: its URL is still "seen".
        return recorded

    def _finish_interrupted_save(self, path: Path, sha256: str) -> None:
        partial = path.with_name(f".{path.name}.part")
        if self._read_only or not partial.is_file():
            return
        if hashlib.sha256(partial.read_bytes()).hexdigest() == sha256:
            log.info("finishing %s, recorded by an interrupted run", path.relative_to(self.root))
            os.replace(partial, path)

    def _index_other_files(self, recorded: set[str]) -> None:
        """Images the manifest does not list still count for dedup; .part leftovers of a kill go."""
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if not path.is_file() or relative in recorded or relative == MANIFEST_FILE:
                continue
            if path.name.startswith(".") and path.name.endswith(".part"):
                if not self._read_only:
                    log.info("removing %s, left unfinished by an interrupted run", relative)
                    path.unlink()
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                self._index_foreign(path, relative)

    def _index_foreign(self, path: Path, relative: str) -> None:
        data = path.read_bytes()
        try:
            with Image.open(path) as image:
                phash = int(str(imagehash.phash(image.convert("RGB"))), 16)
        except (OSError, ValueError):
            log.warning("ignoring %s: not a readable image", relative)
            return
        self._known.append(KnownImage(relative, hashlib.sha256(data).hexdigest(), phash))
