"""What the binned and reweighting methods store in a model directory: ``TASK_METHOD.npz``,
numpy arrays plus a JSON ``meta`` record (task, inputs, provenance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flashsim.errors import FlashSimError

__all__ = ["load_arrays", "save_arrays", "stored_path"]


def stored_path(task: str, method: str, model_dir: str | Path) -> Path:
    """``MODEL_DIR/TASK_METHOD.npz``."""
    return Path(model_dir) / f"{task}_{method}.npz"


def save_arrays(task: str, method: str, model_dir: str | Path, meta: dict[str, Any],
                **arrays: np.ndarray) -> None:
    """Write ``arrays`` and ``meta`` (compressed)."""
    np.savez_compressed(stored_path(task, method, model_dir), meta=json.dumps(meta), **arrays)


def load_arrays(task: str, method: str, model_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of ``TASK_METHOD.npz``, or one clear error naming the command that
    makes it."""
    path = stored_path(task, method, model_dir)
    if not path.is_file():
        raise FlashSimError(f"{model_dir} has no {method} data for task {task} ({path.name}): "
                            f"make it with `flashsim unfold train {task} --method {method} "
                            f"--data FILE -o {model_dir}`")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays
