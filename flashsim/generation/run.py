"""Generation runs: chunks, seeds and batches of GEN NanoAOD events.

Reproducibility: events are cut into fixed *chunks* of :data:`CHUNK_EVENTS` events (or another
fixed size, :func:`chunk_ranges`), independent of the number of worker processes; every random
stream is :func:`flashsim.seeds.seed_sequence` of the run's seed, its purpose and its place:
chunk ``c`` starts a fresh Pythia seeded from ``(seed, "hard_process", c)`` (mapped into
Pythia's 1..900000000), every batch ``b`` of the chunk draws its pileup profile from
``(seed, "pileup_profile", c, b)``, and :func:`minbias_pool` of chunk ``c`` uses
``(seed, "minbias_pool", c)``.  Any integer seed works, and no two (seed, purpose, chunk) share
a stream.  So a chunk's events do not depend on which process generates it
(:mod:`flashsim.production` runs chunks on workers and writes them in order).  Event ids:
``run`` = 1, ``event`` = 1 + position in the file (unique per file), ``luminosityBlock`` =
1 + position // 1000.  ``genWeight`` = ``Generator_weight`` = Pythia's event weight (1 for
unweighted generation); ``Generator_scalePDF`` = sqrt(Q2Fac) (the Q value, as CMS stores it),
``Generator_xpdf1/2`` = x*f(x, Q2), ``Generator_binvar`` = pTHat (0 for 2 -> 1 processes), as
the CMSSW Pythia 8 interface fills it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.generation.genjets import genjet_table
from flashsim.generation.genpart import GenHistory, genpart_table, prune
from flashsim.generation.pileup import pileup_table
from flashsim.generation.processes import PROCESSES
from flashsim.generation.pythia import MAX_SEED, Record, make_pythia, next_record
from flashsim.pdg import is_neutrino
from flashsim.seeds import seed_sequence, seeded_rng

__all__ = [
    "BATCH_SIZE", "CHUNK_EVENTS", "EVENTS_PER_LUMI", "GenBatch", "check_arguments", "chunk_batches",
    "chunk_ranges", "iter_batches", "minbias_pool", "pythia_seed",
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


def pythia_seed(seed: int, purpose: str, chunk: int) -> int:
    """Pythia seed (1..900000000) of the ``purpose`` generator of chunk ``chunk`` of a run."""
    state = seed_sequence(seed, purpose, chunk).generate_state(1, np.uint64)[0]
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


def chunk_batches(process: str, seed: int, chunk: int, start: int, stop: int,
                  pileup_mean: float, batch_size: int = BATCH_SIZE) -> Iterator[GenBatch]:
    """Events ``start..stop`` (chunk ``chunk`` of a run with ``seed``) in batches of at most
    ``batch_size``; the same events whichever process runs the chunk."""
    pythia = make_pythia(process, pythia_seed(seed, "hard_process", chunk))
    for index, first in enumerate(range(start, stop, batch_size)):
        n = min(batch_size, stop - first)
        rng = seeded_rng(seed, "pileup_profile", chunk, index)
        yield _to_batch(next_record(pythia, n), first, pileup_mean, rng)


def chunk_ranges(n_events: int, chunk_events: int = CHUNK_EVENTS) -> list[tuple[int, int, int]]:
    """``(chunk, start, stop)`` of every chunk of a run of ``n_events`` events in chunks of
    ``chunk_events``."""
    return [(c, start, min(start + chunk_events, n_events))
            for c, start in enumerate(range(0, n_events, chunk_events))]


def iter_batches(process: str, n_events: int, *, seed: int, pileup_mean: float = 30.0,
                 batch_size: int = BATCH_SIZE) -> Iterator[GenBatch]:
    """Generate ``n_events`` of ``process`` in batches of at most ``batch_size`` (in this process)."""
    check_arguments(process, n_events)
    for chunk, start, stop in chunk_ranges(n_events):
        yield from chunk_batches(process, seed, chunk, start, stop, pileup_mean, batch_size)


def minbias_pool(n_events: int, *, seed: int, chunk: int = 0) -> ak.Array:
    """``n_events`` minimum-bias events as particle records (the ``GenBatch.particles`` layout,
    ``genPartIdx`` = -1), vertices relative to their own interaction point: the pileup pool of
    chunk ``chunk`` of a run with seed ``seed``."""
    pythia = make_pythia("minbias", pythia_seed(seed, "minbias_pool", chunk))
    hist = GenHistory(next_record(pythia, n_events))
    return _final_particles(hist, np.full(len(hist.status), -1))


def check_arguments(process: str, n_events: int) -> None:
    """Raise :class:`FlashSimError` for an unknown process or a bad event count."""
    if process not in PROCESSES:
        raise FlashSimError(f"unknown process {process!r}; choose one of: {', '.join(PROCESSES)} "
                            "(see `flashsim generate --list`)")
    if n_events is None or n_events < 1:
        raise FlashSimError(f"-n must be a positive number of events, got {n_events}")
