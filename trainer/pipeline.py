"""One training run, in stages: data -> members -> cached features -> two phases per member -> temperature ->
TFLite export -> parity gate -> bundle and report."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import trainer
from edge.bundle import HeldBackCrop, InputSpec, LineCheck, Quantization, load_bundle, write_bundle
from trainer import calibration, evaluate, line, report, warm_start
from trainer.accelerator import accelerator_scope, compute_policy
from trainer.config import TrainConfig
from trainer.data import SPLITS, DataSet, Sample, balanced_sample, load_dataset, load_ood, write_split_file
from trainer.features import FeatureCache, model_pixels, weights_identity
from trainer.fit import History, train_two_phases
from trainer.model import (
    HEAD_FROM,
    Joined,
    apply_caps,
    build_model,
    cap_activations,
    join_members,
    measure_activation_caps,
    scale_logits,
    split_model,
)
from trainer.trained_run import SPLIT, WEIGHTS, TrainedRun, written_bundle

log = logging.getLogger("sortline.train")


def load_data(cfg: TrainConfig, split_file: Path | None = None) -> DataSet:
    """The data set with the config's dedup and split settings (the pipeline and bench/train.py share it)."""
    return load_dataset(
        cfg.data,
        more=tuple(cfg.more_data),
        line=tuple(cfg.line),
        max_distance=cfg.near_duplicate_distance,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        line_fractions=(cfg.line_val_fraction, cfg.line_test_fraction),
        split_file=split_file,
        manifest=cfg.manifest,
    )


def run(cfg: TrainConfig) -> dict:
    """Train and export; raises `evaluate.ParityError` (nothing written to cfg.out) if int8 is not faithful. On a
    backend other than TensorFlow only the training runs: ``{"trained": work_dir}``, for `export` elsewhere."""
    with _policy_kept():
        return _run(cfg)


def export(work: Path, out: Path | None = None) -> dict:
    """Export a run trained here or elsewhere (`trainer.trained_run`): rebuild its network under TensorFlow, load
    its weights, then the int8 export, parity gate, bundle and report, as `run` would have."""
    started = time.perf_counter()
    trained = TrainedRun.read(work)
    cfg = trained.cfg.model_copy(update={"split_file": work / SPLIT, **({"out": out} if out else {})})
    with _policy_kept():
        keras.mixed_precision.set_global_policy("float32")  # the export's own precision
        inputs = _load_inputs(cfg)
        joined = blank_model(cfg, len(inputs.data.labels), trained.caps)
        joined.model.load_weights(work / WEIGHTS)
        network = Network([], joined, trained.caps, trained.fingerprint, trained.warm_from, trained.warm_note)
        log.info("exporting the run in %s (trained on %s)", work, trained.backend)
        return _export_and_report(cfg, inputs, network, trained, "float32", started - trained.timing["train_s"])


