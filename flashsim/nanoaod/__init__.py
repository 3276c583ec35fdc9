"""NanoAOD input and output: the branch schema, reading GEN columns, writing TTree files."""

from __future__ import annotations

from flashsim.nanoaod.reader import (
    GEN_COLLECTIONS,
    num_entries,
    open_events,
    read_chunk,
    read_provenance,
    read_runs,
)
from flashsim.nanoaod.schema import (
    BranchSpec,
    CollectionSpec,
    NanoSchema,
    branch_dtype,
    collection_branches,
    load_schema,
)
from flashsim.nanoaod.writer import Chunk, NanoAODWriter, write_nanoaod

__all__ = [
    "GEN_COLLECTIONS",
    "BranchSpec",
    "Chunk",
    "CollectionSpec",
    "NanoAODWriter",
    "NanoSchema",
    "branch_dtype",
    "collection_branches",
    "load_schema",
    "num_entries",
    "open_events",
    "read_chunk",
    "read_provenance",
    "read_runs",
    "write_nanoaod",
]
