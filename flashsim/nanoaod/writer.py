"""Write NanoAOD ROOT files (TTrees ``Events`` and ``Runs``) that ROOT, uproot and coffea read
exactly as they read CMS NANOAODSIM.

A *chunk* is the in-memory NanoAOD format used everywhere in flashsim, ``dict[str, array]``:

- jagged collection (``"Muon"``) -> ``ak.Array`` of type ``N * var * {field: ...}``;
- singleton collection (``"MET"``) -> ``ak.Array`` of type ``N * {field: ...}``;
- scalar branch (``"run"``, ``"genWeight"``) -> 1-D array of length N.

Every field is cast to its schema dtype, every float rounded to its schema mantissa
``precision`` as CMSSW's NanoAOD producers round it, and every TBranch is titled with its schema
doc. Trees are written with uproot ``mktree`` + ``extend`` (``file[name] = ...`` would write an
RNTuple), one record array per collection so that each jagged collection gets exactly one
counter ``nX``.

The file is written under a temporary name in the output directory and renamed into place only
when complete, so an interrupted or failed write never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import awkward as ak
import numpy as np
import uproot

from flashsim.errors import FlashSimError
from flashsim.nanoaod.precision import FULL_PRECISION, reduce_mantissa
from flashsim.nanoaod.schema import BranchSpec, load_schema, schema_path
from flashsim.output_path import check_output_file

__all__ = ["EVENT_ID_BRANCHES", "PROVENANCE_KEY", "Chunk", "NanoAODWriter", "RootFileWriter",
           "patch_branches", "temporary_output", "write_nanoaod"]

Chunk = dict[str, Any]
"""In-memory NanoAOD chunk, see the module docstring."""

EVENT_ID_BRANCHES = ("run", "luminosityBlock", "event")
"""Scalar branches every written chunk must carry."""
PROVENANCE_KEY = "flashsim_provenance"
"""Name of the TObjString that records, as JSON, how a file was made."""


_COUNTER_DTYPE = np.dtype(">u4")
"""CMS NanoAOD counters (``nMuon``) are uint32 (big-endian on disk)."""


def patch_branches(
    tree: uproot.writing.WritableTree, titles: Mapping[str, str], counters: Iterable[str] = ()
) -> None:
    """Give every TBranch its NanoAOD title and every counter ``nX`` the NanoAOD dtype uint32.

    uproot's public API (up to 5.7) cannot do either: ``mktree`` titles every TBranch
    ``name[counter]/T`` and types every counter it generates int32 (its ``counter_name`` option
    names counters, nothing more; an explicit ``nX`` branch of the counter's name is replaced by
    the int32 counter). So this edits uproot's branch metadata right after ``mktree`` (before any
    data) and lets uproot's own relocation (the code path it uses when a tree outgrows its basket
    table) rewrite the tree header; ``extend`` then casts the counts to the counter's dtype. Leaf
    titles keep uproot's ``name[counter]``, as in CMS files.

    Raises :class:`FlashSimError` when this uproot lacks those internals or when a counter in
    ``counters`` did not get uint32, rather than write int32 counters that real NanoAOD never has.
    """
    cascading = getattr(tree, "_cascading", None)
    branch_data = getattr(cascading, "_branch_data", None)
    relocate = getattr(cascading, "_relocate", None)
    if branch_data is None or relocate is None:
        raise FlashSimError(
            f"uproot {uproot.__version__} does not expose the TTree metadata that flashsim edits "
            "to write NanoAOD's uint32 counters and branch titles; install the uproot release "
            "that flashsim is tested with (5.7)"
        )
    typed_counters = set()
    for datum in branch_data:
        if datum.get("kind") == "record" or datum.get("fName") not in titles:
            continue
        datum["fTitle"] = titles[datum["fName"]]
        if datum["kind"] == "counter":
            datum["dtype"] = _COUNTER_DTYPE
            typed_counters.add(datum["fName"])
    untyped = sorted(set(counters) - typed_counters)
    if untyped:
        raise FlashSimError(
            f"uproot {uproot.__version__} did not create the counter branch(es) "
            f"{', '.join(untyped)} in the way flashsim expects, so they cannot be written as "
            "uint32; install the uproot release that flashsim is tested with (5.7)"
        )
    relocate(tree._file, tree._file.sink)


def _cast_flat(values: Any, spec: BranchSpec) -> np.ndarray:
    try:
        array = ak.to_numpy(values, allow_missing=False).astype(spec.dtype, copy=False)
    except (ValueError, TypeError) as err:
        raise FlashSimError(
            f"cannot write NanoAOD branch {spec.name!r} as {spec.dtype}: {err}; "
            "give it plain numeric values without missing entries"
        ) from None
    return _nanoaod_precision(array, spec)


def _nanoaod_precision(array: np.ndarray, spec: BranchSpec) -> np.ndarray:
    """Float branches rounded to the mantissa precision CMS NanoAOD gives them (schema
    ``precision``), so that every file we write carries real NanoAOD's value grid."""
    if spec.precision is None or spec.precision == FULL_PRECISION:
        return array
    return reduce_mantissa(array, spec.precision)


