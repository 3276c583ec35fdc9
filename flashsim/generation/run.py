"""Generation runs: batches, seeds, worker processes, progress and file output.

Reproducibility: events are cut into fixed *chunks* of :data:`CHUNK_EVENTS` (independent of
``--jobs``); chunk ``c`` starts a fresh Pythia seeded with a number derived from ``(seed, c)`` by
``numpy.random.SeedSequence`` (mapped into Pythia's 1..900000000), and every batch of the chunk
draws its pileup from ``SeedSequence([seed, c, batch])``.  The same ``--seed`` therefore gives the
same file whatever ``--jobs`` is; workers return whole chunks and the parent writes them in order.
Event ids: ``run`` = 1, ``event`` = 1 + position in the file (unique per file), ``luminosityBlock``
= 1 + position // 1000.  ``genWeight`` = ``Generator_weight`` = Pythia's event weight (1 for
unweighted generation); ``Generator_scalePDF`` = sqrt(Q2Fac) (the Q value, as CMS stores it),
``Generator_xpdf1/2`` = x*f(x, Q2), ``Generator_binvar`` = pTHat (0 for 2 -> 1 processes), as the
CMSSW Pythia 8 interface fills it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version

import awkward as ak
import numpy as np

from flashsim import __version__
from flashsim.errors import FlashSimError
from flashsim.generation.genjets import genjet_table
from flashsim.generation.genpart import GenHistory, genpart_table, prune
from flashsim.generation.pileup import pileup_table
from flashsim.generation.processes import PROCESSES
from flashsim.generation.pythia import MAX_SEED, Record, make_pythia, next_record
from flashsim.output_path import check_output_file
from flashsim.pdg import is_neutrino

__all__ = [
    "BATCH_SIZE", "CHUNK_EVENTS", "EVENTS_PER_LUMI", "GenBatch", "check_arguments", "generate_file",
    "iter_batches", "minbias_pool", "pileup_pool_size", "pythia_seed",
]

CHUNK_EVENTS = 1000
BATCH_SIZE = 250
EVENTS_PER_LUMI = 1000


@dataclass
class GenBatch:
    """One batch of generated events (see CONTRACTS.md).

    ``nano``: the GEN NanoAOD chunk (GenPart, GenJet, GenMET, Pileup, Generator, genWeight, run,
    luminosityBlock, event).  ``particles``: ``N * var * {px, py, pz, e, pdgId, charge, vx, vy, vz,
    genPartIdx}`` — every stable particle of the hard event (neutrinos included), GeV and mm (vertex
    relative to the hard interaction), ``genPartIdx`` into ``nano["GenPart"]`` or -1.
    """

    nano: dict[str, ak.Array | np.ndarray]
    particles: ak.Array


def pythia_seed(seed: int, chunk: int) -> int:
    """Pythia seed (1..900000000) of chunk ``chunk`` of a run with seed ``seed``."""
    state = np.random.SeedSequence([abs(int(seed)), int(seed < 0), chunk]).generate_state(1, np.uint64)[0]
    return int(state % MAX_SEED) + 1


def _final_particles(hist: GenHistory, genpart_index: np.ndarray) -> ak.Array:
    rec = hist.rec
    final = np.flatnonzero(hist.status == 1)
    event = np.searchsorted(rec.offsets, final, side="right") - 1
    table = ak.zip({
        "px": rec.px[final], "py": rec.py[final], "pz": rec.pz[final], "e": rec.e[final],
        "pdgId": rec.pdg[final], "charge": rec.charge[final],
        "vx": rec.vx[final], "vy": rec.vy[final], "vz": rec.vz[final],
        "genPartIdx": genpart_index[final].astype(np.int32),
    })
    return ak.unflatten(table, np.bincount(event, minlength=rec.n_events))


def _genmet(hist: GenHistory) -> ak.Array:
    """Vector sum of the final-state neutrinos (the invisible particles of our processes)."""
    rec = hist.rec
    invisible = (hist.status == 1) & is_neutrino(rec.pdg)
    event = np.searchsorted(rec.offsets, np.flatnonzero(invisible), side="right") - 1
    mex = np.bincount(event, weights=rec.px[invisible], minlength=rec.n_events)
    mey = np.bincount(event, weights=rec.py[invisible], minlength=rec.n_events)
    return ak.zip({"pt": np.hypot(mex, mey).astype(np.float32),
                   "phi": np.arctan2(mey, mex).astype(np.float32)})


def _generator(rec: Record) -> ak.Array:
    info = rec.info
    return ak.zip({
        "binvar": np.sqrt(info["pT2Hat"]).astype(np.float32),
        "scalePDF": np.sqrt(info["Q2Fac"]).astype(np.float32),
        "weight": info["weight"].astype(np.float32),
        "x1": info["x1"].astype(np.float32), "x2": info["x2"].astype(np.float32),
        "xpdf1": info["pdf1"].astype(np.float32), "xpdf2": info["pdf2"].astype(np.float32),
        "id1": info["id1"].astype(np.int32), "id2": info["id2"].astype(np.int32),
    })


def _to_batch(rec: Record, first_event: int, pileup_mean: float, rng: np.random.Generator) -> GenBatch:
    hist = GenHistory(rec)
    genpart, genpart_index = genpart_table(hist, prune(hist))
    position = first_event + np.arange(rec.n_events, dtype=np.uint64)
    nano = {
        "run": np.ones(rec.n_events, dtype=np.uint32),
        "luminosityBlock": (1 + position // EVENTS_PER_LUMI).astype(np.uint32),
        "event": position + 1,
        "genWeight": rec.info["weight"].astype(np.float32),
        "GenPart": genpart,
        "GenJet": genjet_table(hist),
        "GenMET": _genmet(hist),
        "Pileup": pileup_table(rec.n_events, pileup_mean, rng),
        "Generator": _generator(rec),
    }
    return GenBatch(nano=nano, particles=_final_particles(hist, genpart_index))


def _chunk_batches(process: str, seed: int, chunk: int, start: int, stop: int,
                   pileup_mean: float, batch_size: int) -> Iterator[GenBatch]:
    pythia = make_pythia(process, pythia_seed(seed, chunk))
    for index, first in enumerate(range(start, stop, batch_size)):
        n = min(batch_size, stop - first)
        rng = np.random.default_rng(np.random.SeedSequence([abs(int(seed)), chunk, index]))
        yield _to_batch(next_record(pythia, n), first, pileup_mean, rng)


def _chunks(n_events: int) -> list[tuple[int, int, int]]:
    return [(c, start, min(start + CHUNK_EVENTS, n_events))
            for c, start in enumerate(range(0, n_events, CHUNK_EVENTS))]


def iter_batches(process: str, n_events: int, *, seed: int, pileup_mean: float = 30.0,
                 batch_size: int = BATCH_SIZE) -> Iterator[GenBatch]:
    """Generate ``n_events`` of ``process`` in batches of at most ``batch_size`` (in this process)."""
    check_arguments(process, n_events)
    for chunk, start, stop in _chunks(n_events):
        yield from _chunk_batches(process, seed, chunk, start, stop, pileup_mean, batch_size)


def minbias_pool(n_events: int, *, seed: int) -> ak.Array:
    """``n_events`` minimum-bias events as particle records (the ``GenBatch.particles`` layout,
    ``genPartIdx`` = -1), vertices relative to their own interaction point."""
    pythia = make_pythia("minbias", pythia_seed(seed, 2**31 - 1))
    hist = GenHistory(next_record(pythia, n_events))
    return _final_particles(hist, np.full(len(hist.status), -1))


def pileup_pool_size(pileup_mean: float) -> int:
    """Minimum-bias events generated per chunk for ``--refsim``: max(200, 10 * mean pileup).

    Each event overlays ``Pileup_nPU`` events drawn from the pool, so pool events are reused;
    200+ distinct events keep the overlay fluctuations realistic at a small fraction of the cost."""
    return max(200, int(np.ceil(10 * pileup_mean)))


def _chunk_parts(task: tuple) -> Iterator[tuple[int, dict]]:
    """One chunk, batch by batch: (events, merged NanoAOD chunk: GEN, plus RECO with refsim)."""
    process, seed, chunk, start, stop, pileup_mean, refsim = task
    detector = None
    if refsim:
        detector = _reference_detector(minbias_pool(pileup_pool_size(pileup_mean), seed=seed + chunk))
    for index, batch in enumerate(_chunk_batches(process, seed, chunk, start, stop, pileup_mean, BATCH_SIZE)):
        nano = dict(batch.nano)
        if detector is not None:
            rng = np.random.default_rng(np.random.SeedSequence([abs(int(seed)), chunk, index, 1]))
            nano.update(detector.reconstruct(batch, rng))
        yield len(nano["event"]), nano


def _run_chunk(task: tuple) -> dict:
    """Worker task: a whole chunk as one NanoAOD chunk."""
    return _concatenate([nano for _, nano in _chunk_parts(task)])


def _reference_detector_class():
    try:
        from flashsim.refdet import ReferenceDetector
    except ImportError as error:  # refdet is optional for GEN-only generation
        raise FlashSimError(f"--refsim needs flashsim.refdet, which failed to import ({error}); "
                            "run without --refsim for GEN-only files") from error
    return ReferenceDetector


def _reference_detector(pool: ak.Array):
    return _reference_detector_class()(pool)


def _concatenate(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {name: (np.concatenate([p[name] for p in parts]) if isinstance(parts[0][name], np.ndarray)
                   else ak.concatenate([p[name] for p in parts])) for name in parts[0]}


def check_arguments(process: str, n_events: int, output: str | os.PathLike | None = None,
                    jobs: int = 1) -> None:
    """Raise :class:`FlashSimError` for a bad process, event count, output path or job count."""
    if process not in PROCESSES:
        raise FlashSimError(f"unknown process {process!r}; choose one of: {', '.join(PROCESSES)} "
                            "(see `flashsim generate --list`)")
    if n_events is None or n_events < 1:
        raise FlashSimError(f"-n must be a positive number of events, got {n_events}")
    if jobs is None or jobs < 1:
        raise FlashSimError(f"--jobs must be at least 1, got {jobs}")
    if output is not None:
        check_output_file(output)


def generate_file(process: str, n_events: int, output: str | os.PathLike, *, seed: int = 1,
                  jobs: int = 1, pileup_mean: float = 30.0, refsim: bool = False) -> None:
    """Generate ``n_events`` of ``process`` into the NanoAOD file ``output`` (see module doc).

    With ``refsim`` each chunk also runs ``flashsim.refdet.ReferenceDetector`` (pileup pool of
    :func:`pileup_pool_size` minimum-bias events per chunk) and the file holds GEN + RECO."""
    from tqdm import tqdm

    from flashsim.nanoaod.writer import NanoAODWriter

    check_arguments(process, n_events, output, jobs)
    if pileup_mean < 0:
        raise FlashSimError(f"--pileup must be >= 0, got {pileup_mean}")
    if refsim:
        _reference_detector_class()
    tasks = [(process, seed, c, start, stop, pileup_mean, refsim) for c, start, stop in _chunks(n_events)]
    progress = tqdm(total=n_events, unit="ev", desc=f"generate {process}", dynamic_ncols=True)
    provenance = {"producer": "flashsim generate", "flashsim": __version__,
                  "generator": f"Pythia {version('pythia8mc')}", "process": process,
                  "events": n_events, "seed": seed, "jobs": jobs, "pileup_mean": pileup_mean,
                  "refsim": refsim, "settings": list(PROCESSES[process].all_settings)}
    with NanoAODWriter(output, provenance=provenance) as writer:
        if jobs == 1:
            for task in tasks:
                for n, nano in _chunk_parts(task):
                    writer.write(nano)
                    progress.update(n)
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
                try:
                    for task, chunk in zip(tasks, pool.map(_run_chunk, tasks), strict=True):
                        writer.write(chunk)
                        progress.update(task[4] - task[3])
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    progress.close()
