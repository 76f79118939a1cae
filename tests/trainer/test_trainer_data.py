"""Data checks, de-duplication and the leakage-free split (no TensorFlow needed)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from trainer_images import draw_item

from trainer.data import DataError, DataSet, assign_splits, load_dataset, scan, write_split_file

SPLIT_ARGS = {"max_distance": 6, "val_fraction": 0.2, "test_fraction": 0.2}


def add_near_duplicate(source: Path, target: Path, scale: float = 0.8, quality: int = 70) -> None:
    """The same photo resized and re-encoded, as shops and scrapers produce them."""
    image = cv2.imread(str(source))
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(target), resized, [cv2.IMWRITE_JPEG_QUALITY, quality])


def test_exact_duplicates_removed_and_broken_files_reported(make_dataset):
    root = make_dataset(per_class=5)
    shutil.copyfile(root / "red_box" / "red_box_000.jpg", root / "red_box" / "copy.jpg")
    shutil.copyfile(root / "red_box" / "red_box_001.jpg", root / "green_disc" / "mislabelled_copy.jpg")
    (root / "blue_bar" / "truncated.jpg").write_bytes((root / "blue_bar" / "blue_bar_000.jpg").read_bytes()[:40])
    (root / "blue_bar" / "notes.txt").write_text("not an image")

    labels, samples, summary = scan(root)

    assert labels == ("blue_bar", "green_disc", "red_box")
    assert summary["found"] == 18  # .txt is not an image candidate
    assert [b["file"] for b in summary["broken"]] == ["blue_bar/truncated.jpg"]
    assert "not a decodable image" in summary["broken"][0]["error"]
    removed = {d["file"]: d for d in summary["exact_duplicates_removed"]}
    assert set(removed) == {"red_box/red_box_000.jpg", "red_box/red_box_001.jpg"} or set(removed) == {
        "red_box/copy.jpg",
        "green_disc/mislabelled_copy.jpg",
    }
    assert len(samples) == 15
    assert len({s.sha256 for s in samples}) == 15


def test_near_duplicates_share_a_group_that_never_straddles_splits(make_dataset):
    root = make_dataset(per_class=12)
    for i in range(4):
        add_near_duplicate(root / "red_box" / f"red_box_00{i}.jpg", root / "red_box" / f"resized_{i}.jpg")
    add_near_duplicate(root / "green_disc" / "green_disc_000.jpg", root / "green_disc" / "small.jpg", scale=0.5)

    data = load_dataset(root, **SPLIT_ARGS)

    by_file = {s.file: s for s in data.samples}
    for i in range(4):
        original, copy = by_file[f"red_box/red_box_00{i}.jpg"], by_file[f"red_box/resized_{i}.jpg"]
        assert original.group == copy.group
    assert by_file["green_disc/green_disc_000.jpg"].group == by_file["green_disc/small.jpg"].group
    splits_per_group: dict[int, set[str]] = {}
    for s in data.samples:
        splits_per_group.setdefault(s.group, set()).add(s.split)
    assert all(len(splits) == 1 for splits in splits_per_group.values())
    assert data.summary["near_duplicate_groups"] >= 5
    assert data.summary["images_in_near_duplicate_groups"] >= 10


def test_split_follows_content_and_covers_every_class(make_dataset):
    root = make_dataset(per_class=20)
    first = load_dataset(root, **SPLIT_ARGS)
    for path in root.rglob("*.jpg"):  # renamed: the content decides, not the name or the order
        path.rename(path.with_name("x" + path.name))
    again = load_dataset(root, **SPLIT_ARGS)

    assert {s.sha256: s.split for s in first.samples} == {s.sha256: s.split for s in again.samples}
    for label in first.labels:
        counts = Counter(s.split for s in first.samples if s.label == label)
        assert counts["test"] >= 1 and counts["val"] >= 1 and counts["train"] >= 8
    overall = Counter(s.split for s in first.samples)
    assert 6 <= overall["test"] <= 20 and 6 <= overall["val"] <= 20  # 20 % of 60 each, give or take


def test_adding_a_source_or_images_never_moves_another_source(make_dataset, tmp_path):
    """A warm start stays warm and another source's test stays unseen, whatever is added, with no split file."""
    shop = make_dataset(per_class=12)
    more = make_dataset(per_class=8, seed=4, name="more")
    before = load_dataset(shop, **SPLIT_ARGS, more=(more,))
    rng = np.random.default_rng(9)
    for label in before.labels:  # the other source grows, by half as much again
        for i in range(6):
            cv2.imwrite(str(more / label / f"new_{i}.jpg"), draw_item(label, rng))
    third = make_dataset(per_class=5, seed=7, name="third")
    after = load_dataset(shop, **SPLIT_ARGS, more=(more, third))

    was = {s.sha256: s.split for s in before.samples}
    moved = [s.file for s in after.samples if s.sha256 in was and s.split != was[s.sha256]]
    assert moved == []
    assert len(after.samples) == len(before.samples) + 3 * 6 + 3 * 5


