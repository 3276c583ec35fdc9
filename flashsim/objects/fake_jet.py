r"""Fake and pileup jets: RECO jets with no stored GenJet (``Jet_genJetIdx == -1``).

They are not attached to any GEN object, so they are simulated per event:

* ``fake_jet_multiplicity`` — categorical model :math:`P(n \mid c_{ev})` over
  :math:`n = 0..K` (:class:`~flashsim.models.classifier.MultiplicityModel`);
* ``fake_jet_flow`` — conditional NSF for the properties of each of the :math:`n` jets,
  :math:`p(x \mid c_{ev}, n)`, jets drawn independently given the event.

Event context :math:`c_{ev}`: ``Pileup_nTrueInt``, GEN :math:`H_T = \sum p_T` of GenJets,
the GenJet count and GenMET :math:`p_T` (GEN activity feeds the low-:math:`p_T` tail
through overlap with pileup). Targets: :math:`p_T` (log), :math:`\eta`, :math:`\phi`, mass
and the same jet branches as :mod:`flashsim.objects.jet`, with the same exactly computed
``jetId`` bits and energy fractions from their shares
(:func:`~flashsim.objects.jet.derived_branches`). The CMS prototype had no
such model; without it, the subleading-jet :math:`p_T` spectrum below ~50 GeV is wrong
(about half of RECO jets with :math:`p_T > 15` GeV are unmatched in real NANOAODSIM).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.objects.common import (
    discrete,
    event_keys,
    event_weights,
    flat,
    sample_counted,
    typed,
)
from flashsim.objects.jet import (
    JET_CONTINUOUS,
    JET_DISCRETE,
    RELATIONS,
    derived_branches,
    jet_properties,
    jet_regions,
)

__all__ = ["MAX_COUNT", "MODELS", "TRAINING_NAMES", "event_activity", "simulate",
           "training_tables"]

MAX_COUNT = 15
TRAINING_NAMES = ["GenJet", "GenMET", "Pileup", "Jet", "genWeight", "run", "luminosityBlock",
                  "event"]

EVENT_CONTEXT = (
    ColumnSpec("pileup"),
    ColumnSpec("gen_ht", transform="log", offset=1.0),
    ColumnSpec("n_genjet"),
    ColumnSpec("genmet_pt", transform="log", offset=1.0),
)
FLOW_CONTEXT = (*EVENT_CONTEXT, ColumnSpec("n_fake"))

TARGETS = (
    ColumnSpec("pt", transform="log"),
    ColumnSpec("eta", spikes=False),
    ColumnSpec("phi", spikes=False),
    ColumnSpec("mass", transform="log", offset=1.0),
    *(ColumnSpec(name, transform=t) for name, t in JET_CONTINUOUS.items()),
    *(discrete("Jet", name) for name in JET_DISCRETE),
)

MODELS = {
    "fake_jet_multiplicity": ModelSpec("fake_jet_multiplicity", "fake_jet", "multiplicity",
                                       EVENT_CONTEXT, max_count=MAX_COUNT),
    "fake_jet_flow": ModelSpec("fake_jet_flow", "fake_jet", "flow", FLOW_CONTEXT, TARGETS,
                               relations=RELATIONS),
}


def event_activity(gen: dict) -> dict[str, np.ndarray]:
    """Per-event GEN activity: pileup, GenJet :math:`H_T` and count, GenMET :math:`p_T`."""
    jets = gen["GenJet"]
    return {
        "pileup": np.asarray(gen["Pileup"].nTrueInt, dtype=np.float64),
        "gen_ht": np.asarray(ak.sum(jets.pt, axis=1), dtype=np.float64),
        "n_genjet": np.asarray(ak.num(jets.pt), dtype=np.float64),
        "genmet_pt": np.asarray(gen["GenMET"].pt, dtype=np.float64),
    }


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    """Per-event fake-jet counts and per-jet properties from a NANOAODSIM chunk."""
    event = event_activity(chunk)
    weight, key = event_weights(chunk), event_keys(chunk)
    reco = chunk["Jet"]
    # a genJetIdx beyond the stored GenJets (real files: GenJet below its pT cut) has no GEN
    # partner the simulation could start from, so such jets count as fakes
    fake = reco[(reco.genJetIdx < 0) | (reco.genJetIdx >= ak.num(chunk["GenJet"].pt))]
    n_fake = np.asarray(ak.num(fake.pt), dtype=np.float64)
    multiplicity = TrainingTable(event, {"n": np.minimum(n_fake, MAX_COUNT)}, weight, key)
    per_jet = {k: flat(ak.broadcast_arrays(v, fake.pt)[0]) for k, v in
               {**event, "n_fake": n_fake}.items()}
    targets = {"pt": fake.pt, "eta": fake.eta, "phi": fake.phi, "mass": fake.mass,
               **jet_properties(fake)}
    flow = TrainingTable(per_jet, {k: flat(v) for k, v in targets.items()},
                         flat(ak.broadcast_arrays(weight, fake.pt)[0]),
                         np.asarray(ak.flatten(ak.broadcast_arrays(key, fake.pt)[0]), np.uint64),
                         {"sum": (np.asarray(ak.sum(fake.pt * np.cos(fake.phi), axis=1)),
                                  np.asarray(ak.sum(fake.pt * np.sin(fake.phi), axis=1)))},
                         jet_regions(fake))
    return {"fake_jet_multiplicity": multiplicity, "fake_jet_flow": flow}


def simulate(gen: dict, models, rng: np.random.Generator) -> ak.Array:
    """Flash-simulated fake jets, ``N * var * {Jet fields}`` with ``genJetIdx = -1``."""
    counts, _, out = sample_counted(models["fake_jet_multiplicity"], models["fake_jet_flow"],
                                    event_activity(gen), rng)
    n = int(counts.sum())
    fields = {**out, "phi": delta_phi(out["phi"], 0.0),
              "hadronFlavour": np.zeros(n, np.int32), "partonFlavour": np.zeros(n, np.int32),
              "genJetIdx": np.full(n, -1, np.int32)}
    fields = derived_branches(fields, models["fake_jet_flow"])
    return ak.unflatten(ak.zip(typed("Jet", fields)), counts)
