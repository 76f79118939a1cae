"""A folder of labelled photos -> checked, de-duplicated samples with a leakage-free train/val/test split.

Near-duplicates (the same product photo resized or re-encoded) are grouped by perceptual hash and a
group always lands in one split; otherwise validation and test accuracy measure memory, not skill.
A photo's split follows from its content hash, so adding photos anywhere never reshuffles the others.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from edge.preprocess import IMAGE_SUFFIXES, decode_image
from edge.ui.review import LINE_MARKER  # a data folder holding it is a line's own crops (the page's labelled ones)

SPLITS = ("train", "val", "test")
SPLIT_FILE_FORMAT = "sortline-split-v1"


class DataError(ValueError):
    """The data folder cannot be trained on; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    file: str  # relative to its data folder, with forward slashes
    label: str
    sha256: str
    phash: str
    group: int = -1
    split: str = ""
    style: str = ""  # out-of-domain sets: photo style from the manifest (flat-lay, worn, ...)
    source: str = ""  # out-of-domain sets: where the photo comes from (manifest, else the folder's name)
    folder: int = 0  # which data folder it is in: 0 the main one, 1... the more_data ones
    line: bool = False  # one of the line's own crops: the domain the model must serve (`LINE_MARKER`)


@dataclass
class DataSet:
    roots: tuple[Path, ...]  # the main data folder, then any more
    labels: tuple[str, ...]
    samples: list[Sample]
    summary: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def path(self, sample: Sample) -> Path:
        return self.roots[sample.folder] / sample.file


def scan(
    root: Path, manifest: Path | None = None, more: tuple[Path, ...] = ()
) -> tuple[tuple[str, ...], list[Sample], dict]:
    """Find, decode-check and hash every image of `root` and the `more` folders (their class folders join
    the same classes); drop broken files and exact duplicates (and say so)."""
    roots = (Path(root), *map(Path, more))
    files: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for index, folder in enumerate(roots):
        if not folder.is_dir():
            raise DataError(f"{folder}: data folder does not exist (expected DATA/<label>/*.jpg)")
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found = sorted(f for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(
                    f"{folder}: class folder {class_dir.name!r} holds no .jpg/.jpeg/.png/.webp images;"
                    " fill or remove it"
                )
            files[class_dir.name] += [(index, f) for f in found]
    root = roots[0]
    if len(files) < 2:
        raise DataError(f"{root}: found {len(files)} class folder(s) {list(files)}; a classifier needs at least 2")

    broken: list[dict] = []
    duplicates: list[dict] = []
    by_sha: dict[str, Sample] = {}
    todo = [(label, index, f) for label, found in sorted(files.items()) for index, f in found]
    for label, index, path in tqdm(todo, desc="check images", unit="img"):
        rel = path.relative_to(roots[index]).as_posix()
        try:
            data = path.read_bytes()
            bgr = decode_image(str(path))
        except (OSError, ValueError) as exc:
            broken.append({"file": rel, "error": str(exc)})
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in by_sha:
            duplicates.append({"file": rel, "duplicate_of": by_sha[sha].file, "same_label": by_sha[sha].label == label})
            continue
        rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        by_sha[sha] = Sample(file=rel, label=label, sha256=sha, phash=str(imagehash.phash(rgb)), folder=index)
    samples = sorted(by_sha.values(), key=lambda s: (s.folder, s.file))
    labels = tuple(sorted({s.label for s in samples}))
    too_few = [label for label in files if sum(s.label == label for s in samples) < 3]
    if too_few:
        raise DataError(
            f"{root}: class(es) {too_few} have fewer than 3 usable images (after dropping broken "
            "and duplicate files); need at least one each for train, validation and test"
        )
    summary = {
        "found": len(todo),
        "broken": broken,
        "exact_duplicates_removed": duplicates,
        "sources": _sources(manifest, samples, roots),
    }
    return labels, samples, summary


def _sources(manifest: Path | None, samples: list[Sample], roots: tuple[Path, ...]) -> dict[str, dict[str, int]]:
    """Per class, how many images each source contributed: the main folder's manifest CSV says (when there is
    one), a more_data folder is a source by its name."""
    source_of = _manifest_column(manifest, "source") if manifest else {}
    if not source_of and len(roots) == 1:
        return {}
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        counts[s.label][source_of.get(s.file, "unknown") if s.folder == 0 else roots[s.folder].name] += 1
    return {label: dict(c) for label, c in sorted(counts.items())}


def group_near_duplicates(samples: list[Sample], max_distance: int) -> list[Sample]:
    """Assign a group id: images whose perceptual hashes differ in <= max_distance bits share a group (and so
    do images linked through others: the connected components of the near-duplicate graph)."""
    bits = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(s.phash), np.uint8)) for s in samples], bool)
    near = []
    for i in range(len(samples)):
        distances = (bits[i + 1 :] != bits[i]).sum(axis=1)
        near += [(i, int(j)) for j in np.nonzero(distances <= max_distance)[0] + i + 1]
    rows, cols = zip(*near, strict=True) if near else ((), ())
    graph = coo_matrix((np.ones(len(near), bool), (rows, cols)), shape=(len(samples), len(samples)))
    _, component = connected_components(graph, directed=False)
    numbered = {c: n for n, c in enumerate(dict.fromkeys(component.tolist()))}  # in order of first appearance
    return [Sample(**{**asdict(s), "group": numbered[component[i]]}) for i, s in enumerate(samples)]