def test_line_crops_get_their_own_shares_and_are_found_by_their_marker(make_dataset, tmp_path):
    shop = make_dataset(per_class=8)
    line = make_dataset(per_class=30, seed=12, name="line")
    (line / "line.json").write_text('{"line": "hall-2"}')
    data = load_dataset(shop, **SPLIT_ARGS, more=(line,), line_fractions=(0.3, 0.3))
    crops = [s for s in data.samples if s.line]
    assert len(crops) == 90 and not any(s.line for s in data.samples if s.folder == 0)
    share = Counter(s.split for s in crops)
    assert 15 <= share["test"] <= 40 and 15 <= share["val"] <= 40  # 27 expected each
    assert data.summary["line"] == {"folders": [str(line)], **{k: share[k] for k in ("train", "val", "test")}}
    marked = load_dataset(
        shop, **SPLIT_ARGS, line=(line,), line_fractions=(0.3, 0.3)
    )  # the same folder given as the line's: same split
    assert {s.sha256: (s.split, s.line) for s in marked.samples} == {s.sha256: (s.split, s.line) for s in data.samples}


def test_split_file_is_reused_and_new_images_join_their_group(make_dataset, tmp_path):
    root = make_dataset(per_class=15)
    first = load_dataset(root, **SPLIT_ARGS)
    split_file = tmp_path / "split.json"
    write_split_file(split_file, first, {"seed": 3})
    test_original = next(s for s in first.samples if s.split == "test" and s.label == "red_box")
    add_near_duplicate(root / test_original.file, root / "red_box" / "new_copy_of_test_image.jpg")
    for i in range(3):
        add_near_duplicate(root / "blue_bar" / f"blue_bar_00{i}.jpg", root / "blue_bar" / f"n{i}.jpg", scale=0.3)

    # Another fraction would move images; the split file must win for known images.
    second = load_dataset(root, **{**SPLIT_ARGS, "test_fraction": 0.4}, split_file=split_file)

    old = {s.file: s.split for s in first.samples}
    assert all(s.split == old[s.file] for s in second.samples if s.file in old)
    assert {s.file: s.split for s in second.samples}["red_box/new_copy_of_test_image.jpg"] == "test"
    assert second.summary["reused_split_assignments"] == len(first.samples)
    assert second.summary["split_reused_from"] == str(split_file)
    saved = json.loads(split_file.read_text())
    assert saved["format"] == "sortline-split-v1" and len(saved["samples"]) == len(first.samples)


def test_group_bridging_two_old_splits_moves_to_train_only():
    from trainer.data import Sample

    samples = [Sample(f"a/{i}.jpg", "a", f"{i:064x}", "0" * 16, group=0) for i in range(3)]
    samples += [Sample(f"b/{i}.jpg", "b", f"{i + 9:064x}", "0" * 16, group=i + 1) for i in range(9)]
    previous = {f"{0:064x}": "test", f"{1:064x}": "val"}  # an added image linked two old groups (by sha256)
    result = assign_splits(samples, 0.2, 0.2, previous)
    assert {s.split for s in result if s.group == 0} == {"train"}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: (root / "empty_class").mkdir(), "class folder 'empty_class' holds no .jpg"),
        (lambda root: [shutil.rmtree(root / c) for c in ("green_disc", "blue_bar")], "at least 2"),
        (lambda root: [p.unlink() for p in list((root / "blue_bar").iterdir())[2:]], "fewer than 3 usable"),
    ],
    ids=["empty-class-folder", "one-class-only", "too-few-images"],
)
def test_unusable_data_folders_give_clear_errors(make_dataset, setup, message):
    root = make_dataset(per_class=6)
    setup(root)
    with pytest.raises(DataError, match=message):
        load_dataset(root, **SPLIT_ARGS)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nowhere")


def test_dataset_paths_point_into_the_data_folder(make_dataset):
    root = make_dataset(per_class=6)
    data: DataSet = load_dataset(root, **SPLIT_ARGS)
    assert all(data.path(s).is_file() for s in data.samples)


def test_more_data_folders_join_the_classes_and_keep_their_place(make_dataset, tmp_path):
    """The line's labelled crops (the commissioning page's export) beside the shop photos."""
    root = make_dataset(per_class=6)
    line = tmp_path / "labelled"
    (line / "red_box").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(3):
        cv2.imwrite(str(line / "red_box" / f"crop{i}.jpg"), draw_item("red_box", rng))
    (line / "manifest.csv").write_text("file,label,item_id,model,model_said,confidence,labelled_at\n")
    data = load_dataset(root, **SPLIT_ARGS, more=(line,))
    from_line = [s for s in data.samples if s.folder == 1]
    assert len(from_line) == 3 and {s.label for s in from_line} == {"red_box"}
    assert all(data.path(s).is_file() and data.path(s).parent.parent == line for s in from_line)
    assert data.summary["sources"]["red_box"]["labelled"] == 3
    assert data.summary["class_counts"]["red_box"] == 9

    split_file = tmp_path / "split.json"
    write_split_file(split_file, data, {})
    (line / "red_box" / "crop0.jpg").rename(line / "red_box" / "renamed.jpg")  # moved: its content still counts
    again = load_dataset(root, **{**SPLIT_ARGS, "val_fraction": 0.4}, more=(line,), split_file=split_file)
    assert again.summary["reused_split_assignments"] == len(data.samples)
    assert {s.sha256: s.split for s in again.samples} == {s.sha256: s.split for s in data.samples}
