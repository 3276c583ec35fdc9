r"""What an unfolding task is, and reading its events from NanoAOD files.

A task (one module each: :mod:`~flashsim.unfold.dimuon`, :mod:`~flashsim.unfold.ttbar_mujets`)
declares

* its detector-level **selection** and **RECO features** (the condition :math:`x` of the
  posterior, a fixed-length vector: objects padded with zeros and a presence flag),
* its **GEN particles** (read from ``GenPart`` with the ``statusFlags`` ``isHardProcess``,
  ``isFirstCopy``, ``isLastCopy``),
* the **latent coordinates** :math:`y` the flow models (an invertible, constraint-free
  decay-chain parametrisation of those particles, :mod:`~flashsim.unfold.kinematics`) and
  the **targets** written to the output (readable physics quantities computed from the
  particles, e.g. ``Z_pt``, ``t_had_m``),
* a **tilt variable** computed from the targets (e.g. the boson :math:`p_T`), whose
  spectrum the validation's model-dependence test makes harder,
* **RECO proxies** of the targets that have a one-to-one detector-level counterpart (what
  the binned :mod:`~flashsim.unfold.ibu` can unfold).

Mirror symmetry: the detector and pp collisions are also symmetric under the reflection
:math:`z \to -z`, which flips the sign of every feature and latent coordinate named in
``z_odd`` (pseudorapidities, rapidities, :math:`\cos\theta^*` in frames whose axes follow
the lab's) and leaves the others; the cINN trains on every event and its mirror image
(:func:`mirrored`), which doubles the training sample at no cost.

Azimuthal symmetry: the detector and the physics are invariant under rotations about the
beam, so every event is rotated by :math:`-\phi_{\rm ref}` (the azimuth of its leading RECO
muon) before the flow sees it, and the samples are rotated back; the flow never has to
learn the uniform :math:`\phi` of the whole event.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.models.transforms import ColumnSpec
from flashsim.nanoaod.reader import open_tree, read_chunk
from flashsim.nanoaod.writer import EVENT_ID_BRANCHES
from flashsim.objects.common import event_keys, event_weights
from flashsim.unfold.kinematics import rotate_z

__all__ = [
    "GEN_BRANCHES",
    "Particles",
    "Target",
    "TaskEvents",
    "UnfoldingTask",
    "collection",
    "concatenate_events",
    "inputs_have_gen",
    "iter_events",
    "mirrored",
    "read_events",
    "status_flag",
]

GEN_BRANCHES = ("GenPart_pt", "GenPart_eta", "GenPart_phi", "GenPart_mass", "GenPart_pdgId",
                "GenPart_statusFlags", "GenPart_genPartIdxMother")
"""The GEN branches every task reads its particles from."""

Particles = dict[str, np.ndarray]
"""Named ``(n, 4)`` four-vectors :math:`(E, p_x, p_y, p_z)`, one per event."""

_STATUS_BIT = {"isHardProcess": 7, "isFirstCopy": 12, "isLastCopy": 13}


@dataclass(frozen=True)
class Target:
    """One output quantity: branch ``name`` (``Z_pt``), ``unit`` and a ``doc`` string."""

    name: str
    unit: str
    doc: str


@dataclass(frozen=True)
class UnfoldingTask:
    """An unfolding task (see the module doc); the callables work on whole chunks."""

    name: str
    summary: str
    process: str
    reco_branches: tuple[str, ...]
    features: tuple[ColumnSpec, ...]
    latent: tuple[ColumnSpec, ...]
    targets: tuple[Target, ...]
    select: Callable[[dict], np.ndarray]
    reco_features: Callable[[dict], tuple[dict[str, np.ndarray], np.ndarray]]
    gen_particles: Callable[[dict], tuple[Particles, np.ndarray]]
    encode: Callable[[Particles], dict[str, np.ndarray]]
    decode: Callable[[dict[str, np.ndarray]], Particles]
    observables: Callable[[Particles], dict[str, np.ndarray]]
    reco_observables: Callable[[dict], dict[str, np.ndarray]]
    tilt: Callable[[dict[str, np.ndarray]], np.ndarray]
    z_odd: tuple[str, ...] = ()
    gen_branches: tuple[str, ...] = GEN_BRANCHES

    @property
    def target_names(self) -> list[str]:
        """Output target names, in order."""
        return [t.name for t in self.targets]

    def samples_from_latent(self, latent: dict[str, np.ndarray],
                            frame: np.ndarray) -> dict[str, np.ndarray]:
        """Targets of latent coordinates given in the event frame rotated by ``-frame``."""
        particles = {name: rotate_z(p, frame) for name, p in self.decode(latent).items()}
        return self.observables(particles)


@dataclass
class TaskEvents:
    """The selected events of a task from one (or several) chunk(s) of NanoAOD.

    ``truth``/``truth_targets`` are None when the input has no GEN; ``gen_ok`` marks the
    events whose GEN particles were all found (the others get NaN truth).
    """

    ids: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    frame: np.ndarray
    weight: np.ndarray
    key: np.ndarray
    reco_targets: dict[str, np.ndarray]
    truth: dict[str, np.ndarray] | None = None
    truth_targets: dict[str, np.ndarray] | None = None
    gen_ok: np.ndarray | None = None
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask: np.ndarray) -> TaskEvents:
        """The events where ``mask`` is true."""
        def take(d):
            return None if d is None else {k: v[mask] for k, v in d.items()}
        return TaskEvents(take(self.ids), take(self.features), self.frame[mask],
                          self.weight[mask], self.key[mask], take(self.reco_targets),
                          take(self.truth), take(self.truth_targets),
                          None if self.gen_ok is None else self.gen_ok[mask], self.source)


def status_flag(flags, name: str):
    """Boolean array of one GenPart ``statusFlags`` bit by its CMS name."""
    return ((flags >> _STATUS_BIT[name]) & 1) == 1


def collection(chunk: dict, name: str, fields: tuple[str, ...]) -> ak.Array:
    """``N * var * {field}`` record of the branches ``name_field`` read by :func:`read_events`."""
    return ak.zip({f: chunk[f"{name}_{f}"] for f in fields})


def _inspect(task: UnfoldingTask, path: str | os.PathLike,
             need_gen: bool) -> tuple[bool, set[str], int]:
    """Whether the file has GEN, its branch names and entries; raises the one clear error
    for a file the task cannot use."""
    tree = open_tree(path)
    keys = set(tree.keys())
    missing_reco = [b for b in task.reco_branches if b not in keys]
    if missing_reco:
        raise FlashSimError(
            f"{path} lacks the RECO branch(es) {', '.join(missing_reco)} that task {task.name} "
            "reads: give NanoAOD (NANOAODSIM, flash NANOAOD or CMS data) with those collections")
    has_gen = all(b in keys for b in task.gen_branches)
    if need_gen and not has_gen:
        raise FlashSimError(
            f"{path} has no GEN particles (GenPart branches missing), so it cannot train task "
            f"{task.name}: train on NANOAODSIM with GEN and RECO, e.g. `flashsim generate "
            f"{task.process} -n 20000 --refsim -o train.root`")
    return has_gen, keys, int(tree.num_entries)


def read_events(task: UnfoldingTask, path: str | os.PathLike, *, need_gen: bool = False,
                entry_start: int | None = None, entry_stop: int | None = None) -> TaskEvents:
    """The task's selected events of entries [start, stop) of ``path``.

    With ``need_gen`` the file must carry GEN and only events whose GEN particles are
    complete are kept (training); otherwise GEN is used when present (truth for validation).
    """
    has_gen, keys, _ = _inspect(task, path, need_gen)
    return _read(task, path, has_gen, keys, need_gen, entry_start, entry_stop)


def _read(task: UnfoldingTask, path: str | os.PathLike, has_gen: bool, keys: set[str],
          need_gen: bool, entry_start: int | None, entry_stop: int | None) -> TaskEvents:
    names = [*EVENT_ID_BRANCHES, *task.reco_branches]
    names += [b for b in ("genWeight",) if b in keys]
    names += list(task.gen_branches) if has_gen else []
    chunk = read_chunk(path, names, entry_start, entry_stop)
    selected = np.asarray(task.select(chunk), dtype=bool)
    chunk = {k: v[selected] for k, v in chunk.items()}
    features, frame = task.reco_features(chunk)
    events = TaskEvents(
        ids={k: np.asarray(chunk[k]) for k in EVENT_ID_BRANCHES}, features=features,
        frame=frame, weight=event_weights(chunk), key=event_keys(chunk),
        reco_targets=task.reco_observables(chunk),
        source={"path": str(path), "entry_start": int(entry_start or 0),
                "entries": int(len(selected)), "selected": int(selected.sum())})
    if has_gen:
        particles, ok = task.gen_particles(chunk)
        rotated = {n: rotate_z(p, -frame) for n, p in particles.items()}
        events.truth = task.encode(rotated)
        events.truth_targets = {k: np.where(ok, v, np.nan)
                                for k, v in task.observables(particles).items()}
        events.gen_ok = ok
        if need_gen:
            events = events.subset(ok)
    return events


def mirrored(task: UnfoldingTask, events: TaskEvents) -> TaskEvents:
    """``events`` followed by their mirror images under :math:`z \\to -z` (same event keys,
    so an event and its image fall on the same side of the train/validation split)."""
    def flip(columns):
        return None if columns is None else {
            k: -v if k in task.z_odd else v for k, v in columns.items()}
    image = TaskEvents(events.ids, flip(events.features), events.frame, events.weight,
                       events.key, events.reco_targets, flip(events.truth), None,
                       events.gen_ok, events.source)
    both = concatenate_events([events, image])
    both.source = events.source
    return both


def concatenate_events(parts: list[TaskEvents]) -> TaskEvents:
    """One :class:`TaskEvents` from several (same task, same GEN availability)."""
    def cat(dicts):
        if any(d is None for d in dicts):
            return None
        return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]}
    ok = [p.gen_ok for p in parts]
    return TaskEvents(cat([p.ids for p in parts]), cat([p.features for p in parts]),
                      np.concatenate([p.frame for p in parts]),
                      np.concatenate([p.weight for p in parts]),
                      np.concatenate([p.key for p in parts]),
                      cat([p.reco_targets for p in parts]), cat([p.truth for p in parts]),
                      cat([p.truth_targets for p in parts]),
                      None if any(o is None for o in ok) else np.concatenate(ok),
                      {"files": [p.source for p in parts]})


def inputs_have_gen(task: UnfoldingTask, paths: list[str | Path], *,
                    need_gen: bool = False) -> bool:
    """Check every input file for the task; whether they carry GEN (all or none may)."""
    if not paths:
        raise FlashSimError("no input files given: pass NanoAOD files")
    has_gen = {str(p): _inspect(task, p, need_gen)[0] for p in paths}
    if len(set(has_gen.values())) > 1:
        without = [p for p, g in has_gen.items() if not g]
        raise FlashSimError(f"{', '.join(without)} have no GEN but the other inputs do: unfold "
                            "files with and without GEN in separate runs")
    return next(iter(has_gen.values()))


def iter_events(task: UnfoldingTask, paths: list[str | Path], *, chunk_size: int = 50_000,
                need_gen: bool = False) -> Iterator[TaskEvents]:
    """:func:`read_events` over ``paths`` in entry ranges of ``chunk_size`` (bounded memory).

    Check the files first with :func:`inputs_have_gen`, so a bad file fails before any work.
    """
    for path in paths:
        has_gen, keys, n = _inspect(task, path, need_gen)
        for start in range(0, max(n, 1), chunk_size):
            yield _read(task, path, has_gen, keys, need_gen, start, min(start + chunk_size, n))
