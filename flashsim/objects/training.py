"""``flashsim train``: train the models of the simulated objects on NANOAODSIM files.

Reads the branches the chosen objects need (:func:`~flashsim.objects.common.read_training_chunk`,
which dequantises the RECO floats from NanoAOD's rounding grid with the configuration's
``seed``), lets every object module cut its (GEN, RECO) training rows out of them (``training_tables``), and
fits each model with :func:`flashsim.models.training.train_model` (loss, split, schedule and
checkpoints are documented there).

A group of optional models (:data:`~flashsim.objects.OPTIONAL_MODELS`) is trained whole or not
at all: when one of its tables has fewer than :data:`~flashsim.models.training.MIN_ROWS` rows
(the real CMS file ``nano_dy.root`` has one fake muon from a jet and one from pileup) and
``only`` names none of its models, the group is left out, its metrics say why, and the
simulation with that model directory leaves those objects out; the other models train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flashsim.errors import FlashSimError
from flashsim.models.artifact import write_manifest
from flashsim.models.training import MIN_ROWS, load_config, train_model
from flashsim.objects import OBJECTS, OPTIONAL_MODELS
from flashsim.objects.common import read_training_chunk

__all__ = ["train_object"]


def train_object(obj: str, data: list[str | Path], out_dir: str | Path, *,
                 config_path: str | Path | None = None, max_events: int | None = None,
                 only: list[str] | None = None, progress: bool = True,
                 **overrides: Any) -> dict[str, dict]:
    """Train every model of object ``obj`` (or ``"all"``) on NANOAODSIM files ``data``,
    or the models named in ``only``.

    Writes the artifacts and an updated ``manifest.json`` into ``out_dir``; returns
    ``{model name: metrics}``, ``{"skipped": reason}`` for the models of an optional group
    with too few rows (module doc).
    """
    names = list(OBJECTS) if obj == "all" else [obj]
    unknown = [n for n in names if n not in OBJECTS]
    if unknown:
        raise FlashSimError(f"unknown object {obj!r}; choose one of {', '.join(OBJECTS)} or all")
    available = [m for n in names for m in OBJECTS[n].MODELS]
    wrong = sorted(set(only or ()) - set(available))
    if wrong:
        raise FlashSimError(f"--model {', '.join(wrong)} is not a model of {obj}; "
                            f"choose from {', '.join(available)}")
    branches = sorted({b for n in names for b in OBJECTS[n].TRAINING_NAMES})
    seed = load_config(config_path, "", **overrides).seed
    chunk, provenance = read_training_chunk(list(data), branches, max_events, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for name in names:
        module = OBJECTS[name]
        tables = module.training_tables(chunk)
        for group, models in OPTIONAL_MODELS.items():
            sparse = [m for m in models if m in tables and len(tables[m]) < MIN_ROWS]
            if sparse and not set(only or ()) & set(models):
                reason = (f"{', '.join(f'{m} has {len(tables[m])}' for m in sparse)} training "
                          f"rows, fewer than {MIN_ROWS}: no {group} models trained")
                metrics.update({m: {"skipped": reason} for m in models if m in tables})
        for model_name, table in tables.items():
            if (model_name not in module.MODELS or (only and model_name not in only)
                    or model_name in metrics):
                continue
            config = load_config(config_path, model_name, **overrides)
            model = train_model(module.MODELS[model_name], table, out_dir, config, provenance,
                                progress=progress)
            metrics[model_name] = model.meta["metrics"]
    write_manifest(out_dir)
    return metrics