def temporary_output(path: str | os.PathLike[str]) -> Path:
    """Check ``path`` (:func:`flashsim.output_path.check_output_file`), create an empty
    temporary file beside it and return the temporary file's name.

    Writers fill it and ``os.replace`` it onto ``path`` when complete, so a failed write
    never leaves a partial file under the requested name.
    """
    path = Path(path)
    parent = check_output_file(path).parent.resolve()
    # unlike tempfile.mkstemp (mode 0600), os.open honours the umask like any output file
    tmp = parent / f"{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise FlashSimError(
            f"cannot create a file in {parent} ({err.strerror}); choose a writable output path"
        ) from None
    return tmp


class RootFileWriter:
    """A ROOT file written under a temporary name (:func:`temporary_output`) and moved to
    ``path`` by :meth:`close`, or deleted by :meth:`abort`; as a context manager it closes on
    success and aborts on an exception, so no partial file ever carries the requested name.

    ``provenance`` (a JSON-serialisable dict: how the file was made) is stored at close as
    the ``TObjString`` ``flashsim_provenance``. Subclasses fill :attr:`file` (an uproot
    writable file) and add what must be written last in :meth:`_finish`.
    """

    def __init__(self, path: str | os.PathLike[str],
                 provenance: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._provenance = None if provenance is None else json.dumps(dict(provenance))
        self._tmp = temporary_output(self.path)
        try:
            self.file = uproot.recreate(self._tmp)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _finish(self) -> None:
        """Write what belongs at the end of the file (called by :meth:`close`)."""

    def close(self) -> None:
        """Finish, write the provenance, close the file and move it to its final name."""
        if self._closed:
            return
        try:
            self._finish()
            if self._provenance is not None:
                self.file[PROVENANCE_KEY] = self._provenance
            self.file.close()
            self._closed = True
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything written: close and delete the temporary file."""
        self._closed = True
        try:
            self.file.close()
        finally:
            self._tmp.unlink(missing_ok=True)


class NanoAODWriter(RootFileWriter):
    """Context manager writing NanoAOD chunks to one ROOT file.

    ``provenance`` (a JSON-serialisable dict: how the file was made) is stored as the
    ``TObjString`` ``flashsim_provenance``, read back by
    :func:`flashsim.nanoaod.reader.read_provenance`.

    ``runs`` (dict of 1-D arrays keyed by the schema's Runs branches, e.g. from
    :func:`flashsim.nanoaod.reader.read_runs`) is written verbatim as the ``Runs`` tree. Without it
    the Runs tree is accumulated from the events written: per run,
    ``genEventCount = N``, ``genEventSumw = sum(genWeight)``, ``genEventSumw2 = sum(genWeight**2)``
    (genWeight = 1 where a chunk has none).

    >>> with NanoAODWriter("out.root") as writer:   # doctest: +SKIP
    ...     writer.write(chunk)

    Every chunk must hold the same names and fields as the first one.
    """

    def __init__(self, path: str | os.PathLike[str], runs: Mapping[str, Any] | None = None,
                 provenance: Mapping[str, Any] | None = None):
        self.path = Path(path)
        check_output_file(self.path)
        self._schema = load_schema()
        self._runs = None if runs is None else self._check_runs(runs)
        self._run_sums: dict[int, np.ndarray] = {}  # run -> [count, sumw, sumw2]
        self._layout: dict[str, tuple[str, ...] | None] | None = None
        self._tree: uproot.writing.WritableTree | None = None
        super().__init__(path, provenance)

    # -- public ----------------------------------------------------------------------------
    def write(self, chunk: Mapping[str, Any]) -> None:
        """Append one chunk (see module docstring) to the ``Events`` tree."""
        if self._closed:
            raise FlashSimError(f"the writer of {self.path} is closed; open a new NanoAODWriter")
        arrays, titles, layout, n_events = self._prepare(chunk)
        if self._layout is None:
            self._layout = layout
            self._tree = self.file.mktree(
                "Events", {k: _branch_type(v) for k, v in arrays.items()}, title="Events"
            )
            counters = [c.counter for name, c in self._schema.collections.items()
                        if name in arrays and c.jagged]
            patch_branches(self._tree, titles, counters)
        elif layout != self._layout:
            raise FlashSimError(
                f"chunk written to {self.path} has branches {_describe(layout)} but the first chunk "
                f"had {_describe(self._layout)}; write the same collections and fields in every chunk"
            )
        # uproot writes an empty basket for a zero-entry extend that ROOT then misreads
        if n_events:
            self._tree.extend(arrays)
            self._accumulate_runs(chunk, n_events)

    def _finish(self) -> None:
        """The ``Runs`` tree (and the event ids of an empty file)."""
        if self._tree is None:  # nothing written: still a valid file with the event ids
            self.write({name: np.zeros(0) for name in EVENT_ID_BRANCHES})
        self._write_runs()

    # -- internals -------------------------------------------------------------------------
    def _prepare(
        self, chunk: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str], dict[str, tuple[str, ...] | None], int]:
        """Validate ``chunk`` against the schema and cast it: returns the arrays for ``extend``,
        the branch titles, the layout {name: fields or None} and the number of events."""
        schema = self._schema
        unknown = [
            name for name in chunk if name not in schema.collections and name not in schema.scalars
        ]
        for name in chunk:
            coll = schema.collections.get(name)
            if coll is not None:
                unknown += [f"{name}_{f}" for f in ak.fields(chunk[name]) if f not in coll.branches]
        if unknown:
            raise FlashSimError(
                f"cannot write {', '.join(unknown)} to {self.path}: not in the NanoAOD schema "
                f"({schema_path()}); rename the field(s) or add them to the schema"
            )
        missing = [name for name in EVENT_ID_BRANCHES if name not in chunk]
        if missing:
            raise FlashSimError(
                f"chunk for {self.path} lacks the event id branch(es) {', '.join(missing)}; "
                "pass the input's run, luminosityBlock and event through"
            )

        arrays: dict[str, Any] = {}
        titles: dict[str, str] = {}
        layout: dict[str, tuple[str, ...] | None] = {}
        lengths: dict[str, int] = {}
        for name, value in chunk.items():
            if name in schema.scalars:
                spec = schema.scalars[name]
                arrays[name] = _cast_flat(value, spec)
                titles[name] = spec.doc
                layout[name] = None
                lengths[name] = len(arrays[name])
                continue
            coll = schema.collections[name]
            value = ak.Array(value) if not isinstance(value, ak.Array) else value
            fields = tuple(ak.fields(value))
            if not fields:
                raise FlashSimError(
                    f"collection {name!r} written to {self.path} has no fields; give it a record "
                    "array such as ak.zip({'pt': ...})"
                )
            layout[name] = tuple(sorted(fields))  # extend matches fields by name
            lengths[name] = len(value)
            specs = [coll.branches[f] for f in fields]
            titles.update({s.name: s.doc for s in specs})
            if coll.jagged:
                if value.ndim != 2:
                    raise FlashSimError(
                        f"jagged collection {name!r} must have type N * var * {{fields}}, got "
                        f"{value.type}; build it with ak.zip of per-event lists"
                    )
                titles[coll.counter] = coll.doc
                # one flatten and one unflatten per collection, not per field: awkward's
                # per-call overhead, times ~200 fields, was most of the cost of a write
                flat = ak.flatten(value, axis=1)
                arrays[name] = ak.unflatten(
                    ak.zip({s.field: _cast_flat(flat[s.field], s) for s in specs},
                           depth_limit=1),
                    ak.to_numpy(ak.num(value, axis=1)),
                )
            else:
                arrays[name] = ak.zip(
                    {s.field: _cast_flat(value[s.field], s) for s in specs}, depth_limit=1
                )
        if len(set(lengths.values())) > 1:
            raise FlashSimError(
                f"chunk for {self.path} mixes event counts {lengths}; every entry needs one "
                "value (or list) per event"
            )
        return arrays, titles, layout, next(iter(lengths.values()))

    def _accumulate_runs(self, chunk: Mapping[str, Any], n_events: int) -> None:
        if self._runs is not None:
            return
        run = np.asarray(chunk["run"], dtype=np.int64)
        weight = (
            np.asarray(chunk["genWeight"], dtype=np.float64)
            if "genWeight" in chunk
            else np.ones(n_events)
        )
        runs, inverse = np.unique(run, return_inverse=True)
        sums = np.stack(
            [
                np.bincount(inverse, minlength=len(runs)).astype(np.float64),
                np.bincount(inverse, weights=weight, minlength=len(runs)),
                np.bincount(inverse, weights=weight**2, minlength=len(runs)),
            ],
            axis=1,
        )
        for r, s in zip(runs.tolist(), sums, strict=True):
            self._run_sums[r] = self._run_sums.get(r, 0.0) + s

    def _check_runs(self, runs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        specs = self._schema.runs
        unknown = sorted(set(runs) - set(specs))
        missing = sorted(set(specs) - set(runs))
        if unknown or missing:
            raise FlashSimError(
                f"runs for {self.path}: unknown {unknown}, missing {missing}; give exactly "
                f"{', '.join(specs)}"
            )
        out = {name: _cast_flat(runs[name], spec) for name, spec in specs.items()}
        if len({len(v) for v in out.values()}) > 1:
            raise FlashSimError(f"runs for {self.path} have arrays of different lengths; fix them")
        return out

    def _write_runs(self) -> None:
        specs = self._schema.runs
        if self._runs is not None:
            runs = self._runs
        else:
            keys = sorted(self._run_sums)
            table = np.array([self._run_sums[k] for k in keys]).reshape(len(keys), 3)
            columns = dict(
                zip(("genEventCount", "genEventSumw", "genEventSumw2"), table.T, strict=True)
            )
            runs = {"run": np.asarray(keys), **columns}
            runs = {name: runs[name].astype(spec.dtype) for name, spec in specs.items()}
        tree = self.file.mktree("Runs", {k: v.dtype for k, v in runs.items()}, title="Runs")
        patch_branches(tree, {name: spec.doc for name, spec in specs.items()})
        if len(runs["run"]):
            tree.extend(runs)


def _branch_type(array: Any) -> Any:
    return array.dtype if isinstance(array, np.ndarray) else array.type.content


def _describe(layout: Mapping[str, tuple[str, ...] | None] | None) -> str:
    return (
        "{"
        + ", ".join(
            name if fields is None else f"{name}({', '.join(fields)})"
            for name, fields in (layout or {}).items()
        )
        + "}"
    )


def write_nanoaod(
    path: str | os.PathLike[str],
    chunk: Mapping[str, Any],
    runs: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write one chunk as a complete NanoAOD file (see :class:`NanoAODWriter`).

    Two events, the first with two muons; dtypes, counters and the Runs tree follow NanoAOD:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import awkward as ak
    >>> import numpy as np
    >>> import uproot
    >>> path = Path(tempfile.mkdtemp()) / "two_events.root"
    >>> write_nanoaod(path, {
    ...     "run": np.ones(2), "luminosityBlock": np.ones(2), "event": np.array([7, 8]),
    ...     "genWeight": np.array([1.0, 0.5]),
    ...     "Muon": ak.zip({"pt": [[41.5, 12.25], []], "charge": [[1, -1], []]}),
    ... })
    >>> events = uproot.open(path)["Events"]
    >>> events["nMuon"].array().tolist(), events["Muon_pt"].array().tolist()
    ([2, 0], [[41.5, 12.25], []])
    >>> [events[b].typename for b in ("event", "nMuon", "Muon_pt", "Muon_charge")]
    ['uint64_t', 'uint32_t', 'float[]', 'int32_t[]']
    >>> uproot.open(path)["Runs"]["genEventSumw"].array().tolist()
    [1.5]
    """
    with NanoAODWriter(path, runs=runs, provenance=provenance) as writer:
        writer.write(chunk)
