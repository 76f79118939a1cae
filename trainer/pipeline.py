"""One training run: data -> features -> two phases -> TFLite export -> parity gate -> bundle and report."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import trainer
from edge.bundle import InputSpec, Quantization, load_bundle, write_bundle
from trainer import calibration, evaluate, report, warm_start
from trainer.config import TrainConfig
from trainer.data import SPLITS, DataSet, load_dataset, load_ood, write_split_file
from trainer.export import balanced_sample, to_tflite
from trainer.features import FeatureCache, model_pixels, weights_identity
from trainer.fit import train_two_phases
from trainer.model import (
    HEAD_FROM,
    apply_caps,
    build_model,
    cap_activations,
    join_members,
    measure_activation_caps,
    scale_logits,
    split_model,
)

log = logging.getLogger("sortline.train")


def compute_policy(precision: str) -> str:
    """'auto': float16 on GPUs, bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX: ~2x faster), else float32."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def accelerator_scope(policy: str) -> contextlib.AbstractContextManager:
    """The compute precision, and one model replica per GPU when there are several."""
    keras.mixed_precision.set_global_policy(policy)
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy().scope() if len(gpus) > 1 else contextlib.nullcontext()


def load_data(cfg: TrainConfig, split_file: Path | None = None) -> DataSet:
    """The data set with the config's dedup and split settings (the pipeline and bench/train.py share it)."""
    return load_dataset(
        cfg.data,
        more=tuple(cfg.more_data),
        max_distance=cfg.near_duplicate_distance,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
        split_file=split_file,
        manifest=cfg.manifest,
    )


def run(cfg: TrainConfig) -> dict:
    """Train and export; raises `evaluate.ParityError` (nothing written to cfg.out) if int8 is not faithful."""
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _run(cfg)
    finally:  # the compute precision is process-wide in Keras; leave it as found
        keras.mixed_precision.set_global_policy(previous_policy)