def split_position(sha256: str) -> float:
    """Where an image falls in [0, 1): a property of its bytes alone, so its split never depends on what else is
    in the data set, in which order, or on the seed."""
    return int(hashlib.sha256(f"sortline-split:{sha256}".encode()).hexdigest()[:15], 16) / 16**15


def assign_splits(
    samples: list[Sample],
    val_fraction: float,
    test_fraction: float,
    previous: dict[str, str] | None = None,
    line_fractions: tuple[float, float] | None = None,
) -> list[Sample]:
    """Split whole near-duplicate groups by content: a group's place is that of its first member by sha256, below
    `test_fraction` test, then `val_fraction` validation, else train (a line's crops: `line_fractions`). Images in
    `previous` (sha256 -> split) keep their split.

    Adding images never moves an image already there (unless a new near-duplicate joins two groups), so another
    source's split and a warm start's training set stay put. A class left without validation or test images (a
    tiny class) gets its train group placed nearest to that split's range.
    """
    previous = previous or {}
    members: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        members[s.group].append(s)
    group_split: dict[int, str] = {}
    position = {gid: split_position(min(s.sha256 for s in group)) for gid, group in members.items()}
    for gid, group in members.items():
        kept = [previous[s.sha256] for s in group if s.sha256 in previous]
        if kept:  # a new image joining an old group follows it; a group bridged across splits goes to train
            group_split[gid] = kept[0] if len(set(kept)) == 1 else "train"
            continue
        val, test = line_fractions if line_fractions and all(s.line for s in group) else (val_fraction, test_fraction)
        u = position[gid]
        group_split[gid] = "test" if u < test else "val" if u < test + val else "train"
    pinned = {gid for gid, group in members.items() if any(s.sha256 in previous for s in group)}
    shop = [gid for gid, group in members.items() if not all(s.line for s in group)]
    for label in sorted({_majority_label(members[gid]) for gid in shop}):
        own = [gid for gid in shop if _majority_label(members[gid]) == label]
        for split, middle in (("test", test_fraction / 2), ("val", test_fraction + val_fraction / 2)):
            spare = [gid for gid in own if group_split[gid] == "train" and gid not in pinned]
            if spare and not any(group_split[gid] == split for gid in own):
                group_split[min(spare, key=lambda gid: abs(position[gid] - middle))] = split
    return [Sample(**{**asdict(s), "split": group_split[s.group]}) for s in samples]


def _majority_label(group: list[Sample]) -> str:
    return Counter(s.label for s in group).most_common(1)[0][0]


def load_ood(root: Path, labels: tuple[str, ...]) -> DataSet:
    """An out-of-domain validation folder: every image in split "ood", with its style and source from
    manifest.csv (a photo the manifest does not name comes from a source named after the folder): thresholds are
    judged leave-one-source-out, so the source is what a photo is held out by."""
    ood_labels, samples, summary = scan(root, Path(root) / "manifest.csv")
    unknown = sorted(set(ood_labels) - set(labels))
    if unknown:
        raise DataError(f"{root}: out-of-domain class(es) {unknown} are not model labels {list(labels)}")
    styles = _manifest_column(Path(root) / "manifest.csv", "style")
    sources = _manifest_column(Path(root) / "manifest.csv", "source")
    samples = [
        Sample(**{**asdict(s), "split": "ood", "style": styles.get(s.file, ""),
                  "source": sources.get(s.file) or Path(root).name})
        for s in samples
    ]  # fmt: skip
    summary.update(images=len(samples), class_counts=dict(sorted(Counter(s.label for s in samples).items())))
    return DataSet(roots=(Path(root),), labels=labels, samples=samples, summary=summary)


