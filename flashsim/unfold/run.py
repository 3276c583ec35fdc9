"""``flashsim unfold train`` and ``flashsim unfold apply``: the library side of the commands.

A model directory holds, per task, what each method needs: ``TASK_cinn.pt``/``.json`` (the
cINN artifact, listed in ``manifest.json``), ``TASK_ibu.npz`` (response matrices and prior)
and ``TASK_omnifold.npz`` (the simulated (GEN, RECO) pairs OmniFold reweights). The shipped
directory is ``flashsim/pretrained/unfold``.

Randomness: the posterior samples of a chunk come from :func:`flashsim.runtime.chunk_seed`
keyed by ``"unfold:METHOD:FILE"`` and the chunk's entry range, so a run is reproducible and
every purpose has its own stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from flashsim import __version__, runtime
from flashsim.errors import FlashSimError
from flashsim.models.artifact import PRETRAINED
from flashsim.models.training import load_config
from flashsim.unfold import METHODS, cinn, get_task
from flashsim.unfold.output import UnfoldedWriter
from flashsim.unfold.task import (
    TaskEvents,
    UnfoldingTask,
    concatenate_events,
    inputs_have_gen,
    iter_events,
)

__all__ = ["DEFAULT_MODELS", "apply_unfolding", "chunk_rng", "read_training", "train_unfolding"]

DEFAULT_MODELS = PRETRAINED / "unfold"
CHUNK_EVENTS = 50_000


def chunk_rng(seed: int, purpose: str, events: TaskEvents) -> np.random.Generator:
    """The generator of one chunk for one purpose (see module doc)."""
    start = int(events.source.get("entry_start", 0))
    return np.random.default_rng(runtime.chunk_seed(
        seed, f"{purpose}:{events.source.get('path', '')}", start,
        start + int(events.source.get("entries", 0))))


def _method(method: str) -> str:
    if method not in METHODS:
        raise FlashSimError(f"unknown unfolding method {method!r}; choose one of "
                            f"{', '.join(METHODS)}")
    return method


def read_training(task: UnfoldingTask, data: list[str | Path]) -> TaskEvents:
    """Every selected event with complete GEN of the training files."""
    inputs_have_gen(task, list(data), need_gen=True)
    events = concatenate_events(list(iter_events(task, list(data), chunk_size=CHUNK_EVENTS,
                                                 need_gen=True)))
    if len(events) < 2:
        raise FlashSimError(f"only {len(events)} event(s) of {', '.join(map(str, data))} pass "
                            f"the selection of task {task.name}: give more events")
    return events


def train_unfolding(task_name: str, data: list[str | Path], output: str | Path, *,
                    method: str = "cinn", config_path: str | Path | None = None,
                    progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Train ``method`` for task ``task_name`` on NANOAODSIM ``data``; returns its metrics."""
    task = get_task(task_name)
    method = _method(method)
    output = Path(output)
    events = read_training(task, data)
    output.mkdir(parents=True, exist_ok=True)
    provenance = {"files": events.source["files"], "events": len(events)}
    if method == "cinn":
        config = load_config(config_path, cinn.model_name(task), **overrides)
        model = cinn.train(task, events, output, config, provenance, progress=progress)
        return {"events": len(events), **model.meta["metrics"]}
    if method == "ibu":
        from flashsim.unfold import ibu

        return {"events": len(events), **ibu.train(task, events, output, provenance)}
    from flashsim.unfold import omnifold

    return {"events": len(events), **omnifold.train(task, events, output, provenance)}


def apply_unfolding(task_name: str, inputs: list[str | Path], output: str | Path, *,
                    method: str = "cinn", models: str | Path | None = None, samples: int = 100,
                    seed: int = 1, progress: bool = True) -> dict[str, Any]:
    """Unfold the RECO events of ``inputs`` into ``output`` (see :mod:`.output`).

    ``cinn`` writes ``samples`` posterior samples per selected event; ``ibu`` writes the
    unfolded histograms; ``omnifold`` writes the simulated GEN events with their weights.
    Returns counts and the events/s of the whole run.
    """
    task = get_task(task_name)
    method = _method(method)
    if samples < 1:
        raise FlashSimError(f"--samples must be at least 1, got {samples}")
    models = Path(models) if models is not None else DEFAULT_MODELS
    has_gen = inputs_have_gen(task, list(inputs))
    provenance = {"producer": "flashsim unfold apply", "flashsim": __version__,
                  "task": task.name, "method": method, "models": str(models),
                  "inputs": [str(p) for p in inputs], "samples": samples, "seed": seed}
    started = time.perf_counter()
    if method == "ibu":
        from flashsim.unfold import ibu

        counts = ibu.apply(task, inputs, output, models, has_gen, provenance)
    elif method == "omnifold":
        from flashsim.unfold import omnifold

        counts = omnifold.apply(task, inputs, output, models, seed, provenance)
    else:
        model = cinn.load(task, models)
        counts = {"events_in": 0, "events_out": 0}
        from tqdm import tqdm

        bar = tqdm(desc=f"unfold {task.name}", unit="ev", disable=not progress, leave=False)
        with UnfoldedWriter(output, task.targets, samples, truth=has_gen,
                            provenance=provenance) as writer:
            for events in iter_events(task, list(inputs), chunk_size=CHUNK_EVENTS):
                posterior = cinn.sample_posterior(model, task, events, samples,
                                                  chunk_rng(seed, "unfold:cinn", events))
                writer.write(events.ids, posterior, events.truth_targets)
                counts["events_in"] += events.source["entries"]
                counts["events_out"] += len(events)
                bar.update(events.source["entries"])
        bar.close()
    seconds = time.perf_counter() - started
    return {**counts, "seconds": seconds}
