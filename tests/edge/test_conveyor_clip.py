"""The synthetic conveyor clip: what it reports as ground truth is what is in the video."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from demo import conveyor
from demo.conveyor import write_conveyor_clip
from tests.edge.frames_helpers import product_photos, read_all


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_ground_truth_matches_the_frames(tmp_path, suffix):
    photos = product_photos(tmp_path, 3)
    clip = tmp_path / f"belt{suffix}"
    items = write_conveyor_clip(clip, photos, size=(320, 240), fps=15, gap_frames=6, lead_frames=20)

    frames = read_all(clip)
    assert [item.label for item in items] == ["jeans", "trousers", "saree"]
    assert items[0].first_frame == 20
    assert all(b.first_frame - a.last_frame - 1 == 6 for a, b in itertools.pairwise(items))
    assert len(frames) == items[-1].last_frame + 1 + 20
    assert frames[0].shape == (240, 320, 3)

    # the photos' light studio background is far brighter than belt, rails and lighting ever get
    visible = [bool((frame[20:-20].mean(axis=2) > 150).any()) for frame in frames]
    expected = [any(item.first_frame <= i <= item.last_frame for item in items) for i in range(len(frames))]
    assert visible == expected
    # items enter on the left and leave on the right
    first = frames[items[0].first_frame][20:-20]
    last = frames[items[0].last_frame][20:-20]
    assert (first[:, :20] > 200).any() and not (first[:, 40:] > 200).any()
    assert (last[:, -20:] > 200).any() and not (last[:, :-40] > 200).any()


def test_item_size_and_empty_belt_look(tmp_path):
    photos = product_photos(tmp_path, 1)
    clip = tmp_path / "belt.avi"
    (item,) = write_conveyor_clip(clip, photos, size=(320, 240), lead_frames=5)
    frames = read_all(clip)

    middle = frames[(item.first_frame + item.last_frame) // 2]
    rows = np.flatnonzero((middle > 200).all(axis=2).any(axis=1))
    assert 0.55 * 240 <= rows.max() - rows.min() + 1 <= 0.72 * 240  # about two thirds of the frame height
    belt = frames[0][40:-40].astype(np.float32)
    assert 40 < belt.mean() < 110 and belt.std() > 3  # dark grey, textured, not flat
    # lighting flickers from frame to frame
    means = [f[40:-40].mean() for f in frames[: item.first_frame]]
    assert max(means) - min(means) > 0.5


def test_fixed_length_clip_repeats_the_images(tmp_path):
    photos = product_photos(tmp_path, 2)
    clip = tmp_path / "sub" / "bench.avi"  # the folder is created
    items = write_conveyor_clip(clip, photos, size=(160, 120), frames=150, gap_frames=3, lead_frames=10)

    assert len(read_all(clip)) == 150
    assert [item.label for item in items] == ["jeans", "trousers"] * (len(items) // 2) + ["jeans"] * (len(items) % 2)
    assert len(items) > 2 and items[-1].last_frame + 10 < 150


def test_bad_input_is_refused_with_a_clear_error(tmp_path):
    photos = product_photos(tmp_path, 2)
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        write_conveyor_clip(tmp_path / "a.avi", photos, ["jeans"])
    with pytest.raises(ValueError, match=r"\.avi .* or \.mp4"):
        write_conveyor_clip(tmp_path / "a.mkv", photos)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.jpg: not a readable image"):
        write_conveyor_clip(tmp_path / "a.avi", [broken])


def test_cli_writes_the_clip_and_prints_the_ground_truth(tmp_path, capsys):
    photos = product_photos(tmp_path, 2)
    out = tmp_path / "demo.avi"

    assert conveyor.main([str(out), *map(str, photos), "--size", "160x120", "--gap-frames", "3"]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["jeans", "trousers"]
    assert lines[1]["first_frame"] - lines[0]["last_frame"] == 4
    assert len(read_all(out)) == lines[-1]["last_frame"] + 1 + 30
    assert conveyor.main([str(out), str(tmp_path / "missing.jpg")]) == 2
