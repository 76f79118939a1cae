"""The output folder: atomic saves, the manifest as the run's memory, and what a kill leaves behind."""

from __future__ import annotations

import io

import pytest

from scraper.config import DownloadSettings
from scraper.errors import ScrapeError
from scraper.fetch import PreparedImage, prepare
from scraper.manifest import COLUMNS, ManifestRow, ManifestWriter, read_manifest
from scraper.store import OutputFolder, file_name
from tests.scraper.shop_site import picture


def _image(seed: int) -> PreparedImage:
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="PNG")
    return prepare(buffer.getvalue(), DownloadSettings())


def _row(image: PreparedImage, label: str = "jeans", url: str = "http://shop/img/1.jpg") -> ManifestRow:
    values = dict.fromkeys(COLUMNS, "")
    values.update(
        file=f"{label}/{file_name(image)}",
        label=label,
        image_url=url,
        sha256=image.sha256,
        phash=f"{image.phash:016x}",
        status="saved",
    )
    return ManifestRow(**values)


def test_saved_images_are_remembered_by_the_next_run(tmp_path):
    image = _image(1)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)
    path = folder.save(image, _row(image))
    folder.close()
    assert path.read_bytes() == image.jpeg and path.parent == tmp_path / "jeans"

    reopened = OutputFolder(tmp_path, near_duplicate_distance=4)
    assert reopened.seen("http://shop/img/1.jpg") and reopened.saved("jeans") == 1
    assert reopened.duplicate_of(image) == ("duplicate", f"jeans/{file_name(image)}")
    assert reopened.duplicate_of(_image(2)) is None
    reopened.close()


def test_two_runs_cannot_write_one_folder(tmp_path):
    first = OutputFolder(tmp_path, near_duplicate_distance=4)
    with pytest.raises(ScrapeError, match="another scrape is writing"):
        OutputFolder(tmp_path, near_duplicate_distance=4)
    first.close()
    OutputFolder(tmp_path, near_duplicate_distance=4).close()


def test_ctrl_c_while_saving_leaves_no_file_and_no_row(tmp_path, monkeypatch):
    image = _image(1)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)

    def interrupted(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(ManifestWriter, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        folder.save(image, _row(image))
    folder.close()
    assert list((tmp_path / "jeans").iterdir()) == []
    assert read_manifest(tmp_path / "manifest.csv") == []


def test_a_kill_between_row_and_rename_is_finished_by_the_next_run(tmp_path):
    recorded, unrecorded = _image(1), _image(2)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)
    folder.record_skip(_row(recorded))  # stands in for the row written just before the kill...
    folder.close()
    manifest = (tmp_path / "manifest.csv").read_text().replace(",skipped,", ",saved,")
    (tmp_path / "manifest.csv").write_text(manifest)
    (tmp_path / "jeans").mkdir()
    (tmp_path / "jeans" / f".{file_name(recorded)}.part").write_bytes(recorded.jpeg)  # ...and its synced temp file
    (tmp_path / "jeans" / f".{file_name(unrecorded)}.part").write_bytes(unrecorded.jpeg[:500])  # killed mid-write

    reopened = OutputFolder(tmp_path, near_duplicate_distance=4)
    reopened.close()
    assert sorted(path.name for path in (tmp_path / "jeans").iterdir()) == [file_name(recorded)]
    assert reopened.saved("jeans") == 1


def test_a_manifest_line_cut_short_by_a_crash_is_dropped(tmp_path):
    image = _image(1)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)
    folder.save(image, _row(image))
    folder.close()
    with (tmp_path / "manifest.csv").open("a") as manifest:
        manifest.write("jeans/0123,jeans,men jea")
    assert len(read_manifest(tmp_path / "manifest.csv")) == 1
    OutputFolder(tmp_path, near_duplicate_distance=4).close()  # the writer trims it before appending
    assert (tmp_path / "manifest.csv").read_text().endswith("\n")
    assert len(read_manifest(tmp_path / "manifest.csv")) == 1


def test_newlines_in_any_field_cannot_split_a_row(tmp_path):
    image = _image(1)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)
    row = _row(image)
    folder.save(image, ManifestRow(**{**row.__dict__, "product_id": "B0\nJEANS\r\n1", "title": "a\nb"}))
    folder.close()
    lines = (tmp_path / "manifest.csv").read_bytes().splitlines()
    assert len(lines) == 2  # the header and one row, each one physical line
    (saved,) = read_manifest(tmp_path / "manifest.csv")
    assert (saved.product_id, saved.title) == ("B0 JEANS 1", "a b")


def test_an_image_deleted_by_hand_is_not_fetched_again(tmp_path):
    image = _image(1)
    folder = OutputFolder(tmp_path, near_duplicate_distance=4)
    path = folder.save(image, _row(image))
    folder.close()
    path.unlink()  # curated out: a wrong product
    reopened = OutputFolder(tmp_path, near_duplicate_distance=4)
    assert reopened.seen("http://shop/img/1.jpg") and reopened.saved("jeans") == 0
    reopened.close()


def test_a_foreign_csv_is_not_taken_for_a_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,label\nx.jpg,jeans\n")
    with pytest.raises(ScrapeError, match="not a manifest this scraper wrote"):
        OutputFolder(tmp_path, near_duplicate_distance=4)
