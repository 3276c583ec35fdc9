"""``flashsim refine``: latent refiners for every flow of a model directory, from full simulation.

Reads the NANOAODSIM files (the branches the objects' training code reads,
:func:`~flashsim.objects.common.read_training_chunk`), cuts the same (GEN context, full RECO)
rows that training cuts (each object module's ``training_tables``), flash-simulates every row's
targets from the same GEN context with the directory's flow and fits its DCTR classifier and
latent refiner (:func:`flashsim.models.refinement.refine_model`). The output directory is a copy
of the input one (flows, efficiencies, ONNX files) plus ``refiners/`` and the manifest's
``refiners`` key with the held-out AUCs; it appears only when complete. Beside the flows'
refiners it fits the event classifier of :mod:`flashsim.objects.event` on the same files: the
files' GEN events are flash-simulated with the directory's models (flows alone, their DCTR
weights on, so the product of the objects' weights is measured beside it). The files must not be
those the flows were trained on, nor a benchmark's: refinement fitted on training events
corrects nothing the flow did not already see, and a benchmark graded on them proves nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from flashsim.errors import FlashSimError
from flashsim.models.artifact import (
    PRETRAINED,
    REFINERS,
    Model,
    library_versions,
    load_model,
    save_model,
    training_samples,
    write_manifest,
)
from flashsim.models.refinement import (
    MIN_ROWS,
    RefineConfig,
    dctr_weights,
    fit_dctr_classifier,
    refine_model,
    save_refiner,
    weighted_held_out_auc,
)
from flashsim.models.training import validation_mask
from flashsim.models.transforms import Preprocessor
from flashsim.nanoaod.reader import GEN_COLLECTIONS
from flashsim.objects import MODEL_SPECS, OBJECTS, load_models
from flashsim.objects.common import (
    concatenate_chunks,
    event_keys,
    event_weights,
    read_training_chunk,
)
from flashsim.objects.event import EVENT_FEATURES, EVENT_WEIGHT_MODEL, event_features, models_digest
from flashsim.output_path import check_output_directory
from flashsim.runtime import simulate_batches
from flashsim.validation.metrics import auc_null_sigma, effective_sample_size

_EVENT_NAMES = ("Muon", "Jet", "Electron", "MET", "PV", "fixedGridRhoFastjetAll")
"""RECO names the event classifier reads beside the GEN ones."""

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
    branches = sorted({b for obj in objects for b in OBJECTS[obj].TRAINING_NAMES}
                      | set(GEN_COLLECTIONS) | set(_EVENT_NAMES))
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
        event_model = refine_event_weight(staging, chunk, config)
        event_model.meta["training"]["samples"] = training_samples(provenance)
        save_model(event_model, staging / REFINERS)
        write_manifest(staging, list(manifest["models"]))
        metrics[EVENT_WEIGHT_MODEL] = event_model.meta["metrics"]
        if output.exists():
            output.rmdir()  # empty (checked above)
        staging.rename(output)
        return metrics
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def refine_event_weight(directory: Path, chunk: dict, config: RefineConfig | None = None) -> Model:
    """The event classifier (:mod:`flashsim.objects.event`) of the models in ``directory``,
    fitted on the NANOAODSIM events ``chunk`` (GEN and full RECO) against their flash twins,
    with the splits of the flows' refinement; its ``metrics`` hold the held-out AUC of flash
    events unweighted, weighted by it and weighted by the product of the objects' weights,
    and both weights' effective sample size."""
    config = config or RefineConfig()
    started = time.perf_counter()
    models = load_models(directory, refine=False, weights=True)
    gen = {name: chunk[name] for name in GEN_COLLECTIONS if name in chunk}
    flash = concatenate_chunks(list(simulate_batches(
        gen, models, np.random.SeedSequence(config.seed, spawn_key=(0x3E7E,)))))
    full = dict(chunk)
    if "Electron" not in flash:  # a directory without electron models: compare without them
        full.pop("Electron", None)
    full_columns, flash_columns = event_features(full), event_features(flash)
    event = event_keys(chunk)
    held = validation_mask(event, config.held_out_fraction)
    stop = validation_mask(event, config.held_out_fraction + config.stop_fraction) & ~held
    train, fitted = ~held & ~stop, ~held
    if train.sum() < MIN_ROWS or stop.sum() < MIN_ROWS or held.sum() < MIN_ROWS:
        raise FlashSimError(f"{len(event)} events are too few to fit the event weight (need at "
                            f"least {MIN_ROWS} events in each split): give more events")
    preprocessor = Preprocessor.fit(list(EVENT_FEATURES),
                                    {k: v[fitted] for k, v in full_columns.items()},
                                    context=True)
    full_x, flash_x = preprocessor.forward(full_columns), preprocessor.forward(flash_columns)
    classifier, fit = fit_dctr_classifier(full_x, flash_x, train, stop, config,
                                          event_weights(chunk))
    w = dctr_weights(classifier, flash_x, config.weight_clip)
    scale = 1.0 / float(np.mean(w[fitted]))
    w = scale * w
    product = np.asarray(flash["flashsimWeight"], dtype=np.float64)
    halves = validation_mask(event[held] ^ np.uint64(0x5DEECE66D), 0.5)

    def auc(flash_weight: np.ndarray | None) -> float:
        return weighted_held_out_auc(full_x[held], flash_x[held], halves, flash_weight,
                                     seed=config.seed)

    n_scored = int((~halves).sum())
    metrics = {
        "auc_flash": auc(None), "auc_dctr_weighted": auc(w[held]),
        "auc_product_weighted": auc(product[held]),
        "weight_mean": float(np.mean(w[held])),
        "weight_mean_error": float(np.std(w[held]) / np.sqrt(held.sum())),
        "effective_sample_size": effective_sample_size(w[held]),
        "product_effective_sample_size": effective_sample_size(product[held]),
        "auc_null_sigma": auc_null_sigma(n_scored, n_scored),
        "rows_held_out": int(held.sum()),
    }
    meta = {
        "name": EVENT_WEIGHT_MODEL, "object": "event", "kind": "classifier",
        "architecture": {"hidden_features": list(config.classifier_hidden)},
        "weight_clip": config.weight_clip, "weight_scale": scale,
        "models_sha256": models_digest(models.manifest),
        "metrics": metrics,
        "training": {"config": asdict(config), "rows": int(len(event)),
                     "rows_train": int(train.sum()), "rows_stop": int(stop.sum()),
                     "classifier": fit, "seconds": round(time.perf_counter() - started, 1)},
        "versions": library_versions(),
    }
    return Model(meta, classifier.eval(), preprocessor, None)
