"""Simulated objects: one module per object, a registry, and the one-call simulation.

Registry: :data:`OBJECTS` (object name -> module with ``MODELS``, ``TRAINING_NAMES``,
``training_tables``) and :data:`MODEL_SPECS` (model name -> :class:`ModelSpec`);
:func:`load_models` loads the models they declare, :mod:`.training` trains them.

What the processor calls::

    from flashsim.objects import load_models, simulate_reco

    models = load_models(model_dir, backend="torch")   # or "onnx"
    reco = simulate_reco(gen_chunk, models, np.random.default_rng(seed))
    # {"Muon", "Jet", "MET", "PV", "fixedGridRhoFastjetAll"} in the writer's chunk format
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flashsim.models.artifact import ModelSet, load_model_set
from flashsim.models.spec import ModelSpec
from flashsim.objects import crossref, fake_jet, jet, met, muon

__all__ = ["MODEL_SPECS", "OBJECTS", "load_models", "simulate_reco"]

OBJECTS = {"muon": muon, "jet": jet, "fake_jet": fake_jet, "met": met}
MODEL_SPECS: dict[str, ModelSpec] = {name: spec for module in OBJECTS.values()
                                     for name, spec in module.MODELS.items()}


def load_models(directory: str | Path | None = None, backend: str = "torch",
                required: list[str] | None = None, device: str = "cpu") -> ModelSet:
    """Every model :func:`simulate_reco` needs (or those named in ``required``), from
    ``directory`` (default: the shipped models), checked against :data:`MODEL_SPECS`, with
    their networks on ``device`` (``cpu`` or ``cuda``).

    Raises :class:`~flashsim.errors.FlashSimError` when the directory is missing, has no
    manifest, lacks a required model, when an artifact's context features differ from the
    features the object modules of this flashsim version compute, or when it does not
    generate a target the simulation requires (``ModelSpec.required``); see
    :func:`flashsim.models.artifact.load_model_set`.

    >>> from flashsim.objects import load_models
    >>> models = load_models()  # the shipped models, on the torch backend
    >>> {"muon_efficiency", "muon_flow", "jet_flow", "met_flow"} <= set(models)
    True
    >>> models.backend, models["muon_flow"].kind, models["muon_efficiency"].kind
    ('torch', 'flow', 'classifier')
    >>> models["muon_efficiency"].context.names[:3]
    ['gen_pt', 'gen_eta', 'gen_phi']
    >>> load_models("no/such/directory")
    Traceback (most recent call last):
    flashsim.errors.FlashSimError: model directory no/such/directory does not exist: ...
    """
    names = list(MODEL_SPECS) if required is None else required
    return load_model_set(directory, {name: MODEL_SPECS[name] for name in names}, backend, device)


def simulate_reco(gen: dict, models, rng: np.random.Generator,
                  timings: dict[str, float] | None = None) -> dict:
    """Flash RECO collections for a GEN chunk.

    Order: muons, matched jets, fake jets (each efficiency -> flow -> post-processing),
    jets merged and pT-ordered, muon-jet cross-references rebuilt, then MET (given the
    flash objects) and the pileup observables. ``Muon_genPartIdx`` points into
    ``gen["GenPart"]`` and ``Jet_genJetIdx`` into ``gen["GenJet"]``; -1 = no match.

    ``timings``, if given, accumulates the seconds spent per stage (``muon``, ``jet``,
    ``fake_jet``, ``assembly``, ``met_pv``) for ``flashsim benchmark``.
    """
    def stage(name: str):
        return _timed(timings, name)

    with stage("muon"):
        muons = muon.simulate(gen, models, rng)
    with stage("jet"):
        matched = jet.simulate(gen, models, rng)
    with stage("fake_jet"):
        fakes = fake_jet.simulate(gen, models, rng)
    with stage("assembly"):
        muons, jets = crossref.link(muons, crossref.merge_jets(matched, fakes))
    with stage("met_pv"):
        pv, rho = met.simulate_pv(gen, models, rng)
        missing = met.simulate_met(gen, models, rng, muons, jets)
    return {"Muon": muons, "Jet": jets, "MET": missing, "PV": pv, "fixedGridRhoFastjetAll": rho}


@contextlib.contextmanager
def _timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    if timings is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
