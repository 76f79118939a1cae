"""What a training run leaves in its work directory for its export: the trained weights (the temperature already
divided into the logits), the split it trained on, and ``run.json`` (the settings, activation caps, fingerprint,
each member's history, timing). ``sortline-train export WORK_DIR`` rebuilds the network from them under
TensorFlow, on another machine if need be: a run trained on JAX or PyTorch is exported where TensorFlow is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.config import TrainConfig
from trainer.fit import History

WEIGHTS = "trained.weights.h5"
RECORD = "run.json"
SPLIT = "split.json"


class TrainedRunError(Exception):
    """The work directory holds no finished training run (or an unreadable one)."""


@dataclass
class TrainedRun:
    cfg: TrainConfig
    backend: str  # the Keras backend it trained on
    policy: str  # the compute precision it trained in
    caps: dict[str, float]  # VGG16's activation caps ({} otherwise)
    fingerprint: dict
    warm_from: str | None
    histories: list[History]
    temperature: float
    timing: dict[str, float]
    cache: dict  # directory, computed, reused: for the report
    warm_note: str = ""  # what a warm start reused

    def write(self, work: Path) -> None:
        """Beside the weights, which the pipeline saves itself (`WEIGHTS`)."""
        record = {**asdict(self), "cfg": self.cfg.model_dump(mode="json")}
        (work / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, work: Path) -> TrainedRun:
        missing = [name for name in (RECORD, WEIGHTS, SPLIT) if not (work / name).is_file()]
        if missing:
            raise TrainedRunError(f"{work}: no finished training run here (missing {', '.join(missing)})")
        try:
            record = json.loads((work / RECORD).read_text(encoding="utf-8"))
            record["cfg"] = TrainConfig(**record["cfg"])
            record["histories"] = [History(**history) for history in record["histories"]]
            return cls(**record)
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainedRunError(f"{work / RECORD}: unreadable ({exc})") from None


def written_bundle(work: Path) -> Path | None:
    """The bundle directory the run in `work` wrote (its --out), if it is there: the model a rerun is judged
    against."""
    try:
        out = Path(json.loads((work / RECORD).read_text(encoding="utf-8"))["cfg"]["out"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if (out / "bundle.json").is_file() else None