def _run(cfg: TrainConfig) -> dict:
    started = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    policy = compute_policy(cfg.precision)
    log.info("compute precision: %s", policy)
    work: Path = cfg.work_dir  # type: ignore[assignment]  # filled in by TrainConfig
    work.mkdir(parents=True, exist_ok=True)
    split_file = cfg.split_file or cfg.out / "split.json"
    data = load_data(cfg, split_file)
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
    y = {name: np.array([labels.index(s.label) for s in parts[name]]) for name in SPLITS}
    ood_sets = [load_ood(root, labels) for root in cfg.ood]
    ood = [s for ood_set in ood_sets for s in ood_set.samples]
    ood_paths = [ood_set.path(s) for ood_set in ood_sets for s in ood_set.samples]
    y_ood = np.array([labels.index(s.label) for s in ood], dtype=int)
    timing = {"data_s": time.perf_counter() - started}

    train_paths = [data.path(s) for s in parts["train"]]
    calibration_index = balanced_sample(y["train"], cfg.calibration_per_class, cfg.seed)
    backbone = weights_identity(cfg.weights, cfg.seed)  # hashes the weights file: once per run
    cache = FeatureCache(
        cfg.cache_dir,
        {
            "backbone": cfg.backbone,
            "weights": backbone,
            "image_size": cfg.image_size,
            "pad_value": cfg.pad_value,
            "cut_before": cfg.finetune_from,
            "augmentation": cfg.augmentation.model_dump(),
            "activation_cap_percentile": cfg.activation_cap_percentile,
            "seed": cfg.seed,
            "precision": policy,
        },
    )
    with accelerator_scope(policy):
        members = [
            build_model(len(labels), cfg.image_size, cfg.weights, cfg.dense_units, cfg.dropout, backbone=cfg.backbone)
            for _ in range(cfg.members)  # type: ignore[arg-type]  # filled in by TrainConfig
        ]
        caps: dict[str, float] = {}
        if cfg.backbone == "vgg16" and cfg.activation_cap_percentile < 100:
            # Measured once per cache and kept with it, so cached features stay valid when images are added.
            caps = cache.load_caps() or cache.save_caps(
                measure_activation_caps(
                    members[0],
                    np.stack([model_pixels(train_paths[i], spec) for i in calibration_index[:32]]),
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
            "weights": backbone,
            "members": cfg.members,
        }
        model, frozen, top = join_members(members, cfg.finetune_from)
        held_out = {s.sha256 for s in parts["val"] + parts["test"]}
        warm_from = warm_start.load(work, model, fingerprint, held_out) if cfg.warm_start else None
    # Every member trains on the original image plus views-1 augmented views of its own.
    augmented = cfg.views - 1
    member_views = [[0, *range(1 + k * augmented, 1 + (k + 1) * augmented)] for k in range(len(members))]
    t = time.perf_counter()
    feats = {
        name: cache.features(
            data,
            parts[name],
            1 + len(members) * augmented if name == "train" else 1,
            frozen,
            spec,
            cfg.augmentation,
            cfg.seed,
            cfg.batch_size,
        )
        for name in SPLITS
    }
    ood_features = [
        cache.features(s, s.samples, 1, frozen, spec, cfg.augmentation, cfg.seed, cfg.batch_size) for s in ood_sets
    ]
    # Validation = the in-domain split plus every out-of-domain set: epochs are chosen where the line is.
    val_x = np.concatenate([feats["val"], *ood_features])
    val_y = np.concatenate([y["val"], y_ood])
    timing["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with accelerator_scope(policy):
        histories = [
            train_two_phases(
                split_model(member, cfg.finetune_from)[1],  # shares its layers with `model`
                HEAD_FROM,
                feats["train"][:, views],
                y["train"],
                val_x,
                val_y,
                num_classes=len(labels),
                head_epochs=0 if warm_from else cfg.head_epochs,
                head_lr=cfg.head_lr,
                finetune_epochs=cfg.warm_start_epochs if warm_from else cfg.finetune_epochs,
                finetune_lr=cfg.finetune_lr,
                patience=cfg.patience,
                batch_size=cfg.batch_size,
                feature_noise=cfg.feature_noise,
                label_smoothing=cfg.label_smoothing,
                seed=cfg.seed + k,
                checkpoint_dir=work / "checkpoints" / f"member{k + 1}",
                progress=f"member {k + 1}/{len(members)}, " if len(members) > 1 else "",
            )
            for k, (member, views) in enumerate(zip(members, member_views, strict=True))
        ]
    timing["training_s"] = time.perf_counter() - t
    warm_start.save(work, model, fingerprint, [s.sha256 for s in parts["train"]])
    temperature = calibration.fit_temperature(top.predict(val_x[:, 0].astype(np.float32), verbose=0), val_y)
    scale_logits(model, 1 / temperature)
    log.info("temperature %.3f fitted on %d validation images (the exported scores are divided by it)", temperature,
             len(val_y))  # fmt: skip
    del feats, val_x, ood_features

    t = time.perf_counter()
    export_model = _float32_copy(model, cfg, caps) if policy != "float32" else model
    calibration_images = [model_pixels(train_paths[i], spec) for i in calibration_index]
    calibration_note = (
        f"{len(calibration_images)} real training images, class-balanced (up to {cfg.calibration_per_class}"
        " per class), letterboxed as on the edge"
    )
    common = {
        "name": cfg.name,
        "version": cfg.version,
        "labels": labels,
        "input_spec": spec,
        "trainer_version": trainer.__version__,
    }
    float_dir, candidate_dir = work / "float32", work / "int8-candidate"
    write_bundle(
        float_dir,
        to_tflite(export_model),
        quantization=Quantization(scheme="float32"),
        **{**common, "name": f"{cfg.name}-float32", "input_spec": spec.model_copy(update={"dtype": "float32"})},
    )
    int8_bytes = to_tflite(export_model, calibration_images)
    write_bundle(
        candidate_dir, int8_bytes, quantization=Quantization(scheme="int8", calibration=calibration_note), **common
    )
    timing["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    test_paths = [data.path(s) for s in parts["test"]]
    scored = evaluate.score_candidate(
        candidate_dir,
        float_dir,
        test=(test_paths, y["test"]),
        ood=(ood_paths, y_ood),
        val=([data.path(s) for s in parts["val"]], y["val"]),
        max_wrong_lane=cfg.max_wrong_lane,
        threads=cfg.threads,
    )
    parity, threshold = scored.parity, scored.threshold
    int8_scores, float_scores, ood_scores = scored.test_int8, scored.test_float32, scored.ood_int8
    # Spot-check the float32 file against the float32 Keras model, so a broken float export cannot hide.
    few = np.stack([model_pixels(p, spec) for p in test_paths[:8]]).astype(np.float32)
    keras_scores = export_model.predict(few, batch_size=len(few), verbose=0)
    parity["float32_tflite_max_difference"] = round(float(np.abs(float_scores[: len(few)] - keras_scores).max()), 5)
    log.info("parity: %s", parity)
    evaluate.check_parity(parity, cfg.max_accuracy_drop, cfg.min_agreement)
    timing["evaluate_s"] = time.perf_counter() - t

    test_int8 = evaluate.classification_metrics(y["test"], int8_scores.argmax(1), labels)
    test_float = evaluate.classification_metrics(y["test"], float_scores.argmax(1), labels)
    decisions = {
        "temperature": temperature,
        "recommended_threshold": threshold,
        "threshold_chosen_on": scored.chosen_on,
        "max_wrong_lane": cfg.max_wrong_lane,
        "test": evaluate.reject_summary(int8_scores, y["test"], threshold),
    }
    ood_metrics = None
    if ood:
        ood_metrics = evaluate.ood_metrics(y_ood, ood_scores, [s.style for s in ood], labels)
        ood_metrics["sets"] = [str(root) for root in cfg.ood]
        decisions["ood"] = evaluate.reject_summary(ood_scores, y_ood, threshold)
    training = {
        "data": {k: v for k, v in data.summary.items() if k not in ("broken", "exact_duplicates_removed")}
        | {
            "broken": len(data.summary["broken"]),
            "exact_duplicates_removed": len(data.summary["exact_duplicates_removed"]),
        },
        "weights": cfg.weights if cfg.weights in ("imagenet", "none") else Path(cfg.weights).name,
        "settings": cfg.model_dump(
            mode="json", exclude={"data", "more_data", "out", "work_dir", "cache_dir", "split_file"}
        ),
        "activation_caps": caps,
        "warm_start_from": warm_from,
        "members": [
            {
                "seed": cfg.seed + k,
                "views": views,
                "best_phase": history.best_phase,
                "best_val_loss": round(history.best_val_loss, 4),
                "epochs": {phase: len(getattr(history, phase).get("loss", [])) for phase in ("phase1", "phase2")},
            }
            for k, (history, views) in enumerate(zip(histories, member_views, strict=True))
        ],
    }
    metrics = {
        "test_accuracy": test_int8["accuracy"],
        "parity": parity,
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
        int8_bytes,
        metrics=metrics,
        training=training,
        quantization=Quantization(scheme="int8", calibration=calibration_note),
        recommended_threshold=threshold,
        temperature=temperature,
        **common,
    )
    load_bundle(cfg.out)  # what the edge will do; fails loudly here rather than on the line
    split_settings = {
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "near_duplicate_distance": cfg.near_duplicate_distance,
    }
    write_split_file(cfg.out / "split.json", data, split_settings)
    if cfg.split_file and not cfg.split_file.is_file():
        write_split_file(cfg.split_file, data, split_settings)

    report.plot_history(histories, cfg.out / report.PLOTS["history"])
    report.plot_confusion(
        test_int8["confusion_matrix"], labels, cfg.out / report.PLOTS["confusion"], "Test split, int8 bundle"
    )
    worst = report.plot_worst(test_paths, y["test"], int8_scores, labels, cfg.out / report.PLOTS["mistakes"])
    timing["total_s"] = time.perf_counter() - started
    result = {
        "bundle": {
            "name": cfg.name,
            "version": cfg.version,
            "sha256": bundle.metadata.sha256,
            "model_bytes": len(int8_bytes),
            "input": f"{cfg.image_size}x{cfg.image_size} RGB uint8",
            "labels": list(labels),
        },
        "data": {"root": str(cfg.data), "more_data": [str(p) for p in cfg.more_data], **data.summary},
        "test_int8": test_int8,
        "test_float32": test_float,
        "ood_int8": ood_metrics,
        "decisions": decisions
        | {
            "risk_coverage": {
                "test": calibration.risk_coverage(int8_scores, y["test"]),
                **({"ood": calibration.risk_coverage(ood_scores, y_ood)} if ood else {}),
            }
        },
        "parity": parity,
        "worst_mistakes": worst,
        "training": training
        | {
            "history": [{"phase1": history.phase1, "phase2": history.phase2} for history in histories],
            "cache": {"directory": str(cache.directory), "computed": cache.computed, "reused": cache.reused},
        },
        "timing": {k: round(v, 1) for k, v in timing.items()},
    }
    report.write_report(cfg.out, result)
    return result


def _float32_copy(model: keras.Model, cfg: TrainConfig, caps: dict[str, float]) -> keras.Model:
    """Mixed-precision training leaves float16 compute in the graph; TFLite export wants a float32 twin."""
    keras.mixed_precision.set_global_policy("float32")
    twin = blank_model(cfg, model.output.shape[-1], caps)
    twin.set_weights(model.get_weights())
    return twin


def blank_model(cfg: TrainConfig, num_classes: int, caps: dict[str, float]) -> keras.Model:
    """A run's network (all members joined) with untrained weights: to copy or load its trained ones into."""
    members = []
    for _ in range(cfg.members):  # type: ignore[arg-type]  # filled in by TrainConfig
        member = build_model(num_classes, cfg.image_size, "none", cfg.dense_units, cfg.dropout, backbone=cfg.backbone)
        cap_activations(member, caps)  # trained weights are already rescaled for the caps
        members.append(member)
    return join_members(members, cfg.finetune_from)[0]  # type: ignore[arg-type]  # filled in by TrainConfig