def _manifest_column(manifest: Path, column: str) -> dict[str, str]:
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row.get(column) or "" for row in csv.DictReader(handle) if "file" in row}


def load_split_file(path: Path) -> dict[str, str]:
    """sha256 -> split from an earlier run's split file (by content: a file moved or renamed keeps its split)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: split file is not readable JSON: {exc}") from exc
    if raw.get("format") != SPLIT_FILE_FORMAT:
        raise DataError(f"{path}: not a sortline split file (format {raw.get('format')!r})")
    return {item["sha256"]: item["split"] for item in raw["samples"] if item["split"] in SPLITS}


def write_split_file(path: Path, data: DataSet, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "format": SPLIT_FILE_FORMAT,
        "settings": settings,
        "samples": [
            {
                "file": s.file,
                "folder": str(data.roots[s.folder]),
                "label": s.label,
                "sha256": s.sha256,
                "group": s.group,
                "split": s.split,
            }
            for s in data.samples
        ],
    }
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def line_folders(more: tuple[Path, ...], line: tuple[Path, ...]) -> tuple[Path, ...]:
    """The folders that are a line's own crops: those given as such, and any data folder holding `LINE_MARKER`."""
    return tuple(dict.fromkeys([*map(Path, line), *(Path(f) for f in more if (Path(f) / LINE_MARKER).is_file())]))


def load_dataset(
    root: Path,
    *,
    more: tuple[Path, ...] = (),
    line: tuple[Path, ...] = (),
    max_distance: int,
    val_fraction: float,
    test_fraction: float,
    line_fractions: tuple[float, float] = (0.2, 0.2),
    split_file: Path | None = None,
    manifest: Path | None = None,
) -> DataSet:
    """Scan, de-duplicate, group and split; reuse `split_file` when it exists. `line` folders (and any of `more`
    holding `LINE_MARKER`) are the line's own crops, split by `line_fractions` (validation, test)."""
    lines = line_folders(more, line)
    folders = tuple(dict.fromkeys([*map(Path, more), *lines]))
    labels, samples, summary = scan(root, manifest if manifest else Path(root) / "manifest.csv", folders)
    line_index = {i + 1 for i, folder in enumerate(folders) if folder in lines}
    samples = [Sample(**{**asdict(s), "line": s.folder in line_index}) for s in samples]
    samples = group_near_duplicates(samples, max_distance)
    previous = load_split_file(split_file) if split_file and split_file.is_file() else {}
    samples = assign_splits(samples, val_fraction, test_fraction, previous, line_fractions)
    groups = Counter(s.group for s in samples)
    multi = [g for g, n in groups.items() if n > 1]
    mixed = [g for g in multi if len({s.label for s in samples if s.group == g}) > 1]
    counts = {split: dict(Counter(s.label for s in samples if s.split == split)) for split in SPLITS}
    per_class = Counter(s.label for s in samples)
    summary.update(
        images=len(samples),
        labels=list(labels),
        class_counts=dict(sorted(per_class.items())),
        imbalance_ratio=round(max(per_class.values()) / min(per_class.values()), 2),
        near_duplicate_groups=len(multi),
        images_in_near_duplicate_groups=sum(groups[g] for g in multi),
        near_duplicate_groups_with_mixed_labels=[sorted(s.file for s in samples if s.group == g) for g in mixed],
        split_counts=counts,
        split_reused_from=str(split_file) if previous else None,
        reused_split_assignments=sum(s.sha256 in previous for s in samples),
        line={
            "folders": [str(f) for f in lines],
            **{split: sum(s.line and s.split == split for s in samples) for split in SPLITS},
        },
    )
    missing = [f"{split}/{label}" for split in SPLITS for label in labels if not counts[split].get(label)]
    if missing:
        raise DataError(
            f"{root}: after grouping near-duplicates, no images for {missing}; add images to those "
            "classes or lower --val-fraction/--test-fraction"
        )
    return DataSet(roots=(Path(root), *folders), labels=labels, samples=samples, summary=summary)


def balanced_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of up to `per_class` items of every class, seeded, in a mixed order."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return rng.permutation(np.concatenate(chosen))
