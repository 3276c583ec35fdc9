"""Shared pieces of the object modules: schema-typed columns, event weights and keys,
reading training files, columnar helpers.

Every simulated quantity is described by a :class:`~flashsim.models.spec.ModelSpec` (its
context columns and candidate target columns) and trained from a
:class:`~flashsim.models.spec.TrainingTable` that the object module extracts from a
NANOAODSIM chunk. Geometry helpers work on awkward arrays of any nesting without Python
loops.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.kinematics import delta_r
from flashsim.models.transforms import ColumnSpec

__all__ = [
    "allowed_values",
    "concatenate_chunks",
    "dequantize_reco",
    "discrete",
    "event_keys",
    "event_weights",
    "flat",
    "nearest",
    "read_training_chunk",
    "region_columns",
    "region_context",
    "sample_counted",
    "typed",
    "vector_sum",
]


def allowed_values(collection: str, branch: str) -> tuple[float, ...] | None:
    """Allowed values of a discrete NanoAOD branch from the schema (None if open-ended)."""
    from flashsim.nanoaod.schema import load_schema

    schema = load_schema()
    spec = (schema.collections[collection].branches.get(branch)
            if collection in schema.collections else schema.scalars.get(branch))
    if spec is None or spec.allowed is None:
        return None
    return tuple(float(v) for v in spec.allowed)


def discrete(collection: str, branch: str) -> ColumnSpec:
    """A discrete target column whose allowed values come from the schema when listed."""
    return ColumnSpec(branch, "discrete", values=allowed_values(collection, branch))


def typed(collection: str, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast simulated columns to the schema dtypes of ``collection`` (float32/int32 if unknown).

    ``collection`` may be a collection name or ``None`` for scalar branches.
    """
    from flashsim.nanoaod.schema import load_schema

    schema = load_schema()
    specs = (schema.collections[collection].branches if collection in schema.collections
             else schema.scalars)
    out = {}
    for name, values in fields.items():
        values = np.asarray(values)
        spec = specs.get(name)
        if spec is not None:
            out[name] = values.astype(spec.dtype)
        else:
            out[name] = values.astype(np.float32 if values.dtype.kind == "f" else np.int32)
    return out


def flat(array) -> np.ndarray:
    """A (possibly jagged) awkward array flattened to a float64 numpy array."""
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=None)), dtype=np.float64)


def nearest(eta, phi, other_eta, other_phi, *, exclude_self: bool = False,
            default: float = 5.0):
    r"""For every object of ``N * var`` arrays, :math:`\Delta R` to and index of the nearest
    object of ``other`` in the same event (``default``/-1 if none).

    With ``exclude_self`` (same collection) the diagonal is skipped.
    """
    dr = delta_r(eta[:, :, None], phi[:, :, None], other_eta[:, None, :], other_phi[:, None, :])
    if exclude_self:
        i = ak.local_index(eta, axis=1)
        j = ak.local_index(other_eta, axis=1)
        dr = ak.where(i[:, :, None] == j[:, None, :], np.inf, dr)
    index = ak.argmin(dr, axis=2)
    best = ak.fill_none(ak.min(dr, axis=2), np.inf)
    found = best < np.inf
    return ak.where(found, best, default), ak.where(found, ak.fill_none(index, -1), -1)


def region_context(eta_edges: tuple[float, ...]) -> tuple[ColumnSpec, ...]:
    r"""Where a GEN object points in the detector: :math:`|\eta|` and one step
    ``beyond_eta_<edge>`` per edge (:func:`region_columns` computes them). An efficiency or
    response that changes in a step at a detector boundary is one a network fed the signed
    :math:`\eta` smooths into a ramp, and learns each side of the detector apart."""
    return (ColumnSpec("gen_abs_eta"), *(ColumnSpec(f"beyond_eta_{edge:g}") for edge in eta_edges))


def region_columns(eta, eta_edges: tuple[float, ...]) -> dict:
    """The columns of :func:`region_context` for objects at pseudorapidity ``eta``."""
    abs_eta = abs(eta)
    return {"gen_abs_eta": abs_eta, **{f"beyond_eta_{edge:g}": 1 * (abs_eta > edge)
                                       for edge in eta_edges}}


def vector_sum(pt, phi) -> tuple[np.ndarray, np.ndarray]:
    """Per-event sums of :math:`p_x, p_y` of a jagged collection."""
    return (np.asarray(ak.sum(pt * np.cos(phi), axis=1), dtype=np.float64),
            np.asarray(ak.sum(pt * np.sin(phi), axis=1), dtype=np.float64))


def event_weights(chunk: dict) -> np.ndarray:
    """Per-event sample weight: ``genWeight`` divided by the mean absolute ``genWeight``.

    Keeps the sign (negative NLO weights subtract), normalised to O(1).
    """
    if "genWeight" not in chunk:
        return np.ones(len(chunk["event"]))
    w = np.asarray(chunk["genWeight"], dtype=np.float64)
    scale = np.mean(np.abs(w)) if len(w) else 1.0
    return w / scale if scale > 0 else np.ones_like(w)


def event_keys(chunk: dict) -> np.ndarray:
    """A 64-bit key per event from ``(run, luminosityBlock, event)`` for the train/val split."""
    key = np.asarray(chunk["event"], dtype=np.uint64)
    for name in ("run", "luminosityBlock"):
        if name in chunk:
            key = key * np.uint64(1_000_003) + np.asarray(chunk[name], dtype=np.uint64)
    return key


POINT_MASS_FRACTION = 0.01
POINT_MASS_CONTRAST = 5.0


