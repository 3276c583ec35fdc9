"""The NanoAOD branch specification (``data_schemas/nanoaod.yaml``) as Python objects.

Every name, dtype and doc string flashsim writes comes from here, so that they are typed once
(in the YAML, copied from real CMS NANOAODSIM) and never again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flashsim.errors import FlashSimError
from flashsim.nanoaod.precision import FULL_PRECISION

__all__ = [
    "FLASH_ONLY_FIELDS",
    "KINDS",
    "BranchSpec",
    "CollectionSpec",
    "NanoSchema",
    "branch_dtype",
    "collection_branches",
    "load_schema",
    "reco_branches",
    "schema_path",
]

KINDS = ("continuous", "integer", "boolean", "bitflags", "index", "categorical")

FLASH_ONLY_FIELDS = frozenset({"flashsimWeight"})
"""Collection fields only flashsim writes (a DCTR weight has no meaning in a full simulation)."""

_SCHEMA_FILE = "nanoaod.yaml"


@dataclass(frozen=True)
class BranchSpec:
    """One TBranch: full ``name`` (``Muon_pt``), ``field`` inside its collection (``pt``; the name
    itself for scalars), numpy ``dtype``, ``doc`` (the TBranch title), ``kind`` (one of
    :data:`KINDS`), ``allowed`` values of a discrete branch (None = open-ended), ``target``
    collection of an index branch (None = not written by flashsim), ``bits`` {bit: flag name}
    of a bitflags branch and, for float32 branches, the ``precision``: mantissa bits that CMS
    NanoAOD keeps (1..23, 23 = all; see :mod:`flashsim.nanoaod.precision`)."""

    name: str
    field: str
    dtype: np.dtype
    doc: str
    kind: str
    allowed: tuple | None = None
    target: str | None = None
    bits: dict[int, str] | None = None
    precision: int | None = None


@dataclass(frozen=True)
class CollectionSpec:
    """A NanoAOD collection: jagged ones have a uint32 counter ``nX`` titled ``doc``."""

    name: str
    jagged: bool
    doc: str
    branches: dict[str, BranchSpec] = field(default_factory=dict)

    @property
    def counter(self) -> str | None:
        """Name of the counter branch (``nMuon``), None for singletons."""
        return f"n{self.name}" if self.jagged else None


@dataclass(frozen=True)
class NanoSchema:
    """All collections, flat per-event scalars and Runs-tree branches flashsim knows."""

    collections: dict[str, CollectionSpec]
    scalars: dict[str, BranchSpec]
    runs: dict[str, BranchSpec]

    def branch(self, name: str) -> BranchSpec:
        """The spec of an Events branch by full name (``Muon_pt``, ``nMuon``, ``genWeight``).

        Counter branches get a synthetic uint32 spec whose doc is the collection doc.
        """
        spec = self.branches.get(name)
        if spec is None:
            raise FlashSimError(
                f"NanoAOD branch {name!r} is not in the flashsim schema ({schema_path()}); "
                "use a branch listed there or add it to the schema"
            )
        return spec

    @cached_property
    def branches(self) -> dict[str, BranchSpec]:
        """Every Events branch by full name, counters included."""
        out = dict(self.scalars)
        for coll in self.collections.values():
            if coll.jagged:
                out[coll.counter] = BranchSpec(
                    coll.counter, coll.counter, np.dtype(np.uint32), coll.doc, "integer"
                )
            out.update({b.name: b for b in coll.branches.values()})
        return out


def schema_path() -> Path:
    """Path of ``nanoaod.yaml``: the source tree's ``data_schemas/`` in an editable or source
    checkout, else the copy that the wheel ships as ``flashsim/data_schemas/``."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (
        package_dir.parent / "data_schemas" / _SCHEMA_FILE,
        package_dir / "data_schemas" / _SCHEMA_FILE,
    ):
        if candidate.is_file():
            return candidate
    raise FlashSimError(
        f"the NanoAOD schema {_SCHEMA_FILE} is missing from {package_dir.parent / 'data_schemas'} "
        f"and {package_dir / 'data_schemas'}; reinstall flashsim"
    )


def _branch(name: str, field_: str, raw: dict[str, Any]) -> BranchSpec:
    kind = raw["kind"]
    if kind not in KINDS:
        raise FlashSimError(f"schema branch {name!r} has unknown kind {kind!r}; use one of {KINDS}")
    allowed = raw.get("allowed")
    bits = raw.get("bits")
    dtype = np.dtype(raw["dtype"])
    precision = raw.get("precision")
    needs_precision = dtype == np.float32
    if needs_precision != (precision is not None) or (
        precision is not None and not 1 <= precision <= FULL_PRECISION
    ):
        raise FlashSimError(
            f"schema branch {name!r} ({dtype}) has precision {precision!r}; every float32 branch "
            f"needs its NanoAOD mantissa precision (1..{FULL_PRECISION}) and no other branch has one"
        )
    return BranchSpec(
        name=name,
        field=field_,
        dtype=dtype,
        doc=raw["doc"],
        kind=kind,
        allowed=None if allowed is None else tuple(allowed),
        target=raw.get("target"),
        bits=None if bits is None else {int(k): v for k, v in bits.items()},
        precision=precision,
    )


@cache
def load_schema() -> NanoSchema:
    """Parse ``nanoaod.yaml`` once per process."""
    with schema_path().open(encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    collections = {
        cname: CollectionSpec(
            name=cname,
            jagged=bool(c["jagged"]),
            doc=c["doc"],
            branches={f: _branch(f"{cname}_{f}", f, b) for f, b in c["branches"].items()},
        )
        for cname, c in raw["collections"].items()
    }
    return NanoSchema(
        collections=collections,
        scalars={n: _branch(n, n, b) for n, b in raw["scalars"].items()},
        runs={n: _branch(n, n, b) for n, b in raw["runs"].items()},
    )


def branch_dtype(name: str) -> np.dtype:
    """numpy dtype of an Events branch by full name (``Muon_pt`` -> float32)."""
    return load_schema().branch(name).dtype


def collection_branches(name: str) -> dict[str, BranchSpec]:
    """The branches of collection ``name`` keyed by field (``pt``), in schema order."""
    try:
        return load_schema().collections[name].branches
    except KeyError:
        raise FlashSimError(
            f"{name!r} is not a NanoAOD collection in the flashsim schema ({schema_path()}); "
            f"known collections: {', '.join(load_schema().collections)}"
        ) from None


def reco_branches(name: str) -> dict[str, BranchSpec]:
    """The branches of collection ``name`` that a (full) reconstruction writes: those of
    :func:`collection_branches` without flashsim's own (:data:`FLASH_ONLY_FIELDS`)."""
    return {field: spec for field, spec in collection_branches(name).items()
            if field not in FLASH_ONLY_FIELDS}
