"""Read NanoAOD ROOT files (CMS NANOAODSIM, GEN NanoAOD, flashsim output) into chunks.

Only the requested branches are read (real files have ~1500); everything is columnar. Any problem
a user can cause (missing file, not ROOT, no ``Events`` TTree, missing branches) raises
:class:`~flashsim.errors.FlashSimError` naming the problem and the fix.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from flashsim.errors import FlashSimError
from flashsim.nanoaod.schema import load_schema
from flashsim.nanoaod.writer import PROVENANCE_KEY

__all__ = [
    "GEN_COLLECTIONS",
    "num_entries",
    "open_events",
    "read_provenance",
    "open_tree",
    "read_chunk",
    "read_runs",
    "stored_names",
]

GEN_COLLECTIONS: tuple[str, ...] = (
    "GenPart",
    "GenJet",
    "GenMET",
    "Pileup",
    "Generator",
    "genWeight",
    "run",
    "luminosityBlock",
    "event",
)
"""What the flash simulation needs from a GEN (or NANOAODSIM) input, as :func:`read_chunk` names."""

# NanoAOD <= v6 names the Runs sums with a trailing underscore (genEventSumw_).
_LEGACY_RUNS_SUFFIX = "_"


def _open_file(path: str | os.PathLike[str]) -> uproot.ReadOnlyDirectory:
    path = Path(path)
    if not path.is_file():
        raise FlashSimError(f"input file {path} does not exist; check the path")
    try:
        return uproot.open(path)
    except Exception as err:  # uproot raises ValueError/OSError/... for non-ROOT content
        raise FlashSimError(
            f"{path} is not a readable ROOT file ({type(err).__name__}: {err}); "
            "give a NanoAOD .root file"
        ) from None


def open_tree(path: str | os.PathLike[str]) -> uproot.TTree:
    """The ``Events`` TTree of a NanoAOD file, validated."""
    file = _open_file(path)
    classes = file.classnames(recursive=False)
    cls = classes.get("Events") or next(
        (c for k, c in classes.items() if k.split(";")[0] == "Events"), None
    )
    if cls is None:
        raise FlashSimError(
            f"{path} has no 'Events' tree (it holds {sorted(classes) or 'nothing'}); "
            "give a NanoAOD file"
        )
    if not cls.startswith("TTree"):
        raise FlashSimError(
            f"'Events' in {path} is a {cls}, not a TTree (uproot >= 5.7 writes RNTuples by default); "
            "rewrite it with flashsim.nanoaod.write_nanoaod or ROOT as a TTree"
        )
    return file["Events"]


def num_entries(path: str | os.PathLike[str]) -> int:
    """Number of events in the ``Events`` tree."""
    return int(open_tree(path).num_entries)


def stored_names(path: str | os.PathLike[str]) -> list[str]:
    """The schema collections and scalars that ``Events`` in ``path`` holds, as
    :func:`read_chunk` names, in the order of their first branch in the tree."""
    schema = load_schema()
    owner = {name: name for name in schema.scalars}
    for name, coll in schema.collections.items():
        owner.update({b.name: name for b in coll.branches.values()})
        if coll.jagged:
            owner[coll.counter] = name
    return list(dict.fromkeys(owner[k] for k in open_tree(path).keys() if k in owner))


def _resolve(names: Iterable[str], available: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Map each requested name to the branches to read; collect the missing ones.

    A name is a schema collection (every schema branch of it the file has; a jagged one needs its
    counter and at least one branch), a scalar (``genWeight``) or a full branch (``Muon_pt``).
    """
    schema = load_schema()
    wanted: dict[str, list[str]] = {}
    missing: list[str] = []
    for name in names:
        coll = schema.collections.get(name)
        if coll is not None:
            present = [b.name for b in coll.branches.values() if b.name in available]
            if coll.jagged and coll.counter not in available:
                missing.append(coll.counter)
            if not present:
                missing.append(f"{name}_*")
            wanted[name] = present
        elif name in available:
            wanted[name] = [name]
        else:
            missing.append(name)
    return wanted, missing


def read_chunk(
    path: str | os.PathLike[str],
    names: Iterable[str],
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> dict[str, Any]:
    """Read ``names`` from entries [entry_start, entry_stop) of ``Events`` as a chunk.

    Collections come back as record arrays with fields without prefix (``chunk["Muon"].pt``),
    scalars and individually named branches (``"Muon_pt"``) as 1-D or jagged arrays under their
    own name. Raises FlashSimError listing every missing branch.
    """
    names = list(names)
    tree = open_tree(path)
    wanted, missing = _resolve(names, set(tree.keys()))
    if missing:
        raise FlashSimError(
            f"{path} lacks the NanoAOD branch(es) {', '.join(missing)}; give a file that has them "
            "(flashsim needs a GEN NanoAOD or NANOAODSIM input)"
        )
    branches = [b for group in wanted.values() for b in group]
    arrays = tree.arrays(
        branches, entry_start=entry_start, entry_stop=entry_stop, library="ak", how=dict
    )
    schema = load_schema()
    chunk: dict[str, Any] = {}
    for name, group in wanted.items():
        coll = schema.collections.get(name)
        if coll is None:
            value = arrays[name]
            chunk[name] = value.to_numpy() if value.ndim == 1 else value
            continue
        prefix = len(name) + 1
        fields = {b[prefix:]: arrays[b] for b in group}
        chunk[name] = ak.zip(fields, depth_limit=2 if coll.jagged else 1)
    return chunk


def read_runs(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | None:
    """The schema branches of the ``Runs`` tree (run, genEventCount, genEventSumw, genEventSumw2)
    as numpy arrays, or None if the file has no complete Runs tree.

    NanoAOD <= v6 names are mapped to the modern ones (``genEventSumw_`` -> ``genEventSumw``).
    """
    file = _open_file(path)
    if "Runs" not in file:
        return None
    tree = file["Runs"]
    available = set(tree.keys())
    source = {}
    for name in load_schema().runs:
        if name in available:
            source[name] = name
        elif name + _LEGACY_RUNS_SUFFIX in available:
            source[name] = name + _LEGACY_RUNS_SUFFIX
        else:
            return None
    arrays = tree.arrays(list(source.values()), library="np")
    return {name: arrays[branch] for name, branch in source.items()}


def read_provenance(path: str | os.PathLike[str]) -> dict | None:
    """How a flashsim file was made (process, seed, pileup, models, ...), or None.

    Written by :class:`flashsim.nanoaod.writer.NanoAODWriter` as the JSON ``TObjString``
    ``flashsim_provenance``; real CMS files have none.
    """
    import json

    file = _open_file(path)
    if PROVENANCE_KEY not in file:
        return None
    return json.loads(str(file[PROVENANCE_KEY]))


def open_events(
    path: str | os.PathLike[str],
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> Any:
    """coffea NanoEvents (``NanoAODSchema``, ``mode="virtual"``) of the ``Events`` tree."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    open_tree(path)  # validates and gives the user-facing errors
    with warnings.catch_warnings():
        # NanoAODSchema warns for every cross-reference into a collection the file does not have
        # (Electron, Tau, ...): expected for GEN and flashsim files, noise for users
        warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)
        return NanoEventsFactory.from_root(
            {str(path): "Events"},
            schemaclass=NanoAODSchema,
            mode="virtual",
            entry_start=entry_start,
            entry_stop=entry_stop,
        ).events()
