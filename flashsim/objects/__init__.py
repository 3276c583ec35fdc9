"""Simulated objects: one module per object, a registry, and the one-call simulation.

Registry: :data:`OBJECTS` (object name -> module with ``MODELS``, ``TRAINING_NAMES``,
``training_tables``) and :data:`MODEL_SPECS` (model name -> :class:`ModelSpec`).

What the processor calls::

    from flashsim.models import load_models
    from flashsim.objects import simulate_reco

    models = load_models(model_dir, backend="torch")   # or "onnx"
    reco = simulate_reco(gen_chunk, models, np.random.default_rng(seed))
    # {"Muon", "Jet", "MET", "PV", "fixedGridRhoFastjetAll"} in the writer's chunk format
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np

from flashsim.objects import crossref, fake_jet, jet, met, muon
from flashsim.objects.common import ModelSpec

__all__ = ["MODEL_SPECS", "OBJECTS", "simulate_reco"]

OBJECTS = {"muon": muon, "jet": jet, "fake_jet": fake_jet, "met": met}
MODEL_SPECS: dict[str, ModelSpec] = {name: spec for module in OBJECTS.values()
                                     for name, spec in module.MODELS.items()}


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
