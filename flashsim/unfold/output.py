"""The ``Unfolded`` TTree: event ids, K posterior samples per target, the truth if known.

Branches: ``run``, ``luminosityBlock``, ``event`` (the input's, dtypes from the NanoAOD
schema), one fixed-size ``float[K]`` branch per target (``Z_pt``, ``t_had_m``, ...: K
posterior samples of that event) and, when the input carries GEN, ``<target>_true`` (one
value per event, NaN where the event's GEN particles are incomplete). Method outputs that
are weights on a GEN sample (OmniFold) write K = 1 and a ``weight`` branch instead.
Every branch is titled with what it holds and its unit. The file is written under a
temporary name and renamed when complete (:class:`flashsim.nanoaod.writer.RootFileWriter`),
with a ``flashsim_provenance`` record of how it was made.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import uproot

from flashsim.nanoaod.schema import load_schema
from flashsim.nanoaod.writer import EVENT_ID_BRANCHES, RootFileWriter, patch_branches
from flashsim.unfold.task import Target

__all__ = ["TREE", "UnfoldedWriter", "read_unfolded"]

TREE = "Unfolded"


class UnfoldedWriter(RootFileWriter):
    """Context manager that appends batches of unfolded events to ``path``."""

    def __init__(self, path: str | os.PathLike[str], targets: tuple[Target, ...], samples: int,
                 *, truth: bool, weight: bool = False,
                 provenance: dict[str, Any] | None = None) -> None:
        super().__init__(path, provenance)
        schema = load_schema()
        types: dict[str, Any] = {n: schema.branch(n).dtype for n in EVENT_ID_BRANCHES}
        titles = {n: schema.branch(n).doc for n in EVENT_ID_BRANCHES}
        shape = np.dtype((np.float32, (samples,))) if samples > 1 else np.dtype(np.float32)
        for t in targets:
            unit = f" [{t.unit}]" if t.unit else ""
            types[t.name] = shape
            titles[t.name] = f"{t.doc}{unit}: {samples} posterior sample(s)"
            if truth:
                types[f"{t.name}_true"] = np.dtype(np.float32)
                titles[f"{t.name}_true"] = f"{t.doc}{unit}: GEN truth"
        if weight:
            types["weight"] = np.dtype(np.float32)
            titles["weight"] = "unfolding weight of this GEN event"
        self._types = types
        try:
            self._tree = self.file.mktree(TREE, types, title="flashsim unfold output")
            patch_branches(self._tree, titles)
        except BaseException:
            self.abort()
            raise

    def write(self, ids: dict[str, np.ndarray], samples: dict[str, np.ndarray],
              truth: dict[str, np.ndarray] | None = None,
              weight: np.ndarray | None = None) -> None:
        """Append events: ids, ``{target: (n, K)}`` samples, optional truth and weights."""
        arrays = {n: np.asarray(ids[n]).astype(self._types[n]) for n in EVENT_ID_BRANCHES}
        for name, values in samples.items():
            arrays[name] = np.asarray(values, dtype=np.float32).reshape(
                (len(values), *self._types[name].shape))
        for name, values in (truth or {}).items():
            arrays[f"{name}_true"] = np.asarray(values, dtype=np.float32)
        if weight is not None:
            arrays["weight"] = np.asarray(weight, dtype=np.float32)
        if len(arrays["event"]):  # an empty extend writes a basket ROOT misreads
            self._tree.extend(arrays)


def read_unfolded(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every branch of the ``Unfolded`` tree of ``path`` as numpy arrays."""
    from flashsim.errors import FlashSimError

    try:
        tree = uproot.open(path)[TREE]
    except (OSError, KeyError, ValueError) as error:
        raise FlashSimError(f"{path} has no readable '{TREE}' tree ({error}); give the output "
                            "of `flashsim unfold apply`") from None
    return tree.arrays(library="np")
