"""The model bundle: the one contract between the trainer (writes it) and the edge daemon (loads it).

A bundle is a directory holding a TFLite model and ``bundle.json``, its metadata. Everything the
edge needs to feed the model and read its scores is in the metadata, so the daemon carries no
knowledge of how a model was trained. Loading validates eagerly and raises ``BundleError`` naming
the file, so a bad bundle is refused before it reaches the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.atomic_file import write_atomically

BUNDLE_FILE = "bundle.json"
FORMAT = "sortline-bundle"
FORMAT_VERSION = 1


class BundleError(Exception):
    """A bundle that cannot be used; the message names the offending file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain_file_name(value: str) -> str:
    if not value or Path(value).name != value or value in {".", ".."}:
        raise ValueError("must be a plain file name inside the bundle directory")
    return value


PlainFileName = Annotated[str, AfterValidator(_plain_file_name)]


class InputSpec(_Strict):
    """How to turn a camera crop into the model's input tensor."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[3] = 3
    dtype: Literal["uint8", "int8", "float32"]
    color_order: Literal["RGB", "BGR"] = "RGB"
    # letterbox: keep the aspect ratio and pad (what the trainer does); stretch: plain resize.
    resize: Literal["letterbox", "stretch"] = "letterbox"
    pad_value: int = Field(default=0, ge=0, le=255)
    # True when normalisation (e.g. VGG mean subtraction) is a layer of the model, so the model
    # takes plain 0..255 pixels and the edge does no arithmetic on them.
    preprocessing_in_model: bool = True
    # How the trainer framed items: a crop of an item on the belt gets this share of its box size as
    # margin on every side (the edge's presence mode), so the model sees items framed as in training.
    # None: the trainer says nothing; the edge then crops tight (0).
    item_margin: float | None = Field(default=None, ge=0, le=0.5)


class Quantization(_Strict):
    scheme: Literal["int8", "float32", "float16", "dynamic-range"]
    calibration: str | None = None  # how the int8 ranges were calibrated, for the record


class SelfTestImage(_Strict):
    """A reference image with its right answer: a new model must get it right before it goes live."""

    file: str  # relative to the bundle directory, e.g. "selftest/jeans-0.jpg"
    label: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _inside_bundle(cls, value: str) -> str:
        path = Path(value)
        if not value or path.is_absolute() or ".." in path.parts or value.startswith("~"):
            raise ValueError("must be a relative path inside the bundle directory")
        return value


class Familiarity(_Strict):
    """How far a crop may lie from the training data in feature space before it is rejected whatever its scores.

    The model's second output is an embedding (its head's last hidden layer, every member's joined). `file` holds
    the embeddings of the training images as unit vectors (float16, one row each); a crop's distance is 1 - its
    cosine similarity to the nearest of them. `limit` was read off photos the model never trained on, of the
    classes it knows (`chosen_on`): an item further away than that is unlike anything trained on. `per_label`
    tightens it for items whose top label that is (a share of `limit`), where the classes meet: a new shop's
    trousers taken for jeans lie further from the training jeans than its jeans do. Labels not named keep 1.
    """

    file: PlainFileName = "familiar.npy"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    embedding_size: int = Field(gt=0)
    limit: float = Field(gt=0.0, le=2.0)
    chosen_on: str = ""
    per_label: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]] = Field(default_factory=dict)


class HeldBackCrop(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the crop's file: found among the labelled crops by content
    label: str


class LineCheck(_Strict):
    """The line's own labelled crops this model was trained without, kept to judge it against the live model.

    Before a rollout the daemon classifies those of them it holds (the crops labelled on its page) with the live
    model and with this one (`edge.line_check`): a candidate worse on its own line, or one the trainer measured
    worse than the live model elsewhere (the shop's test split, the out-of-domain photos), is refused unless forced.
    """

    held_back: tuple[HeldBackCrop, ...] = ()
    line: str = ""  # which line the crops came from (the export's line.json), for the record
    # The model the trainer judged this one against (model_id), and where it measured this one worse: set ->
    # what it saw ("in-domain test: right 77.5 -> 68.8 %"). The daemon refuses it unless forced, when the live
    # model is the one it was judged against.
    compared_with: str | None = None
    worse_elsewhere: dict[str, str] = Field(default_factory=dict)


class BundleMetadata(_Strict):
    format: Literal["sortline-bundle"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1)
    created_at: datetime
    model_file: PlainFileName = "model.tflite"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    labels: tuple[str, ...] = Field(min_length=2)
    input: InputSpec
    quantization: Quantization
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    trainer_version: str | None = None
    # Optional (older bundles have none): images the edge classifies before it swaps the model in.
    self_test: tuple[SelfTestImage, ...] = ()
    # Optional: the reject threshold the trainer read off validation scores (risk-coverage); the daemon
    # uses it unless model.threshold is set. The scores are calibrated by `temperature`, already divided
    # into the model's last layer: the edge applies nothing, the number is for the record.
    recommended_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Optional: one threshold per top label, chosen the same way; where labels differ in how often they are
    # confidently wrong (trousers taken for jeans far more often than the reverse) it rejects fewer items at the
    # same wrong-lane rate. The daemon uses it unless model.threshold is set.
    recommended_thresholds: dict[str, float] | None = None
    temperature: float | None = Field(default=None, gt=0.0)
    # Optional: the feature-space check (older bundles and single-output models have none).
    familiarity: Familiarity | None = None
    # Optional: bundles trained with a line's own crops (trainer --line) say which they held back.
    line_check: LineCheck | None = None

    @model_validator(mode="after")
    def _unique_labels(self) -> BundleMetadata:
        if len(set(self.labels)) != len(self.labels) or any(not label for label in self.labels):
            raise ValueError(f"labels must be unique and non-empty, got {list(self.labels)}")
        unknown = sorted({image.label for image in self.self_test} - set(self.labels))
        if unknown:
            raise ValueError(f"self_test labels {unknown} are not model labels {list(self.labels)}")
        thresholds = self.recommended_thresholds or {}
        if thresholds and sorted(thresholds) != sorted(self.labels):
            raise ValueError(f"recommended_thresholds must name every label {list(self.labels)}: {list(thresholds)}")
        if any(not 0.0 <= t <= 1.0 for t in thresholds.values()):
            raise ValueError(f"recommended_thresholds must lie in [0, 1], got {thresholds}")
        tightened = sorted(set(self.familiarity.per_label if self.familiarity else {}) - set(self.labels))
        if tightened:
            raise ValueError(f"familiarity.per_label names {tightened}, which are not model labels {list(self.labels)}")
        crops = self.line_check.held_back if self.line_check else ()
        held_back = sorted({crop.label for crop in crops} - set(self.labels))
        if held_back:
            raise ValueError(f"line_check crops labelled {held_back}, which are not model labels {list(self.labels)}")
        return self

    @property
    def model_id(self) -> str:
        """Short identity carried by every decision, so a PLC log says which model decided."""
        return f"{self.name}:{self.version}:{self.sha256[:12]}"


@dataclass(frozen=True)
class ModelBundle:
    directory: Path
    metadata: BundleMetadata

    @property
    def model_path(self) -> Path:
        return self.directory / self.metadata.model_file

    @property
    def metadata_path(self) -> Path:
        return self.directory / BUNDLE_FILE

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def familiar_path(self) -> Path | None:
        familiarity = self.metadata.familiarity
        return None if familiarity is None else self.directory / familiarity.file

    def check_model_io(self, input_shape: tuple[int, ...], input_dtype: str, output_sizes: list[int]) -> None:
        """Refuse a model whose tensors disagree with the metadata (called once the runtime has loaded it): one
        output of one score per label, and a second of `familiarity.embedding_size` when the bundle checks it."""
        spec = self.metadata.input
        where = f"{self.model_path} (per {self.metadata_path})"
        if len(input_shape) != 4:
            raise BundleError(f"{where}: model input has rank {len(input_shape)} {list(input_shape)}, expected 4")
        expected = (spec.height, spec.width, spec.channels)
        if tuple(input_shape[1:]) != expected:
            raise BundleError(f"{where}: model input is {list(input_shape)}, metadata says HxWxC {list(expected)}")
        if input_dtype != spec.dtype:
            raise BundleError(f"{where}: model input dtype is {input_dtype}, metadata says {spec.dtype}")
        familiarity = self.metadata.familiarity
        if familiarity is None:  # a second output (an embedding the bundle does not use) is ignored
            fits = len(self.labels) in output_sizes and len(output_sizes) <= 2
        else:
            fits = sorted(output_sizes) == sorted([len(self.labels), familiarity.embedding_size])
        if not fits:
            embedding = f" and a {familiarity.embedding_size}-wide embedding" if familiarity else ""
            raise BundleError(
                f"{where}: model outputs have sizes {output_sizes}, expected {len(self.labels)} scores"
                f" ({list(self.labels)}){embedding}"
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: str | os.PathLike[str], *, verify_hash: bool = True, check_self_test: bool = True) -> ModelBundle:
    """Load and validate a bundle from its directory (or its ``bundle.json``)."""
    path = Path(path)
    directory = path.parent if path.name == BUNDLE_FILE else path
    meta_path = directory / BUNDLE_FILE
    if path.is_file() and path.name != BUNDLE_FILE:
        hint = f" ({path.parent} is one)" if (path.parent / BUNDLE_FILE).is_file() else ""
        raise BundleError(
            f"{path}: is a file; a model bundle is the directory that holds {BUNDLE_FILE} and the .tflite model{hint}"
        )
    if not directory.is_dir():
        raise BundleError(f"{directory}: model bundle directory does not exist")
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: missing; a bundle directory holds {BUNDLE_FILE} and the .tflite model")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: not readable JSON: {exc}") from exc
    try:
        metadata = BundleMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise BundleError(f"{meta_path}: invalid bundle metadata: {problems}") from exc
    bundle = ModelBundle(directory=directory, metadata=metadata)
    if not bundle.model_path.is_file():
        raise BundleError(f"{bundle.model_path}: model file named in {meta_path} is missing")
    if verify_hash:
        actual = sha256_file(bundle.model_path)
        if actual != metadata.sha256:
            raise BundleError(
                f"{bundle.model_path}: sha256 {actual} does not match {metadata.sha256} recorded in {meta_path}"
                " (corrupt or replaced model file)"
            )
    if check_self_test:
        _check_self_test_files(bundle, verify_hash)
    _check_familiar_file(bundle, verify_hash)
    return bundle


def _check_self_test_files(bundle: ModelBundle, verify_hash: bool) -> None:
    for image in bundle.metadata.self_test:
        _check_listed_file(bundle, bundle.directory / image.file, image.sha256, "self-test image", verify_hash)


def _check_familiar_file(bundle: ModelBundle, verify_hash: bool) -> None:
    path, familiarity = bundle.familiar_path, bundle.metadata.familiarity
    if path is not None and familiarity is not None:
        _check_listed_file(bundle, path, familiarity.sha256, "training embeddings file", verify_hash)


def _check_listed_file(bundle: ModelBundle, path: Path, sha256: str, what: str, verify_hash: bool) -> None:
    """A file bundle.json names beside the model: it must be there and, when hashes are checked, unchanged."""
    if not path.is_file():
        raise BundleError(f"{path}: {what} named in {bundle.metadata_path} is missing")
    if verify_hash and sha256_file(path) != sha256:
        raise BundleError(f"{path}: sha256 does not match {bundle.metadata_path} (corrupt or replaced {what})")


def add_self_test_images(
    directory: str | os.PathLike[str], images: Iterable[tuple[str | os.PathLike[str], str]], *, replace: bool = False
) -> ModelBundle:
    """Copy (image file, label) pairs into ``<bundle>/selftest/`` and record them in the metadata.

    The trainer calls it after ``write_bundle`` with a few held-out images per label; ``replace``
    drops the images recorded before. The model file and its hash are untouched.
    """
    bundle = load_bundle(directory, check_self_test=not replace)
    target = bundle.directory / "selftest"
    target.mkdir(exist_ok=True)
    entries = list(bundle.metadata.self_test)
    if replace:
        for entry in entries:
            (bundle.directory / entry.file).unlink(missing_ok=True)
        entries = []
    taken = {entry.file for entry in entries}
    for source, label in images:
        source = Path(source)
        if not source.is_file():
            raise BundleError(f"{source}: self-test image not found")
        if label not in bundle.labels:
            raise BundleError(f"{source}: label {label!r} is not one of the model's labels {list(bundle.labels)}")
        name = f"selftest/{label}-{len(entries)}{source.suffix.lower()}"
        while name in taken:
            name = f"selftest/{label}-{len(entries)}-{len(taken)}{source.suffix.lower()}"
        data = source.read_bytes()
        write_atomically(bundle.directory / name, data)
        entries.append(SelfTestImage(file=name, label=label, sha256=hashlib.sha256(data).hexdigest()))
        taken.add(name)
    metadata = bundle.metadata.model_copy(update={"self_test": tuple(entries)})
    BundleMetadata.model_validate(metadata.model_dump())  # labels checked again as a whole
    write_atomically(bundle.metadata_path, (metadata.model_dump_json(indent=2) + "\n").encode())
    return ModelBundle(directory=bundle.directory, metadata=metadata)


def write_bundle(
    directory: str | os.PathLike[str],
    model_bytes: bytes,
    *,
    name: str,
    version: str,
    labels: list[str] | tuple[str, ...],
    input_spec: InputSpec,
    quantization: Quantization,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    trainer_version: str | None = None,
    model_file: PlainFileName = "model.tflite",
    recommended_threshold: float | None = None,
    recommended_thresholds: dict[str, float] | None = None,
    temperature: float | None = None,
    familiar: tuple[bytes, Familiarity] | None = None,
    line_check: LineCheck | None = None,
) -> ModelBundle:
    """Write model and metadata; the metadata goes last, so a half-written bundle never validates. `familiar`:
    the training embeddings' .npy bytes and their description (`edge.familiarity.describe` makes both)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = BundleMetadata(
        name=name,
        version=version,
        created_at=datetime.now(timezone.utc),
        model_file=model_file,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        labels=tuple(labels),
        input=input_spec,
        quantization=quantization,
        metrics=metrics or {},
        training=training or {},
        trainer_version=trainer_version,
        recommended_threshold=recommended_threshold,
        recommended_thresholds=recommended_thresholds,
        temperature=temperature,
        familiarity=None if familiar is None else familiar[1],
        line_check=line_check,
    )
    write_atomically(directory / model_file, model_bytes)
    if familiar is not None:
        write_atomically(directory / familiar[1].file, familiar[0])
    write_atomically(directory / BUNDLE_FILE, (metadata.model_dump_json(indent=2) + "\n").encode())
    return ModelBundle(directory=directory, metadata=metadata)
