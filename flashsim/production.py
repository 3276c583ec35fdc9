"""Sample production: generate events, optionally pass them through the reference detector,
write one NanoAOD file (``flashsim generate PROCESS -n N -o FILE [--refsim]``).

This layer joins :mod:`flashsim.generation` (Pythia to GEN NanoAOD batches) and
:mod:`flashsim.refdet` (the reference detector, GEN batch to RECO collections); neither of
those imports the other.

A run is cut into the chunks of :func:`flashsim.generation.run.chunk_ranges` (``chunk_events``
events each, :data:`~flashsim.generation.run.CHUNK_EVENTS` by default). With ``jobs > 1``
whole chunks run in worker processes and the parent writes them in order, so the same ``seed``
(and ``chunk_events``) gives the same file whatever ``jobs`` is; at most
``n_events / chunk_events`` workers have a chunk to run. With ``refsim`` every chunk builds its
own pileup pool of :func:`pileup_pool_size` minimum-bias events (``pileup_reuse`` sets how often
each is overlaid)
(:func:`flashsim.generation.minbias_pool` of ``(seed, chunk)``; none at zero pileup) and
reconstructs batch ``b`` with the generator :func:`flashsim.seeds.seeded_rng`
``(seed, "detector", chunk, b)``; the file's provenance records the reference detector's version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from typing import NamedTuple

import awkward as ak
import numpy as np
from tqdm import tqdm

from flashsim import __version__
from flashsim.errors import FlashSimError
from flashsim.generation import PROCESSES, minbias_pool
from flashsim.generation.run import (
    BATCH_SIZE,
    CHUNK_EVENTS,
    check_arguments,
    chunk_batches,
    chunk_ranges,
)
from flashsim.nanoaod.writer import Chunk, NanoAODWriter
from flashsim.output_path import check_output_file
from flashsim.refdet import ReferenceDetector
from flashsim.seeds import seeded_rng

__all__ = ["generate_file", "pileup_pool_size"]


class _ChunkTask(NamedTuple):
    """One chunk of a production run (picklable: it is sent to worker processes)."""

    process: str
    seed: int
    chunk: int
    start: int
    stop: int
    pileup_mean: float
    refsim: bool
    pileup_reuse: float | None


def pileup_pool_size(pileup_mean: float, chunk_events: int = CHUNK_EVENTS,
                     reuse: float | None = None) -> int:
    """Minimum-bias events generated for a chunk of ``chunk_events`` hard events with
    ``--refsim``: none without pileup; else, with ``reuse`` None (reference detector v3),
    max(1000, 25 * mean pileup), one per hard event of a chunk at the default pileup; with
    ``reuse`` R, ceil(chunk_events * mean / R).

    Each hard event overlays ``Pileup_nPU`` pool events, so a pool event is overlaid about
    ``chunk_events * mean / size`` times per chunk (30 for v3 at the default pileup), each time
    with its own azimuthal rotation and z reflection (``flashsim.refdet.pileup``). Those keep
    every particle's pT and |eta|, so a rare hard pileup particle (a fake muon, a pileup jet)
    returns in every copy, and the chunk-to-chunk spread of pileup objects grows as
    ratio^2 = 1 + 0.7 (reuse - 1) over independent events (``training/pileup_reuse.py``; README,
    *The reference detector, measured*). Cost: about 5 ms of CPU per minimum-bias event
    (Pythia 8 SoftQCD:inelastic), i.e. ``5 ms * mean / R`` per hard event: R = 3 halves the
    generation rate of v3, R = 1 quarters it."""
    if pileup_mean <= 0:
        return 0
    if reuse is None:
        return max(1000, int(np.ceil(25 * pileup_mean)))
    return max(1, int(np.ceil(chunk_events * pileup_mean / reuse)))


def _chunk_parts(task: _ChunkTask) -> Iterator[tuple[int, Chunk]]:
    """One chunk, batch by batch: (events, NanoAOD chunk: GEN, plus RECO with refsim)."""
    detector = None
    if task.refsim:
        size = pileup_pool_size(task.pileup_mean, task.stop - task.start, task.pileup_reuse)
        detector = ReferenceDetector(minbias_pool(size, seed=task.seed, chunk=task.chunk)
                                     if size else None)
    batches = chunk_batches(task.process, task.seed, task.chunk, task.start, task.stop,
                            task.pileup_mean, BATCH_SIZE)
    for index, batch in enumerate(batches):
        nano = dict(batch.nano)
        if detector is not None:
            rng = seeded_rng(task.seed, "detector", task.chunk, index)
            nano.update(detector.reconstruct(batch, rng))
        yield len(nano["event"]), nano


def _run_chunk(task: _ChunkTask) -> Chunk:
    """Worker task: a whole chunk as one NanoAOD chunk."""
    return _concatenate([nano for _, nano in _chunk_parts(task)])


def _concatenate(parts: list[Chunk]) -> Chunk:
    if len(parts) == 1:
        return parts[0]
    return {name: (np.concatenate([p[name] for p in parts])
                   if isinstance(parts[0][name], np.ndarray)
                   else ak.concatenate([p[name] for p in parts])) for name in parts[0]}


def generate_file(process: str, n_events: int, output: str | os.PathLike[str], *, seed: int = 1,
                  jobs: int = 1, pileup_mean: float = 30.0, refsim: bool = False,
                  progress: bool = True, chunk_events: int = CHUNK_EVENTS,
                  pileup_reuse: float | None = None) -> None:
    """Generate ``n_events`` of ``process`` into the NanoAOD file ``output`` (see module doc).

    ``progress`` shows a bar of events with events/s and the time remaining. ``chunk_events`` is
    the size of a chunk, the unit of seeding and of a worker's task: the file depends on it and
    on ``seed``, never on ``jobs``. ``pileup_reuse`` (with ``refsim``) is the number of times a
    minimum-bias event of a chunk's pool is overlaid on average (:func:`pileup_pool_size`;
    None: the reference detector v3's pool).

    With ``refsim`` each chunk also runs :class:`flashsim.refdet.ReferenceDetector` and the file
    holds GEN + RECO (NANOAODSIM). Every argument is checked before any event is generated.
    """
    check_arguments(process, n_events)
    if jobs is None or jobs < 1:
        raise FlashSimError(f"--jobs must be at least 1, got {jobs}")
    check_output_file(output)
    if pileup_mean < 0:
        raise FlashSimError(f"--pileup must be >= 0, got {pileup_mean}")
    if chunk_events < 1:
        raise FlashSimError(f"chunk_events must be at least 1, got {chunk_events}")
    if pileup_reuse is not None and not pileup_reuse >= 1:
        raise FlashSimError(f"--pileup-reuse must be at least 1 (each minimum-bias event "
                            f"overlaid at least once on average), got {pileup_reuse}")
    tasks = [_ChunkTask(process, seed, c, start, stop, pileup_mean, refsim, pileup_reuse)
             for c, start, stop in chunk_ranges(n_events, chunk_events)]
    bar = tqdm(total=n_events, unit="ev", desc=f"generate {process}", dynamic_ncols=True,
               disable=not progress)
    provenance = {"producer": "flashsim generate", "flashsim": __version__,
                  "generator": f"Pythia {version('pythia8mc')}", "process": process,
                  "events": n_events, "seed": seed, "chunk_events": chunk_events, "jobs": jobs,
                  "pileup_mean": pileup_mean, "refsim": refsim,
                  "reference_detector_version": ReferenceDetector.VERSION if refsim else None,
                  "pileup_reuse": pileup_reuse if refsim else None,
                  "settings": list(PROCESSES[process].all_settings)}
    with NanoAODWriter(output, provenance=provenance) as writer:
        if jobs == 1:
            for task in tasks:
                for n, nano in _chunk_parts(task):
                    writer.write(nano)
                    bar.update(n)
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
                try:
                    for task, chunk in zip(tasks, pool.map(_run_chunk, tasks), strict=True):
                        writer.write(chunk)
                        bar.update(task.stop - task.start)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    bar.close()
