"""What a model learns (:class:`ModelSpec`) and the rows it learns from (:class:`TrainingTable`).

The object modules (:mod:`flashsim.objects`) declare one :class:`ModelSpec` per model and cut
:class:`TrainingTable` rows out of NANOAODSIM; the training loop and the artifact loader of this
package take them as inputs. The dependency runs one way: ``objects`` imports ``models``, never
the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flashsim.models.transforms import ColumnSpec

__all__ = ["ModelSpec", "TrainingTable"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of an object: what it conditions on and which columns it may generate.

    ``kind`` is ``flow``, ``cinn`` (the unfolding cINN), ``classifier`` or ``multiplicity`` (with ``max_count`` classes
    0..max_count). ``targets`` are candidates: training keeps those present in the training
    files and records the list in the artifact. ``required`` names the targets the simulation
    cannot do without: training fails when the files lack one, and so does loading an
    artifact that does not generate one.

    ``relations`` are candidate rules that may make a target a fixed function of other
    columns: ``{target: {rule name: function of the named columns}}``. Training keeps the
    first rule that the training data obey (:func:`flashsim.models.training.exact_relations`),
    takes that target out of the flow and records it (``derived_targets``); the object module
    computes it from the sampled columns. Data that obey none of a target's rules (real CMS
    NanoAOD) leave it a flow target.
    """

    name: str
    object: str
    kind: str
    context: tuple[ColumnSpec, ...]
    targets: tuple[ColumnSpec, ...] = ()
    max_count: int = 0
    required: tuple[str, ...] = ()
    relations: Mapping[str, Mapping[str, Callable[[Mapping[str, Any]], Any]]] = field(
        default_factory=dict)


@dataclass
class TrainingTable:
    """Rows for one model: named context/target columns, per-row weight and event key.

    ``info`` carries per-event by-products an object module hands to another (the MET
    model's :math:`\\sum \\Delta\\vec p_T` of the muons and jets); training ignores it.
    ``regions`` names boolean row masks where a rule of the object module may fix targets
    (jets outside the tracker); training records the targets one value fills there
    (:func:`flashsim.models.training.region_constants`).
    """

    context: dict[str, np.ndarray]
    target: dict[str, np.ndarray]
    weight: np.ndarray
    event: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    regions: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.weight)
