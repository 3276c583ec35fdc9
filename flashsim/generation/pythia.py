"""Running Pythia 8 and exporting its event record as flat numpy columns.

Pythia 8.317's ``Pythia.nextBatch(n)`` returns the whole event record of ``n`` events as one
awkward array filled in C++, so no Python code touches single particles.  The record is kept in
Pythia's own layout (index 0 is the "system" line, mothers/daughters are record positions) and
converted here to *flat* arrays over the whole batch with *global* indices (``offset[event] +
position``), which is what the columnar history algorithms of :mod:`flashsim.generation.genpart`
work on.  Units: GeV and mm (Pythia's native units).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.generation.processes import PROCESSES, Process

__all__ = ["MAX_SEED", "Record", "make_pythia", "next_record"]

#: Pythia accepts seeds 1..900000000.
MAX_SEED = 900_000_000


@dataclass
class Record:
    """A batch of Pythia event records as flat columns (length = total particles incl. system lines).

    ``offsets`` (n_events + 1) delimit events; ``mother1`` .. ``daughter2`` are *global* indices,
    -1 where Pythia stores 0 (no link); ``info`` holds per-event Info values (numpy arrays).
    """

    offsets: np.ndarray
    pdg: np.ndarray
    status: np.ndarray
    mother1: np.ndarray
    mother2: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    m: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    charge: np.ndarray
    info: dict[str, np.ndarray]

    @property
    def n_events(self) -> int:
        """Number of events in the batch."""
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """Particles per event (incl. the system line)."""
        return np.diff(self.offsets)


def make_pythia(process: Process | str, seed: int):
    """An initialised, quiet Pythia for ``process`` seeded with ``seed`` (1..900000000)."""
    import pythia8mc

    if isinstance(process, str):
        process = PROCESSES[process]
    if not 1 <= seed <= MAX_SEED:
        raise FlashSimError(f"Pythia seed {seed} is outside 1..{MAX_SEED}; choose another --seed")
    pythia = pythia8mc.Pythia("", False)
    if any(s.startswith("ResonanceDecayFilter:") for s in process.all_settings):
        # the hook (re)declares its settings with their defaults when it is built: build it
        # before the process settings are read, or it would switch itself off
        pythia.setUserHooksPtr(pythia8mc.ResonanceDecayFilterHook(pythia.settings))
    for setting in (*process.all_settings, f"Random:seed = {seed}"):
        if not pythia.readString(setting):
            raise FlashSimError(f"Pythia rejected the setting {setting!r} of process {process.name}")
    if not pythia.init():
        raise FlashSimError(f"Pythia failed to initialise process {process.name}")
    return pythia


_CHARGES: dict[int, float] = {}


def _charges(pdg: np.ndarray, particle_data) -> np.ndarray:
    """Electric charge per particle (units of e) via a per-process cache of ParticleData."""
    unique, inverse = np.unique(pdg, return_inverse=True)
    missing = [int(i) for i in unique if int(i) not in _CHARGES]
    for i in missing:
        _CHARGES[i] = particle_data.charge(i)
    table = np.array([_CHARGES[int(i)] for i in unique], dtype=np.float32)
    return table[inverse]


def next_record(pythia, n_events: int) -> Record:
    """Generate ``n_events`` events with ``pythia`` and return their records as a :class:`Record`."""
    batch = pythia.nextBatch(n_events)
    prt = batch["prt"]
    counts = ak.to_numpy(ak.num(prt))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = ak.flatten(prt)
    base = np.repeat(offsets[:-1], counts)

    def link(name: str) -> np.ndarray:
        local = ak.to_numpy(flat[name]).astype(np.int64)
        return np.where(local > 0, local + base, -1)

    p4 = flat["p"]
    vprod = flat["vProd"]
    pdg = ak.to_numpy(flat["id"]).astype(np.int32)
    info = batch["info"]
    weights = info["weights"]
    weight = ak.to_numpy(ak.fill_none(ak.firsts(weights), 1.0)).astype(np.float64)
    return Record(
        offsets=offsets,
        pdg=pdg,
        status=ak.to_numpy(flat["status"]).astype(np.int32),
        mother1=link("mother1"),
        mother2=link("mother2"),
        daughter1=link("daughter1"),
        daughter2=link("daughter2"),
        px=ak.to_numpy(p4["px"]),
        py=ak.to_numpy(p4["py"]),
        pz=ak.to_numpy(p4["pz"]),
        e=ak.to_numpy(p4["e"]),
        m=ak.to_numpy(flat["m"]),
        vx=ak.to_numpy(ak.fill_none(vprod["px"], 0.0)),
        vy=ak.to_numpy(ak.fill_none(vprod["py"], 0.0)),
        vz=ak.to_numpy(ak.fill_none(vprod["pz"], 0.0)),
        charge=_charges(pdg, pythia.particleData),
        info={
            "id1": ak.to_numpy(info["id1"]),
            "id2": ak.to_numpy(info["id2"]),
            "x1": ak.to_numpy(info["x1"]),
            "x2": ak.to_numpy(info["x2"]),
            "pdf1": ak.to_numpy(info["pdf1"]),
            "pdf2": ak.to_numpy(info["pdf2"]),
            "Q2Fac": ak.to_numpy(info["Q2Fac"]),
            "pT2Hat": ak.to_numpy(info["pT2Hat"]),
            "weight": weight,
        },
    )
