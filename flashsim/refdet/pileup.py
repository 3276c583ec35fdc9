"""Pileup overlay: the hard event plus ``Pileup_nPU`` minimum-bias events, displaced in z.

Each interaction (hard and pileup) gets a vertex z ~ N(0, sigma_z) (luminous region);
particle production vertices are shifted by it and expressed relative to the true hard
vertex, so ``vz`` of pileup particles is ``vz_own + z_pu - z_hard``.  Pileup events are
drawn with replacement from the pool.  Everything is one flat particle table, grouped by
event (hard particles first, then pileup), built by index arithmetic, no loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from flashsim.pdg import is_neutrino

__all__ = ["FIELDS", "Overlay", "PileupPool", "flatten_particles", "overlay"]

FIELDS = ("px", "py", "pz", "e", "pdgId", "charge", "vx", "vy", "vz", "genPartIdx")


def flatten_particles(particles: ak.Array) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flat numpy columns of a ``N * var * {particle record}`` array and its counts."""
    counts = ak.to_numpy(ak.num(particles, axis=1)).astype(np.int64)
    flat = ak.flatten(particles, axis=1)
    cols = {}
    for name in FIELDS:
        if name == "genPartIdx" and name not in flat.fields:
            cols[name] = np.full(len(flat), -1, np.int64)
            continue
        cols[name] = ak.to_numpy(flat[name])
    cols["pdgId"] = cols["pdgId"].astype(np.int64)
    cols["genPartIdx"] = cols["genPartIdx"].astype(np.int64)
    for name in ("px", "py", "pz", "e", "vx", "vy", "vz", "charge"):
        cols[name] = cols[name].astype(np.float64)
    return cols, counts


class PileupPool:
    """Minimum-bias events flattened once; neutrinos and |eta| > 5.2 particles dropped
    (they never reach a detector, so overlaying them would only cost time)."""

    def __init__(self, pool: ak.Array):
        cols, counts = flatten_particles(pool)
        pt = np.hypot(cols["px"], cols["py"])
        eta = np.arcsinh(cols["pz"] / np.maximum(pt, 1e-9))
        keep = ~is_neutrino(cols["pdgId"]) & (np.abs(eta) < 5.2)
        evt = np.repeat(np.arange(len(counts)), counts)
        self.cols = {k: v[keep] for k, v in cols.items()}
        self.counts = np.bincount(evt[keep], minlength=len(counts)).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        if len(self.counts) == 0:
            raise ValueError("empty pileup pool")

    def __len__(self) -> int:
        return len(self.counts)


@dataclass
class Overlay:
    """Flat particle table of hard + pileup interactions, grouped by event.

    ``cols`` holds the particle fields plus ``evt`` (event index) and ``vtx`` (global
    vertex index: ``0..N-1`` are the hard vertices of the N events, then pileup vertices).
    Vertex arrays: ``vertex_evt``, ``vertex_z`` (true z relative to the hard vertex, mm).
    ``hard_z``: absolute true z of the hard vertex (mm).
    """

    cols: dict[str, np.ndarray]
    counts: np.ndarray
    vertex_evt: np.ndarray
    vertex_z: np.ndarray
    hard_z: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.counts)


def overlay(particles: ak.Array, pool: PileupPool, n_pu: np.ndarray,
            rng: np.random.Generator, sigma_z: float) -> Overlay:
    """Overlay ``n_pu[i]`` pool events on event ``i``; see the module doc for the geometry."""
    hard, hard_counts = flatten_particles(particles)
    n = len(hard_counts)
    n_pu = np.asarray(n_pu, dtype=np.int64)
    n_int = int(n_pu.sum())
    hard_z = rng.normal(0.0, sigma_z, n)
    pu_evt = np.repeat(np.arange(n), n_pu)
    pu_z = rng.normal(0.0, sigma_z, n_int) - hard_z[pu_evt]
    chosen = rng.integers(0, len(pool), n_int)
    pu_counts = pool.counts[chosen]
    n_pu_part = int(pu_counts.sum())
    # index of every overlaid pileup particle in the pool's flat table
    first = np.repeat(pool.offsets[chosen] - np.concatenate([[0], np.cumsum(pu_counts)[:-1]]), pu_counts)
    src = first + np.arange(n_pu_part)
    pu_vertex = np.repeat(n + np.arange(n_int), pu_counts)
    pu_part_evt = pu_evt[pu_vertex - n]
    # destination of each particle in the merged table: event block, hard first then pileup
    pu_per_evt = np.bincount(pu_part_evt, minlength=n)
    counts = hard_counts + pu_per_evt
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    hard_evt = np.repeat(np.arange(n), hard_counts)
    hard_dest = starts[hard_evt] + np.arange(len(hard_evt)) - np.repeat(
        np.concatenate([[0], np.cumsum(hard_counts)[:-1]]), hard_counts)
    pu_start_in = np.concatenate([[0], np.cumsum(pu_per_evt)[:-1]])
    pu_dest = starts[pu_part_evt] + hard_counts[pu_part_evt] + np.arange(n_pu_part) - pu_start_in[pu_part_evt]
    total = int(counts.sum())
    cols = {}
    for name in FIELDS:
        out = np.empty(total, dtype=hard[name].dtype)
        out[hard_dest] = hard[name]
        out[pu_dest] = pool.cols[name][src]
        cols[name] = out
    cols["genPartIdx"][pu_dest] = -1
    cols["vz"][pu_dest] += pu_z[pu_vertex - n]
    cols["evt"] = np.repeat(np.arange(n), counts)
    vtx = np.empty(total, dtype=np.int64)
    vtx[hard_dest] = hard_evt
    vtx[pu_dest] = pu_vertex
    cols["vtx"] = vtx
    return Overlay(cols=cols, counts=counts,
                   vertex_evt=np.concatenate([np.arange(n), pu_evt]),
                   vertex_z=np.concatenate([np.zeros(n), pu_z]), hard_z=hard_z)