@contextlib.contextmanager
def _policy_kept() -> Iterator[None]:
    """The compute precision is process-wide in Keras: leave it as found."""
    previous = keras.mixed_precision.global_policy()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _run(cfg: TrainConfig) -> dict:
    """The stages in order; each returns what the next ones need."""
    started = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    policy = compute_policy(cfg.precision)
    log.info("compute precision: %s", policy)
    work: Path = cfg.work_dir  # type: ignore[assignment]  # filled in by TrainConfig
    work.mkdir(parents=True, exist_ok=True)
    if cfg.compare_with is None and cfg.warm_start:  # the live model is, by default, what the last run wrote
        cfg = cfg.model_copy(update={"compare_with": written_bundle(work)})
    inputs = _load_inputs(cfg)
    timing = {"data_s": time.perf_counter() - started}

    weights_id = weights_identity(cfg.weights, cfg.seed)  # hashes the weights file: once per run
    cache = FeatureCache(cfg.cache_dir, _cache_key(cfg, policy, weights_id))
    calibration_index = balanced_sample(inputs.y["train"], cfg.calibration_per_class, cfg.seed)
    with accelerator_scope(policy):
        network = _build_network(cfg, inputs, cache, calibration_index, weights_id, work)

    t = time.perf_counter()
    features = _extract_features(cfg, inputs, network, cache)
    timing["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with accelerator_scope(policy):
        histories = _train_members(cfg, network, features, inputs, work)
    timing["training_s"] = time.perf_counter() - t
    warm_start.save(work, network.model, network.fingerprint, [s.sha256 for s in inputs.parts["train"]])
    temperature = _calibrate(network, features)
    del features
    timing["train_s"] = time.perf_counter() - started
    trained = TrainedRun(
        cfg, keras.backend.backend(), policy, network.caps, network.fingerprint, network.warm_from, histories,
        temperature, timing, {"directory": str(cache.directory), "computed": cache.computed, "reused": cache.reused},
        network.warm_note,
    )  # fmt: skip
    network.model.save_weights(work / WEIGHTS)
    write_split_file(work / SPLIT, inputs.data, _split_settings(cfg))
    trained.write(work)
    if keras.backend.backend() != "tensorflow":
        log.info("trained on %s; export the run in %s where TensorFlow is: sortline-train export %s",
                 keras.backend.backend(), work, work)  # fmt: skip
        return {"trained": str(work), "timing": timing}
    return _export_and_report(cfg, inputs, network, trained, policy, started)


def _export_and_report(
    cfg: TrainConfig, inputs: Inputs, network: Network, trained: TrainedRun, policy: str, started: float
) -> dict:
    """The TensorFlow stages: int8 export, scoring (parity gate, thresholds), bundle and report."""
    timing = dict(trained.timing)
    calibration_index = balanced_sample(inputs.y["train"], cfg.calibration_per_class, cfg.seed)
    t = time.perf_counter()
    exported = _export(cfg, inputs, network, calibration_index, policy)
    timing["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scored = _score(cfg, inputs, exported)
    timing["evaluate_s"] = time.perf_counter() - t
    return _write_outputs(cfg, inputs, network, trained, exported, scored, timing, started)


@dataclass
class Inputs:
    """The images a run trains, validates, tests and judges on, with their class indices."""

    data: DataSet
    spec: InputSpec  # how the edge prepares a crop for this model
    parts: dict[str, list[Sample]]  # train / val / test
    y: dict[str, np.ndarray]
    ood_sets: list[DataSet]
    y_ood: np.ndarray

    @property
    def ood(self) -> list[Sample]:
        return [s for ood_set in self.ood_sets for s in ood_set.samples]

    @property
    def ood_paths(self) -> list[Path]:
        return [ood_set.path(s) for ood_set in self.ood_sets for s in ood_set.samples]

    def paths(self, split: str) -> list[Path]:
        return [self.data.path(s) for s in self.parts[split]]

    def from_line(self, split: str) -> np.ndarray:
        """Which of the split's images are the line's own crops."""
        return np.array([s.line for s in self.parts[split]], dtype=bool)


@dataclass
class Network:
    """The members, the network that joins them, and what a warm start must match to reuse its weights."""

    members: list[keras.Model]
    joined: Joined  # pixels -> calibrated scores (and the embedding): what is exported
    caps: dict[str, float]  # VGG16's activation caps ({} otherwise)
    fingerprint: dict
    warm_from: str | None
    warm_note: str = ""  # what the warm start reused

    @property
    def model(self) -> keras.Model:
        return self.joined.model


@dataclass
class Features:
    """Cached frozen-layer outputs. Validation (epochs, temperature) is the training folders' own validation
    split: the out-of-domain photos choose only the operating point, so leaving one of their sources out judges
    the model as a new source would (`calibration.leave_one_source_out`)."""

    train: np.ndarray  # (images, 1 + members x (views - 1), *feature shape): see `_member_views`
    val_x: np.ndarray
    val_y: np.ndarray


@dataclass
class Exported:
    """The float32 reference and the int8 candidate, written to the work directory for scoring."""

    model: keras.Model  # the float32 Keras model both files came from
    float_dir: Path
    candidate_dir: Path
    int8_bytes: bytes
    calibration_note: str
    common: dict  # bundle fields shared by the candidate and the final bundle


def _load_inputs(cfg: TrainConfig) -> Inputs:
    data = load_data(cfg, cfg.split_file or cfg.out / "split.json")
    log.info("data: %s", {k: data.summary[k] for k in ("images", "class_counts", "split_counts")})
    labels = data.labels
    spec = InputSpec(
        height=cfg.image_size,
        width=cfg.image_size,
        dtype="uint8",
        color_order="RGB",
        resize="letterbox",
        pad_value=cfg.pad_value,
        preprocessing_in_model=True,
    )
    parts = {name: data.split(name) for name in SPLITS}
    ood_sets = [load_ood(root, labels) for root in cfg.ood]
    return Inputs(
        data=data,
        spec=spec,
        parts=parts,
        y={name: np.array([labels.index(s.label) for s in parts[name]]) for name in SPLITS},
        ood_sets=ood_sets,
        y_ood=np.array([labels.index(s.label) for o in ood_sets for s in o.samples], dtype=int),
    )


def _cache_key(cfg: TrainConfig, policy: str, weights_id: str) -> dict:
    """Everything that changes a frozen-layer output (the number of members does not: views are per index)."""
    return {
        "backbone": cfg.backbone,
        "weights": weights_id,
        "image_size": cfg.image_size,
        "pad_value": cfg.pad_value,
        "cut_before": cfg.finetune_from,
        # belt views off: the key of before they existed, so the caches of earlier runs stay valid
        "augmentation": cfg.augmentation.model_dump(exclude={"belt_p"} if not cfg.augmentation.belt_p else None),
        "activation_cap_percentile": cfg.activation_cap_percentile,
        "seed": cfg.seed,
        "precision": policy,
    }


def _build_network(
    cfg: TrainConfig, inputs: Inputs, cache: FeatureCache, calibration_index: np.ndarray, weights_id: str, work: Path
) -> Network:
    """The members (VGG16: with activation caps), joined; a warm start loads the previous run's weights."""
    labels = inputs.data.labels
    members = [
        build_model(len(labels), cfg.image_size, cfg.weights, cfg.dense_units, cfg.dropout, backbone=cfg.backbone)
        for _ in range(cfg.members)  # type: ignore[arg-type]  # filled in by TrainConfig
    ]
    caps: dict[str, float] = {}
    if cfg.backbone == "vgg16" and cfg.activation_cap_percentile < 100:
        # Measured once per cache and kept with it, so cached features stay valid when images are added.
        train_paths = inputs.paths("train")
        caps = cache.load_caps() or cache.save_caps(
            measure_activation_caps(
                members[0],
                np.stack([model_pixels(train_paths[i], inputs.spec) for i in calibration_index[:32]]),
                cfg.activation_cap_percentile,
            )
        )
        for member in members:
            apply_caps(member, caps)
    fingerprint = {
        "backbone": cfg.backbone,
        "labels": list(labels),
        "image_size": cfg.image_size,
        "dense_units": cfg.dense_units,
        "finetune_from": cfg.finetune_from,
        "activation_caps": caps,
        "weights": weights_id,
        "members": cfg.members,
    }
    joined = join_members(members, cfg.finetune_from)  # type: ignore[arg-type]  # filled in by TrainConfig
    held_out = {s.sha256 for s in inputs.parts["val"] + inputs.parts["test"]}
    training = {s.sha256 for s in inputs.parts["train"]}
    reused = warm_start.load(work, joined.model, fingerprint, held_out, training) if cfg.warm_start else None
    return Network(members, joined, caps, fingerprint, *((reused.weights, reused.note) if reused else (None, "")))


def _member_views(cfg: TrainConfig) -> list[list[int]]:
    """Member k trains on view 0 (the image as the edge sees it) and views-1 augmented views of its own."""
    augmented = cfg.views - 1
    return [[0, *range(1 + k * augmented, 1 + (k + 1) * augmented)] for k in range(cfg.members)]  # type: ignore[arg-type]


def _extract_features(cfg: TrainConfig, inputs: Inputs, network: Network, cache: FeatureCache) -> Features:
    """From the cache, computing what is missing: every view any member trains on, one per validation image."""

    def features(data: DataSet, samples: list[Sample], views: int) -> np.ndarray:
        return cache.features(
            data, samples, views, network.joined.frozen, inputs.spec, cfg.augmentation, cfg.seed, cfg.batch_size
        )

    train = features(inputs.data, inputs.parts["train"], 1 + cfg.members * (cfg.views - 1))  # type: ignore[operator]
    return Features(train, features(inputs.data, inputs.parts["val"], 1), inputs.y["val"])


def _train_members(cfg: TrainConfig, network: Network, features: Features, inputs: Inputs, work: Path) -> list[History]:
    """Both phases for each member in turn, on its own views and seed; trains `network.model` in place. The line's
    own crops carry `cfg.line_weight` of their classes' training loss and half of their validation loss."""
    count = len(network.members)
    train_weight = line.share_weights(inputs.from_line("train"), inputs.y["train"], cfg.line_weight)
    val_weight = line.share_weights(inputs.from_line("val"), inputs.y["val"], line.VALIDATION_SHARE)
    if inputs.from_line("train").any():
        log.info("the line's %d training crops carry %.0f %% of their classes' weight (up to %.1f each); its %d"
                 " validation crops half", inputs.from_line("train").sum(), 100 * cfg.line_weight,
                 train_weight.max(), inputs.from_line("val").sum())  # fmt: skip
    return [
        train_two_phases(
            split_model(member, cfg.finetune_from)[1],  # type: ignore[arg-type]  # shares its layers with the model
            HEAD_FROM,
            features.train[:, views],
            inputs.y["train"],
            features.val_x,
            features.val_y,
            num_classes=network.model.output.shape[-1],
            head_epochs=0 if network.warm_from else cfg.head_epochs,
            head_lr=cfg.head_lr,
            finetune_epochs=cfg.warm_start_epochs if network.warm_from else cfg.finetune_epochs,
            finetune_lr=cfg.finetune_lr,  # type: ignore[arg-type]  # filled in by TrainConfig
            patience=cfg.patience,
            batch_size=cfg.batch_size,
            feature_noise=cfg.feature_noise,
            label_smoothing=cfg.label_smoothing,
            seed=cfg.seed + k,
            checkpoint_dir=work / "checkpoints" / f"member{k + 1}",
            progress=f"member {k + 1}/{count}, " if count > 1 else "",
            train_weight=train_weight,
            val_weight=val_weight,
        )
        for k, (member, views) in enumerate(zip(network.members, _member_views(cfg), strict=True))
    ]


def _calibrate(network: Network, features: Features) -> float:
    """Fit the temperature on validation and divide it into the logits: the exported scores are calibrated."""
    scores = network.joined.top.predict(features.val_x[:, 0].astype(np.float32), verbose=0)
    temperature = calibration.fit_temperature(scores, features.val_y)
    scale_logits(network.model, 1 / temperature)
    log.info("temperature %.3f fitted on %d validation images (the exported scores are divided by it)", temperature,
             len(features.val_y))  # fmt: skip
    return temperature


def _export(cfg: TrainConfig, inputs: Inputs, network: Network, calibration_index: np.ndarray, policy: str) -> Exported:
    """The float32 reference and the int8 candidate (ranges calibrated on real training images)."""
    from trainer.export import to_tflite  # TensorFlow's converter: the one stage that needs TensorFlow

    export_model = network.joined.exportable()
    if policy != "float32":
        export_model = _float32_copy(export_model, cfg, network.caps)
    train_paths = inputs.paths("train")
    calibration_images = [model_pixels(train_paths[i], inputs.spec) for i in calibration_index]
    calibration_note = (
        f"{len(calibration_images)} real training images, class-balanced (up to {cfg.calibration_per_class}"
        " per class), letterboxed as on the edge"
    )
    common = {
        "name": cfg.name,
        "version": cfg.version,
        "labels": inputs.data.labels,
        "input_spec": inputs.spec,
        "trainer_version": trainer.__version__,
    }
    work: Path = cfg.work_dir  # type: ignore[assignment]  # filled in by TrainConfig
    float_dir, candidate_dir = work / "float32", work / "int8-candidate"
    float_spec = inputs.spec.model_copy(update={"dtype": "float32"})
    write_bundle(
        float_dir,
        to_tflite(export_model),
        quantization=Quantization(scheme="float32"),
        **{**common, "name": f"{cfg.name}-float32", "input_spec": float_spec},
    )
    int8_bytes = to_tflite(export_model, calibration_images)
    write_bundle(
        candidate_dir, int8_bytes, quantization=Quantization(scheme="int8", calibration=calibration_note), **common
    )
    return Exported(export_model, float_dir, candidate_dir, int8_bytes, calibration_note, common)


def _score(cfg: TrainConfig, inputs: Inputs, exported: Exported) -> evaluate.CandidateScores:
    """Score both files as the edge runs them; raises `evaluate.ParityError` if int8 is not faithful."""
    test_paths = inputs.paths("test")
    scored = evaluate.score_candidate(
        exported.candidate_dir,
        exported.float_dir,
        inputs.data.labels,
        train=inputs.paths("train"),
        test=(test_paths, inputs.y["test"]),
        ood=(inputs.ood_paths, inputs.y_ood),
        ood_sources=[s.source for s in inputs.ood],
        val=(inputs.paths("val"), inputs.y["val"]),
        line_val=inputs.from_line("val"),
        max_wrong_lane=cfg.max_wrong_lane,
        threads=cfg.threads,
    )
    # Spot-check the float32 file against the float32 Keras model, so a broken float export cannot hide.
    few = np.stack([model_pixels(p, inputs.spec) for p in test_paths[:8]]).astype(np.float32)
    keras_scores = exported.model.predict(few, batch_size=len(few), verbose=0)[0]
    difference = np.abs(scored.test_float32[: len(few)] - keras_scores).max()
    scored.parity["float32_tflite_max_difference"] = round(float(difference), 5)
    log.info("parity: %s", scored.parity)
    evaluate.check_parity(scored.parity, cfg.max_accuracy_drop, cfg.min_agreement)
    return scored


def _write_outputs(
    cfg: TrainConfig,
    inputs: Inputs,
    network: Network,
    trained: TrainedRun,
    exported: Exported,
    scored: evaluate.CandidateScores,
    timing: dict[str, float],
    started: float,
) -> dict:
    """The bundle (metrics and training record in bundle.json), split file, plots and report; returns the report."""
    labels, y = inputs.data.labels, inputs.y
    histories, temperature = trained.histories, trained.temperature
    per_label = np.array([scored.thresholds[label] for label in labels])
    test_int8 = evaluate.classification_metrics(y["test"], scored.test_int8.argmax(1), labels)
    test_float = evaluate.classification_metrics(y["test"], scored.test_float32.argmax(1), labels)
    decisions = {
        "temperature": temperature,
        "recommended_threshold": scored.threshold,
        "recommended_thresholds": scored.thresholds,
        "threshold_chosen_on": scored.chosen_on,
        "max_wrong_lane": cfg.max_wrong_lane,
        "familiarity_limit": scored.familiar[1].limit,
        "novelty_limits": scored.novelty_limits,
        "test": evaluate.reject_summary(scored.test_int8, scored.test_novelty, y["test"], per_label, scored.limits),
        "test_by_source": evaluate.by_source(
            scored.test_int8,
            scored.test_novelty,
            y["test"],
            [inputs.data.roots[s.folder].name for s in inputs.parts["test"]],
            per_label,
            scored.limits,
        ),
    }
    ood_metrics = None
    if inputs.ood:
        ood_metrics = evaluate.ood_metrics(inputs.y_ood, scored.ood_int8, [s.style for s in inputs.ood], labels)
        ood_metrics["sets"] = [str(root) for root in cfg.ood]
        decisions["ood"] = evaluate.reject_summary(
            scored.ood_int8, scored.ood_novelty, inputs.y_ood, per_label, scored.limits
        )
        decisions["ood_one_threshold"] = evaluate.reject_summary(
            scored.ood_int8, scored.ood_novelty, inputs.y_ood, scored.threshold, scored.limits
        )
        decisions["ood_by_source"] = evaluate.by_source(
            scored.ood_int8, scored.ood_novelty, inputs.y_ood, [s.source for s in inputs.ood], per_label, scored.limits
        )
        decisions["leave_one_source_out"] = scored.loso
        decisions["ood_wrong_lanes"] = evaluate.wrong_lanes(
            scored.ood_decided, inputs.y_ood, per_label, labels, [str(p) for p in inputs.ood_paths]
        )
    line_comparison = _line_comparison(cfg, inputs, scored, per_label)
    if line_comparison:
        decisions["line"] = line_comparison
    training = _training_record(cfg, inputs.data, network, histories)
    metrics = {
        "test_accuracy": test_int8["accuracy"],
        "parity": scored.parity,
        "test_int8": test_int8,
        "test_float32": {"accuracy": test_float["accuracy"]},
        "decisions": decisions,
    }
    if ood_metrics:
        metrics["ood_accuracy"] = ood_metrics["accuracy"]
        metrics["ood_int8"] = {k: ood_metrics[k] for k in ("accuracy", "per_class", "per_style", "sets")}
    cfg.out.mkdir(parents=True, exist_ok=True)
    bundle = write_bundle(
        cfg.out,
        exported.int8_bytes,
        metrics=metrics,
        training=training,
        quantization=Quantization(scheme="int8", calibration=exported.calibration_note),
        recommended_threshold=scored.threshold,
        recommended_thresholds=scored.thresholds,
        temperature=temperature,
        familiar=scored.familiar,
        line_check=_line_check(inputs, line_comparison),
        **exported.common,
    )
    load_bundle(cfg.out)  # what the edge will do; fails loudly here rather than on the line
    split_settings = _split_settings(cfg)
    write_split_file(cfg.out / "split.json", inputs.data, split_settings)
    if cfg.split_file and not cfg.split_file.is_file():
        write_split_file(cfg.split_file, inputs.data, split_settings)

    test_paths = inputs.paths("test")
    report.plot_history(histories, cfg.out / report.PLOTS["history"])
    report.plot_confusion(
        test_int8["confusion_matrix"], labels, cfg.out / report.PLOTS["confusion"], "Test split, int8 bundle"
    )
    worst = report.plot_worst(test_paths, y["test"], scored.test_int8, labels, cfg.out / report.PLOTS["mistakes"])
    if inputs.ood:
        report.plot_worst(
            inputs.ood_paths,
            inputs.y_ood,
            scored.ood_int8,
            labels,
            cfg.out / report.PLOTS["ood_mistakes"],
            title="Out-of-domain photos, int8 model",
        )
    timing["total_s"] = time.perf_counter() - started
    result = {
        "bundle_dir": str(cfg.out),
        "bundle": {
            "name": cfg.name,
            "version": cfg.version,
            "sha256": bundle.metadata.sha256,
            "model_bytes": len(exported.int8_bytes),
            "input": f"{cfg.image_size}x{cfg.image_size} RGB uint8",
            "labels": list(labels),
        },
        "data": {"root": str(cfg.data), "more_data": [str(p) for p in cfg.more_data], **inputs.data.summary},
        "test_int8": test_int8,
        "test_float32": test_float,
        "ood_int8": ood_metrics,
        "decisions": decisions
        | {
            "risk_coverage": {
                "test": calibration.risk_coverage(scored.test_decided, y["test"]),
                **({"ood": calibration.risk_coverage(scored.ood_decided, inputs.y_ood)} if inputs.ood else {}),
            }
        },
        "parity": scored.parity,
        "worst_mistakes": worst,
        "training": training
        | {
            "history": [{"phase1": history.phase1, "phase2": history.phase2} for history in histories],
            "cache": trained.cache,
        },
        "timing": {k: round(v, 1) for k, v in timing.items()},
    }
    report.write_report(cfg.out, result)
    return result


def _line_check(inputs: Inputs, comparison: dict | None) -> LineCheck | None:
    """The line's crops held back from this model, for the daemon to judge it against the live one, and where
    the trainer measured it worse than the live model off the line."""
    if comparison is None:  # no held-back line crops and no live model to judge against
        return None
    live = comparison.get("live")
    return LineCheck(
        held_back=tuple(HeldBackCrop(sha256=s.sha256, label=s.label) for s in inputs.parts["test"] if s.line),
        line=comparison["line"],
        compared_with=live["bundle"] if live else None,
        worse_elsewhere=comparison.get("worse_elsewhere", {}),
    )


def _line_folders(inputs: Inputs) -> list[Path]:
    return [inputs.data.roots[i] for i in sorted({s.folder for s in inputs.data.samples if s.line})]


def _line_comparison(
    cfg: TrainConfig, inputs: Inputs, scored: evaluate.CandidateScores, per_label: np.ndarray
) -> dict | None:
    """The candidate and the live model (`cfg.compare_with`), each at its own thresholds, on the line's held-back
    crops, the rest of the test split and the out-of-domain photos: better on the line, and no worse elsewhere?"""
    on_line, y = inputs.from_line("test"), inputs.y["test"]
    before = line.comparable_bundle(cfg.compare_with, inputs.data.labels)
    if not on_line.any() and before is None:
        return None
    sets = {
        "line": (on_line, scored.test_decided[on_line]),
        "test": (~on_line, scored.test_decided[~on_line]),
    }
    result: dict = {
        "line": line.line_name(_line_folders(inputs)),
        "crops": inputs.data.summary["line"],
        "candidate": {name: line.judged(decided, y[mask], per_label) for name, (mask, decided) in sets.items()},
    }
    if inputs.ood:
        result["candidate"]["ood"] = line.judged(scored.ood_decided, inputs.y_ood, per_label)
    if before is not None:
        test_paths = inputs.paths("test")
        decided, thresholds = evaluate.bundle_decided(before, test_paths + inputs.ood_paths, cfg.threads)
        live = {name: line.judged(decided[: len(y)][mask], y[mask], thresholds) for name, (mask, _) in sets.items()}
        if inputs.ood:
            live["ood"] = line.judged(decided[len(y) :], inputs.y_ood, thresholds)
        result["live"] = {"bundle": before.metadata.model_id, **live}
        result["worse_on_line"] = bool(on_line.any()) and line.worse(result["candidate"]["line"], live["line"])
        elsewhere = {"test": "in-domain test", "ood": "out-of-domain photos"}
        result["worse_elsewhere"] = line.worse_elsewhere(result["candidate"], live, elsewhere)
    return result


def _split_settings(cfg: TrainConfig) -> dict:
    return {
        "split": "by content hash (trainer.data.split_position)",
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "line_val_fraction": cfg.line_val_fraction,
        "line_test_fraction": cfg.line_test_fraction,
        "near_duplicate_distance": cfg.near_duplicate_distance,
    }


def _training_record(cfg: TrainConfig, data: DataSet, network: Network, histories: list[History]) -> dict:
    """How the model was trained, for bundle.json: data summary, settings, caps, warm start, each member's run."""
    return {
        "data": {k: v for k, v in data.summary.items() if k not in ("broken", "exact_duplicates_removed")}
        | {
            "broken": len(data.summary["broken"]),
            "exact_duplicates_removed": len(data.summary["exact_duplicates_removed"]),
        },
        "weights": cfg.weights if cfg.weights in ("imagenet", "none") else Path(cfg.weights).name,
        "settings": cfg.model_dump(
            mode="json",
            exclude={"data", "more_data", "line", "out", "work_dir", "cache_dir", "split_file", "compare_with"},
        ),
        "activation_caps": network.caps,
        "warm_start_from": network.warm_from,
        "warm_start_reused": network.warm_note,
        "members": [
            {
                "seed": cfg.seed + k,
                "views": views,
                "best_phase": history.best_phase,
                "best_val_loss": round(history.best_val_loss, 4),
                "warm_start_val_loss": None
                if history.warm_start_val_loss is None
                else round(history.warm_start_val_loss, 4),
                "epochs": {phase: len(getattr(history, phase).get("loss", [])) for phase in ("phase1", "phase2")},
            }
            for k, (history, views) in enumerate(zip(histories, _member_views(cfg), strict=True))
        ],
    }


def _float32_copy(model: keras.Model, cfg: TrainConfig, caps: dict[str, float]) -> keras.Model:
    """Mixed-precision training leaves float16 compute in the graph; TFLite export wants a float32 twin."""
    keras.mixed_precision.set_global_policy("float32")
    twin = blank_model(cfg, model.outputs[0].shape[-1], caps).exportable()
    twin.set_weights(model.get_weights())
    return twin


def blank_model(cfg: TrainConfig, num_classes: int, caps: dict[str, float]) -> Joined:
    """A run's network (all members joined) with untrained weights: to copy or load its trained ones into."""
    members = []
    for _ in range(cfg.members):  # type: ignore[arg-type]  # filled in by TrainConfig
        member = build_model(num_classes, cfg.image_size, "none", cfg.dense_units, cfg.dropout, backbone=cfg.backbone)
        cap_activations(member, caps)  # trained weights are already rescaled for the caps
        members.append(member)
    return join_members(members, cfg.finetune_from)  # type: ignore[arg-type]  # filled in by TrainConfig
