"""``flashsim refine``: latent refiners for every flow of a model directory, from full simulation.

Reads the NANOAODSIM files (the branches the objects' training code reads,
:func:`~flashsim.objects.common.read_training_chunk`), cuts the same (GEN context, full RECO)
rows that training cuts (each object module's ``training_tables``), flash-simulates every row's
targets from the same GEN context with the directory's flow and fits its DCTR classifier and
latent refiner (:func:`flashsim.models.refinement.refine_model`). The output directory is a copy
of the input one (flows, efficiencies, ONNX files) plus ``refiners/`` and the manifest's
``refiners`` key with the held-out AUCs; it appears only when complete. The files must not be
those the flows were trained on, nor a benchmark's: refinement fitted on training events
corrects nothing the flow did not already see, and a benchmark graded on them proves nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flashsim.errors import FlashSimError
from flashsim.models.artifact import (
    PRETRAINED,
    REFINERS,
    load_model,
    training_samples,
    write_manifest,
)
from flashsim.models.refinement import MIN_ROWS, RefineConfig, refine_model, save_refiner
from flashsim.objects import MODEL_SPECS, OBJECTS
from flashsim.objects.common import read_training_chunk
from flashsim.output_path import check_output_directory

__all__ = ["refine_directory"]


def refine_directory(models: str | Path | None, full: list[str | Path], output: str | Path, *,
                     max_events: int | None = None, config: RefineConfig | None = None,
                     progress: bool = True) -> dict[str, dict]:
    """Write ``output``: the model directory ``models`` (default: the shipped models) with a
    latent refiner for each of its flows, fitted on the NANOAODSIM files ``full``. Returns
    ``{flow name: held-out metrics}``; a flow with too few rows in the files (fewer than
    ``10 * MIN_ROWS``) gets no refiner and ``{"skipped": reason}``."""
    from tqdm import tqdm

    from flashsim.models.artifact import _read_manifest

    source = Path(models) if models is not None else PRETRAINED
    manifest = _read_manifest(source)
    output = check_output_directory(output)
    if output.exists() and any(output.iterdir()):
        raise FlashSimError(f"{output} is not empty: give a new directory for the refined models")
    if not full:
        raise FlashSimError("no full-simulation files given: pass NANOAODSIM files with --full")
    flows = {name: spec for name, spec in MODEL_SPECS.items()
             if spec.kind == "flow" and name in manifest["models"]}
    objects = sorted({spec.object for spec in flows.values()})
    branches = sorted({b for obj in objects for b in OBJECTS[obj].TRAINING_NAMES})
    chunk, provenance = read_training_chunk(list(full), branches, max_events)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(REFINERS, "checkpoint", "__pycache__"))
        write_manifest(staging, list(manifest["models"]))  # drops the source's old refiners
        metrics = {}
        bar = tqdm(total=len(flows), desc="refining", unit="flow", disable=not progress)
        for obj in objects:
            for name, table in OBJECTS[obj].training_tables(chunk).items():
                if name not in flows:
                    continue
                bar.update()
                if len(table) < 10 * MIN_ROWS:
                    metrics[name] = {"skipped": f"{len(table)} rows in the files, fewer than "
                                                f"{10 * MIN_ROWS}: give more events"}
                    continue
                flow = load_model(source, name)
                refiner = refine_model(flow, table.context, table.target, table.event, config,
                                       weight=table.weight)
                refiner.meta["training"]["samples"] = training_samples(provenance)
                save_refiner(refiner, staging)
                metrics[name] = refiner.meta["metrics"]
        bar.close()
        if output.exists():
            output.rmdir()  # empty (checked above)
        staging.rename(output)
        return metrics
    finally:
        shutil.rmtree(staging, ignore_errors=True)
