"""Pileup overlay: the hard event plus ``Pileup_nPU`` minimum-bias events, displaced in z.

Each interaction (hard and pileup) gets a vertex z ~ N(0, sigma_z) (luminous region);
particle production vertices are shifted by it and expressed relative to the true hard
vertex, so ``vz`` of pileup particles is ``vz_own + z_pu - z_hard``.  Pileup events are
drawn with replacement from the pool, and every overlaid copy gets its own orientation: a
rotation by ``alpha ~ U(-pi, pi)`` about the beam axis and, with probability 1/2, the
reflection ``z -> -z`` (momenta and production vertices alike)::

    px' = px cos(alpha) - py sin(alpha),   py' = px sin(alpha) + py cos(alpha),   pz' = s pz

Unpolarised pp minimum-bias collisions are symmetric under both (azimuthal symmetry of the
beams, forward-backward symmetry of equal beams), so each copy is an equally likely event
with the same multiplicity and pT of every particle, and a pool reused many times does not
put the same particles at the same (eta, phi) again.  Everything is one flat particle
table, grouped by event (hard particles first, then pileup), built by index arithmetic, no
loops.
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
    (they never reach a detector, so overlaying them would only cost time).  ``None`` gives
    the empty pool of a run without pileup."""

    def __init__(self, pool: ak.Array | None):
        if pool is None:
            cols = {k: np.zeros(0, np.int64 if k in ("pdgId", "genPartIdx") else np.float64)
                    for k in FIELDS}
            counts = np.zeros(0, np.int64)
        else:
            cols, counts = flatten_particles(pool)
        pt = np.hypot(cols["px"], cols["py"])
        eta = np.arcsinh(cols["pz"] / np.maximum(pt, 1e-9))
        keep = ~is_neutrino(cols["pdgId"]) & (np.abs(eta) < 5.2)
        evt = np.repeat(np.arange(len(counts)), counts)
        self.cols = {k: v[keep] for k, v in cols.items()}
        self.counts = np.bincount(evt[keep], minlength=len(counts)).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])

    def __len__(self) -> int:
        return len(self.counts)


@dataclass
class Overlay:
    """Flat particle table of hard + pileup interactions, grouped by event.

    ``cols`` holds the particle fields plus ``evt`` (event index) and ``vtx`` (global
    vertex index: ``0..N-1`` are the hard vertices of the N events, then pileup vertices).
    Vertex arrays: ``vertex_evt``, ``vertex_z`` (true z relative to the hard vertex, mm).
    ``hard_z``: absolute true z of the hard vertex (mm).  Per pileup vertex (``vtx - N``):
    ``pileup_source`` (its pool event), ``pileup_rotation`` (alpha) and ``pileup_reflected``.
    """

    cols: dict[str, np.ndarray]
    counts: np.ndarray
    vertex_evt: np.ndarray
    vertex_z: np.ndarray
    hard_z: np.ndarray
    pileup_source: np.ndarray
    pileup_rotation: np.ndarray
    pileup_reflected: np.ndarray

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
    if n_int and not len(pool):
        raise ValueError(f"{n_int} pileup interactions (Pileup_nPU) to overlay from an empty "
                         "pileup pool; give the detector minimum-bias events")
    hard_z = rng.normal(0.0, sigma_z, n)
    pu_evt = np.repeat(np.arange(n), n_pu)
    pu_z = rng.normal(0.0, sigma_z, n_int) - hard_z[pu_evt]
    chosen = rng.integers(0, len(pool), n_int)
    rotation = rng.uniform(-np.pi, np.pi, n_int)
    reflected = rng.random(n_int) < 0.5
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
    pu_cols = _oriented(pool, src, rotation[pu_vertex - n], reflected[pu_vertex - n])
    cols = {}
    for name in FIELDS:
        out = np.empty(total, dtype=hard[name].dtype)
        out[hard_dest] = hard[name]
        out[pu_dest] = pu_cols[name]
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
                   vertex_z=np.concatenate([np.zeros(n), pu_z]), hard_z=hard_z,
                   pileup_source=chosen, pileup_rotation=rotation, pileup_reflected=reflected)


def _oriented(pool: PileupPool, src: np.ndarray, alpha: np.ndarray,
              reflected: np.ndarray) -> dict[str, np.ndarray]:
    """Pool particles ``src``, each rotated by ``alpha`` about z and, where ``reflected``,
    mirrored in z (see the module doc); vertices relative to their own interaction point."""
    cols = {name: pool.cols[name][src] for name in FIELDS}
    cos, sin = np.cos(alpha), np.sin(alpha)
    sign = np.where(reflected, -1.0, 1.0)
    for x, y, z in (("px", "py", "pz"), ("vx", "vy", "vz")):
        cols[x], cols[y] = cols[x] * cos - cols[y] * sin, cols[x] * sin + cols[y] * cos
        cols[z] = cols[z] * sign
    return cols