def _point_masses(values: np.ndarray, bits: int) -> np.ndarray:
    """The stored values of one branch that are atoms of its distribution, not grid points:
    each carries at least ``POINT_MASS_FRACTION`` of the values and a density (count over
    rounding-cell width) at least ``POINT_MASS_CONTRAST`` times that of each adjacent stored
    value whose rounding cell touches its own (a default of -1, a score saturated at 1; a tooth
    of the rounding comb has adjacent teeth as dense as itself). A stored value beyond a gap of
    empty cells is no neighbour: before, the exact zeros next to the reference detector's
    ``qgl`` default of -1 (a cell of width 0, so of infinite density) made -1 a grid point,
    and the flows had to learn a spike 5e-4 wide instead of an atom."""
    from flashsim.nanoaod.precision import rounding_cell

    stored, counts = np.unique(values[np.isfinite(values)], return_counts=True)
    low, high = rounding_cell(stored, bits)
    width = high - low
    density = counts / np.maximum(width, np.finfo(np.float32).tiny)
    touching = low[1:] <= high[:-1] + 0.5 * width[:-1]
    neighbour = np.maximum(np.where(np.r_[False, touching], np.r_[0.0, density[:-1]], 0.0),
                           np.where(np.r_[touching, False], np.r_[density[1:], 0.0], 0.0))
    atom = (counts >= POINT_MASS_FRACTION * len(values)) & (density >= POINT_MASS_CONTRAST * neighbour)
    return stored[atom]


def dequantize_reco(chunk: dict, seed: int) -> dict:
    """``chunk`` with every rounded float branch of a RECO collection (``Muon``, ``Jet``,
    ``MET``, …; not ``Gen*``, which condition the models as the simulation sees them) replaced
    by a uniform draw from its NanoAOD rounding cell (:func:`flashsim.nanoaod.precision.dequantize`).

    A flow fitted to values on a grid spends its capacity on the comb; dequantised, it learns
    the density that the writer's rounding turns back into the grid. Exact zeros and each
    branch's point masses (:func:`_point_masses`) stay exact: they are physics (a default, a
    saturated score), and the preprocessing's spikes model them. The noise of each branch is
    its own stream of ``seed``."""
    from flashsim.nanoaod.precision import FULL_PRECISION, dequantize
    from flashsim.nanoaod.reader import GEN_COLLECTIONS
    from flashsim.nanoaod.schema import load_schema
    from flashsim.seeds import seeded_rng

    schema = load_schema()
    out = dict(chunk)
    for name, value in chunk.items():
        collection = schema.collections.get(name)
        if collection is None or name in GEN_COLLECTIONS or name.startswith("Gen"):
            continue
        fields = {}
        for field in value.fields:
            bits = collection.branches[field].precision if field in collection.branches else None
            column = value[field]
            if bits is None or bits == FULL_PRECISION:
                fields[field] = column
                continue
            stored = np.asarray(ak.flatten(column, axis=None), dtype=np.float32)
            drawn = dequantize(stored, bits, seeded_rng(seed, "dequantize", f"{name}_{field}"))
            drawn = np.where(np.isin(stored, _point_masses(stored, bits)), stored, drawn)
            fields[field] = ak.unflatten(drawn, ak.num(column)) if collection.jagged else drawn
        out[name] = ak.zip(fields, depth_limit=2 if collection.jagged else 1)
    return out


def read_training_chunk(paths: list[str | Path], names: list[str],
                        max_events: int | None = None, *, seed: int = 1) -> tuple[dict, dict]:
    """Read ``names`` from NANOAODSIM ``paths`` into one chunk, its RECO floats dequantised
    (:func:`dequantize_reco` with ``seed``); also return provenance.

    Stops after ``max_events`` events in total.
    """
    from flashsim.nanoaod.reader import read_chunk, read_provenance, read_runs

    chunks, files, remaining = [], [], max_events
    for path in paths:
        if remaining is not None and remaining <= 0:
            break
        chunk = read_chunk(path, names, 0, remaining)
        n = len(chunk["event"])
        chunks.append(chunk)
        files.append({"path": str(path), "events": n, "has_runs": read_runs(path) is not None,
                      "provenance": read_provenance(path)})
        remaining = None if remaining is None else remaining - n
    if not chunks:
        raise FlashSimError("no training files given: pass NANOAODSIM files with --data")
    merged = concatenate_chunks(chunks)
    return dequantize_reco(merged, seed), {"files": files, "events": int(len(merged["event"]))}


def concatenate_chunks(chunks: list[dict]) -> dict:
    """Chunks with the same names, one after the other."""
    return {k: (ak.concatenate([c[k] for c in chunks]) if isinstance(chunks[0][k], ak.Array)
                else np.concatenate([np.asarray(c[k]) for c in chunks])) for k in chunks[0]}


def sample_counted(multiplicity, flow, columns: dict[str, np.ndarray],
                   rng: np.random.Generator, possible: np.ndarray | None = None
                   ) -> tuple[np.ndarray, dict, dict]:
    """Objects drawn per row of ``columns``: a count from the ``multiplicity`` model (0 where
    ``possible`` is False), then one ``flow`` sample per object given its row's context plus
    ``n_fake`` (the count).

    Returns ``(counts per row, context of every object, flow output per object)``; objects
    are ordered by row."""
    from flashsim.models.classifier import draw_counts

    probabilities = multiplicity.probability(columns)
    counts = draw_counts(probabilities, rng.uniform(size=len(probabilities)))
    if possible is not None:
        counts = np.where(possible, counts, 0)
    rows = np.repeat(np.arange(len(counts)), counts)
    context = {k: v[rows] for k, v in columns.items()}
    context["n_fake"] = counts[rows].astype(np.float64)
    return counts, context, flow.sample(context, rng)
