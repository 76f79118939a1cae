"""What the trainer computes on, whichever Keras 3 backend runs it: the GPUs it can see, the compute precision,
and one model replica per GPU where the backend spreads a model over several. Only the backend in use is
imported, so a machine with PyTorch or JAX and no TensorFlow trains (the int8 export needs TensorFlow:
`trainer.export`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
TRAINER_EXTRA = "pip install 'sortline[trainer-cpu]' (or 'sortline[trainer]' with an NVIDIA GPU)"


class BackendError(Exception):
    """The Keras backend asked for cannot be used in this process."""


def choose_backend(wanted: str | None) -> str:
    """Set Keras' backend before Keras is imported: ``wanted``, else $KERAS_BACKEND, else TensorFlow. A backend
    that is not installed, or a process whose Keras already runs on another, is a BackendError."""
    backend = wanted or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKENDS:
        raise BackendError(f"unknown Keras backend {backend!r}: one of {', '.join(BACKENDS)}")
    if not _installed(backend):
        install = {"tensorflow": TRAINER_EXTRA, "jax": "pip install 'jax[cpu]' (or 'jax[cuda12]')",
                   "torch": "pip install 'torch'"}[backend]  # fmt: skip
        raise BackendError(f"the {backend} backend is not installed (missing module '{backend}'): {install}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise BackendError(f"Keras already runs on {keras.backend.backend()} in this process, not {backend}")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: its import failed here before (or a test says it is absent)
    return importlib.util.find_spec(module) is not None


def gpu_count() -> int:
    """GPUs the running backend sees."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(device.platform == "gpu" for device in jax.devices())
    import torch

    return torch.cuda.device_count()


def compute_policy(precision: str) -> str:
    """'auto': float16 on GPUs, bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX: ~2x faster), else float32."""
    if precision != "auto":
        return precision
    if gpu_count():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def accelerator_scope(policy: str) -> contextlib.AbstractContextManager:
    """The compute precision, and one model replica per GPU when there are several: tf.distribute on
    TensorFlow, Keras' data-parallel distribution on JAX; one GPU on torch."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    gpus = gpu_count()
    backend = keras.backend.backend()
    if gpus > 1 and backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    if gpus > 1 and backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return contextlib.nullcontext()
