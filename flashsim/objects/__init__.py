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

import numpy as np

from flashsim.objects import crossref, fake_jet, jet, met, muon
from flashsim.objects.common import ModelSpec

__all__ = ["MODEL_SPECS", "OBJECTS", "simulate_reco"]

OBJECTS = {"muon": muon, "jet": jet, "fake_jet": fake_jet, "met": met}
MODEL_SPECS: dict[str, ModelSpec] = {name: spec for module in OBJECTS.values()
                                     for name, spec in module.MODELS.items()}


def simulate_reco(gen: dict, models, rng: np.random.Generator) -> dict:
    """Flash RECO collections for a GEN chunk.

    Order: muons, matched jets, fake jets (each efficiency -> flow -> post-processing),
    jets merged and pT-ordered, muon-jet cross-references rebuilt, then MET (given the
    flash objects) and the pileup observables. ``Muon_genPartIdx`` points into
    ``gen["GenPart"]`` and ``Jet_genJetIdx`` into ``gen["GenJet"]``; -1 = no match.
    """
    muons = muon.simulate(gen, models, rng)
    jets = crossref.merge_jets(jet.simulate(gen, models, rng), fake_jet.simulate(gen, models, rng))
    muons, jets = crossref.link(muons, jets)
    pv, rho = met.simulate_pv(gen, models, rng)
    return {"Muon": muons, "Jet": jets, "MET": met.simulate_met(gen, models, rng, muons, jets),
            "PV": pv, "fixedGridRhoFastjetAll": rho}
