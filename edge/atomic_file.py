"""Files that a SIGKILL or a power cut mid-write cannot leave half-written: written to a temporary name beside
them, flushed to the disk, then renamed over the old one, so a reader finds the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """`data` as the whole of `path` (its folder made if missing); `mode` sets the permissions (else 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, body: dict[str, Any]) -> None:
    write_atomically(path, (json.dumps(body, indent=2) + "\n").encode())
