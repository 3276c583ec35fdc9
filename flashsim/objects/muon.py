r"""Muons: GEN muon -> (efficiency) -> RECO muon, the whole story in one module.

GEN definition (the same in training and simulation, shared with electrons in
:mod:`flashsim.objects.lepton`): ``GenPart`` with ``status == 1``, ``|pdgId| == 13``,
:math:`p_T > 3` GeV and :math:`|\eta| < 2.5`.

Models (FlashSim approach, Vaselli et al. 2024, arXiv:2402.13047):

* ``muon_efficiency`` — classifier :math:`P(\text{reconstructed} \mid c)`; a GEN muon is
  reconstructed when a RECO muon has ``Muon_genPartIdx`` pointing to it;
* ``muon_flow`` — conditional NSF for the RECO muon of a reconstructed GEN muon;
* ``fake_muon_multiplicity`` and ``fake_muon_flow`` — per GenJet, the number (0, 1,
  :math:`\ge 2`) of RECO muons without a GEN muon within :math:`\Delta R < 0.4` of it (pions
  and kaons decaying in flight, punch-through: they carry the hadron's track) and their
  properties given the GenJet context and that number, :math:`p_T` relative to the GenJet;
* ``pileup_muon_multiplicity`` and ``pileup_muon_flow`` — per event, those near no GenJet
  (0, 1, :math:`\ge 2`) and their properties, given the event's pileup and GEN activity
  (:func:`flashsim.objects.fake_jet.event_activity`).

The four fake-muon models are :mod:`flashsim.objects.fake_lepton`'s, shared with electrons;
they generate the same branches as ``muon_flow`` (:data:`PROPERTIES`) with ``charge`` for the
charge flip and :math:`\eta` as its position in the acceptance (:math:`|\eta| < 2.4`), and
their muons go through the same assembly (:func:`simulate`), get ``genPartIdx``/``genPartFlav``
from NanoAOD's MC matching to status-1 muons the GEN-matched muons did not take, and are kept
above :data:`PT_MIN`. Both pairs are needed: in 4000
reference-detector ttbar events (pileup 30) 11.8% of the RECO muons (292, 0.073 per event;
289 of them ``genPartFlav`` 0) have no GEN muon; 48% of those lie within 0.4 of a GenJet
(median :math:`p_T` 5.6 GeV, 10% of the GenJet's; 23% with :math:`|d_z| > 0.3` mm), the
other 52% near none (median :math:`p_T` 3.6 GeV, 98% with :math:`|d_z| > 0.3` mm: muons of
pileup vertices, which a per-GenJet model cannot place); in Drell-Yan 44 of 51 are near no
GenJet. They are optional (:data:`FAKE_MODELS`): a model directory without them (trained
before they existed) simulates the muons of GEN muons alone, as before.

Conditioning :math:`c`: GEN :math:`p_T, \eta, \phi`, charge; ``statusFlags`` bits
(isPrompt, isTauDecayProduct, isDirectHadronDecayProduct, fromHardProcess); whether the
mother is a b or c hadron; the nearest GenJet (:math:`\Delta R`, :math:`p_T` ratio within
0.4, its b/c hadron flavour) as the GEN environment; ``Pileup_nTrueInt``. The efficiency
also sees the muon system's regions (:data:`EFFICIENCY_CONTEXT`): the reconstruction ends at
:math:`|\eta| = 2.4` while GEN muons are defined to 2.5, and the classifier fed the signed
:math:`\eta` alone made that step a ramp: on held-out VBF H→μμ (50 000 events, GEN muons
above 20 GeV) it reconstructed 68% at 2.35-2.4 (full simulation 95%), 82% at 2.25-2.35 (99%),
61% at 2.4-2.45 (none), and 10% too few muons passed 2.1 < |η| < 2.4.

Targets: :math:`p_T^{reco}/p_T^{gen}` (log), :math:`\Delta\eta`, :math:`\Delta\phi`, charge
flip :math:`q^{reco} q^{gen} \in \{-1, 1\}`, :math:`\sigma_{p_T}/p_T`, impact parameters,
isolations, MVA scores, ID booleans, station/layer counts, and for each cut-based ID
(``mediumId``, ``tightId``, ``softId``, ``highPtId``) only the outcome of its cuts on
variables NanoAOD does not store (:data:`flashsim.nanoaod.muon_working_points.HIDDEN`): the ID
is that bit and its cuts on the sampled branches
(:func:`~flashsim.nanoaod.muon_working_points.cut_based_ids`), so a flash muon is never tight
with :math:`|d_z| > 0.5` cm or fewer than two stations, and a tight muon with
:math:`\sigma_{p_T}/p_T < 0.3` is global high-pT as in the reference detector. Sampled as
bits of their own (models before), 7.6% of flash tight muons failed a stored tight cut and
the pair (``tightId``, ``highPtId``) alone gave flash away with an AUC of 0.59 given the GEN
muon (held-out VBF H→μμ). Derived, not
generated: ``pdgId`` (:math:`-13 q`), ``mass``, ``genPartIdx``, ``genPartFlav`` (from the
GEN flags), ``jetIdx`` (:mod:`flashsim.objects.crossref`), and the working points CMS
computes from other branches (``pfIsoId``, ``miniIsoId``, ``tkIsoId``, ``mvaId``,
``softMvaId``, ``mediumPromptId``: :mod:`flashsim.nanoaod.muon_working_points`), and
``multiIsoId`` from the mini-isolation, ``jetRelIso`` and ``jetPtRelv2`` once the muon's jet
is known (:func:`with_jet_variables`; every muon of the reference detector, 17 of the 18 of
``nano_dy.root``, whose CMS jet for ``ptRatio`` may differ slightly from the stored one).

Computed exactly from the sampled branches, never sampled (:func:`exact_columns`; the values
of models trained before, which sample them, are overwritten): ``looseId`` = ``isPFcand``
and (``isGlobal`` or ``isTracker``) (muon POG loose ID), ``tightCharge`` = 2 if
:math:`\sigma_{p_T}/p_T < 0.2` else 0 (NanoAOD's definition on the best track), ``ip3d``
(:func:`flashsim.objects.lepton.impact_parameter_3d`). All three hold in every muon of
``nano_dy.root`` (real CMS) and by construction in the reference detector. ``sip3d`` is
``ip3d`` over the sampled ratio of its 3D error to the track's
(:func:`flashsim.objects.lepton.ip3d_error_ratio`), so it agrees with the sampled impact
parameters and their errors. For a muon in no
jet (``jetIdx == -1``, known once :mod:`flashsim.objects.crossref` has linked the jets),
``jetRelIso`` is ``pfRelIso04_all`` and ``jetPtRelv2`` is 0, as NanoAOD defines them
(:func:`with_jet_variables`; ``nano_dy.root`` and 300 reference-detector ttbar events: every
such muon, to float precision); with a jet both stay sampled. ``jetRelIso``
(:math:`1/\text{ptRatio} - 1`, the jet's other momentum relative to the muon's) is sampled
as :math:`(1 + \text{jetRelIso}) / (1 + \text{pfRelIso04\_all})`: the jet's other
constituents are mostly the isolation cone's (correlation of :math:`\log(1+x)` 0.89 in
reference-detector ggH), so sampled on its own the pair came out loosely tied and gave flash
away (with pT and isolation, a classifier AUC of 0.72 against 0.53 without ``jetRelIso``,
``jetPtRelv2``; shipped v1 models on 20k ggH events). It is not derived from the linked flash
jet: that jet's response is sampled apart from the muon's, and their small difference would
carry both resolutions (AUC 0.68). ``jetPtRelv2`` (the muon momentum transverse to the axis of
the rest of its jet, :func:`flashsim.kinematics.pt_rel`) is not sampled: the flow samples the
direction of the muon's own jet relative to the muon (``jet_deta``, ``jet_dphi``, from the
stored jet at ``jetIdx``; 0 without a jet), and ``jetPtRelv2`` follows from that jet, of
:math:`p_T` :math:`p_T^\mu (1 + \text{jetRelIso})`, and the muon. Sampled as a number of its
own, ``jetPtRelv2`` missed the geometry: where the jet is little more than the muon
(:math:`|\text{jetRelIso}| < 0.01`) the rest of the jet points anywhere, so
:math:`\text{jetPtRelv2}/|\vec p_\mu|` has a median of 0.57–0.73 in the reference detector
and had 0.19–0.22 in flash (held-out VBF H→μμ), and the pair (``jetRelIso``, ``jetPtRelv2``)
alone gave flash away with a classifier AUC of 0.62 given the GEN muon. In the reference
detector the rebuilt value is the stored one up to the storage rounding of the jet's
direction (0.1% median, 5% at the 99th percentile, ttbar); in real CMS NanoAOD the jet's
stored :math:`p_T` is corrected after the lepton was subtracted, so the relation is only
approximate there.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi, pt_rel
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.nanoaod.muon_working_points import (
    CUT_BASED_IDS,
    HIDDEN,
    STORED_INPUTS,
    cut_based_ids,
    derived_ids,
    hidden_from_ids,
    loose_id,
    multi_iso_id,
)
from flashsim.objects.common import discrete, region_context
from flashsim.objects.fake_lepton import fake_models, fake_tables, joined, pt_ordered, sample_fakes
from flashsim.objects.lepton import (
    CONTEXT,
    flow_targets,
    gen_leptons,
    impact_parameter_3d,
    ip3d_error_ratio,
    kinematic_targets,
    momentum_delta,
    neutral_isolation_targets,
    row_table,
    significance_3d,
    simulate_matched,
    training_pairs,
    with_total_isolations,
)

__all__ = [
    "EFFICIENCY_CONTEXT",
    "ETA_EDGES",
    "FAKE_MODELS",
    "MAX_FAKES_PER_JET",
    "MAX_PILEUP_MUONS",
    "MODELS",
    "MUON_MASS",
    "PROPERTIES",
    "PT_MIN",
    "TRAINING_NAMES",
    "exact_columns",
    "gen_muons",
    "own_jet_offsets",
    "simulate",
    "training_tables",
    "with_jet_variables",
]

MUON_MASS = 0.10566
PT_MIN = 3.0
"""NanoAOD stores slimmedMuons with pT > 3 GeV (fake muons below it are not stored)."""
MAX_FAKES_PER_JET = 2
MAX_PILEUP_MUONS = 2
TRAINING_NAMES = ["GenPart", "GenJet", "GenMET", "Pileup", "Muon", "Jet", "genWeight", "run",
                  "luminosityBlock", "event"]

_CONTINUOUS = {
    "dxy": "symlog", "dz": "symlog", "dxyErr": "log", "dzErr": "log",
    "pfRelIso03_neutral": "log", "pfRelIso03_chg": "log", "pfRelIso04_all": "log",
    "miniPFRelIso_neutral": "log", "miniPFRelIso_chg": "log", "tkRelIso": "log",
    "segmentComp": "none", "softMva": "none",
    "mvaLowPt": "none", "mvaTTH": "none", "tunepRelPt": "log",
}
#: Working-point bits that NanoAOD computes from other branches (pfIsoId, mvaId, …) are
#: not sampled: :func:`flashsim.nanoaod.muon_working_points.derived_ids` computes them from
#: the sampled isolation, MVA and impact-parameter values, so they always agree.
_DISCRETE = ("isGlobal", "isTracker", "isPFcand", "inTimeMuon", "triggerIdLoose", "nStations",
             "nTrackerLayers")

#: the generated muon branches beside the kinematics and charge (module doc)
PROPERTIES = (
    ColumnSpec("ptErr_rel", transform="log"),
    ColumnSpec("ip3d_error_ratio", transform="log"),
    ColumnSpec("jet_iso_ratio", transform="log"),
    ColumnSpec("jet_deta", transform="symlog"),
    ColumnSpec("jet_dphi", transform="symlog"),
    *(ColumnSpec(name, transform=t) for name, t in _CONTINUOUS.items()),
    *(discrete("Muon", name) for name in _DISCRETE),
    *(ColumnSpec(name, "discrete", values=(0.0, 1.0)) for name in HIDDEN),
)

TARGETS = flow_targets(True, "charge_flip", PROPERTIES)
FAKE_MODELS = fake_models("muon", "muon", PROPERTIES, MAX_FAKES_PER_JET, MAX_PILEUP_MUONS)
"""Optional: a model directory without them simulates no fake muons (module doc)."""

#: Muon-system regions (CMS: barrel to 0.9, overlap to 1.2, endcap; 2.1 where the
#: resolution worsens) and the end of its acceptance, 2.4.
ETA_EDGES = (0.9, 1.2, 2.1, 2.4)
EFFICIENCY_CONTEXT = (*CONTEXT, *region_context(ETA_EDGES))

MODELS = {
    "muon_efficiency": ModelSpec("muon_efficiency", "muon", "classifier", EFFICIENCY_CONTEXT),
    "muon_flow": ModelSpec("muon_flow", "muon", "flow", CONTEXT, TARGETS),
    **FAKE_MODELS,
}


def exact_columns(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The muon branches that are fixed functions of the sampled ones (module doc), for
    those whose inputs ``fields`` holds."""
    out = {}
    if {"isPFcand", "isGlobal", "isTracker"} <= set(fields):
        out["looseId"] = loose_id(fields)
    if "ptErr" in fields:
        out["tightCharge"] = np.where(fields["ptErr"] / fields["pt"] < 0.2, 2, 0)
    if {"dxy", "dz"} <= set(fields):
        out["ip3d"] = impact_parameter_3d(fields["dxy"], fields["dz"], fields["eta"])
    return out


def with_jet_variables(muons: ak.Array) -> ak.Array:
    """``muons`` once ``jetIdx`` is known: ``jetRelIso`` = ``pfRelIso04_all`` and
    ``jetPtRelv2`` = 0 where ``jetIdx == -1`` (module doc), and ``multiIsoId`` of every muon
    (:func:`~flashsim.nanoaod.muon_working_points.multi_iso_id`, ptRatio 1 without a jet);
    each where the muons have its inputs."""
    fields = set(muons.fields)
    if not {"jetIdx", "jetRelIso", "jetPtRelv2", "pfRelIso04_all"} <= fields:
        return muons
    alone = muons.jetIdx < 0
    for field, value in (("jetRelIso", muons.pfRelIso04_all), ("jetPtRelv2", 0.0)):
        dtype = ak.to_numpy(ak.flatten(muons[field])).dtype
        muons = ak.with_field(muons, ak.values_astype(ak.where(alone, value, muons[field]),
                                                      dtype), field)
    if "miniPFRelIso_all" in fields:
        ratio = ak.where(alone, 1.0, 1.0 / (1.0 + muons.jetRelIso))
        counts = ak.num(muons)
        muons = ak.with_field(muons, ak.unflatten(multi_iso_id(
            *(ak.to_numpy(ak.flatten(x)) for x in (muons.miniPFRelIso_all, ratio,
                                                    muons.jetPtRelv2))), counts), "multiIsoId")
    return muons


def own_jet_offsets(muons: ak.Array, jets: ak.Array) -> dict[str, ak.Array]:
    """``jet_deta``, ``jet_dphi``: the direction of each muon's jet (``jetIdx``) relative to
    the muon, 0 for a muon in no jet (module doc)."""
    has = muons.jetIdx >= 0
    jet = jets[ak.mask(muons.jetIdx, has)]
    return {"jet_deta": ak.fill_none(jet.eta - muons.eta, 0.0),
            "jet_dphi": ak.fill_none(delta_phi(jet.phi, muons.phi), 0.0)}


def gen_muons(gen: dict) -> ak.Array:
    """The GEN muons (:func:`flashsim.objects.lepton.gen_leptons`) with their context."""
    return gen_leptons(gen, 13, ETA_EDGES)


def _properties(reco: ak.Array, chunk: dict) -> dict:
    """The generated non-kinematic targets of the RECO muons ``reco`` (``N * var``) present in
    ``chunk`` (module doc)."""
    available = set(ak.fields(reco))
    targets = {}
    if "ptErr" in available:
        targets["ptErr_rel"] = reco.ptErr / reco.pt
    if {"ip3d", "sip3d", "dxyErr", "dzErr"} <= available:
        targets["ip3d_error_ratio"] = ip3d_error_ratio(reco)
    if {"jetRelIso", "pfRelIso04_all"} <= available:
        targets["jet_iso_ratio"] = (1 + reco.jetRelIso) / (1 + reco.pfRelIso04_all)
    if "jetIdx" in available and "Jet" in chunk:
        targets.update(own_jet_offsets(reco, chunk["Jet"]))
    targets.update({name: reco[name] for name in (*_CONTINUOUS, *_DISCRETE) if name in available})
    targets.update(neutral_isolation_targets(reco))
    if {*STORED_INPUTS, *CUT_BASED_IDS} <= available:
        targets.update(hidden_from_ids(reco))
    return targets


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    r"""(GEN, RECO) training rows from a NANOAODSIM chunk, paired by ``Muon_genPartIdx``; the
    RECO muons without a GEN muon by the nearest GenJet within :math:`\Delta R < 0.4`, the
    rest per event (:mod:`flashsim.objects.fake_lepton`)."""
    efficiency, reco, g, others = training_pairs(chunk, gen_muons(chunk), chunk["Muon"],
                                                 EFFICIENCY_CONTEXT)
    flow = row_table(chunk, {c.name: g[c.name] for c in CONTEXT},
                     {**kinematic_targets(reco, g), **_properties(reco, chunk)}, reco.pt,
                     {"delta": momentum_delta(reco, g)})
    return {"muon_efficiency": efficiency, "muon_flow": flow,
            **fake_tables(chunk, "muon", others, lambda muons: _properties(muons, chunk),
                          MAX_FAKES_PER_JET, MAX_PILEUP_MUONS)}


def _fields(sampled: dict) -> dict:
    """Sampled targets -> Muon branches (module doc): mass, pdgId, ptErr, the exact columns,
    sip3d, jetRelIso, jetPtRelv2, the cut-based and derived IDs."""
    fields = with_total_isolations(dict(sampled))
    fields["mass"] = np.full(len(fields["pt"]), MUON_MASS)
    fields["pdgId"] = -13 * fields["charge"]
    if "ptErr_rel" in fields:
        fields["ptErr"] = fields.pop("ptErr_rel") * fields["pt"]
    fields.update(exact_columns(fields))  # replaces the values older artifacts sample
    if "ip3d_error_ratio" in fields:
        fields["sip3d"] = significance_3d(fields, fields.pop("ip3d_error_ratio"))
    if "jet_iso_ratio" in fields:
        fields["jetRelIso"] = fields.pop("jet_iso_ratio") * (1 + fields["pfRelIso04_all"]) - 1
    if "jet_deta" in fields:
        fields["jetPtRelv2"] = pt_rel(
            fields["pt"], fields["eta"], fields["phi"], fields["pt"] * (1 + fields["jetRelIso"]),
            fields["eta"] + fields.pop("jet_deta"), fields["phi"] + fields.pop("jet_dphi"))
    if set(HIDDEN) <= set(fields):  # older artifacts sample the IDs themselves
        fields.update(cut_based_ids(fields, {name: fields.pop(name) for name in HIDDEN}))
    fields.update(derived_ids(fields))  # replaces the sampled bits of older artifacts
    return fields


def simulate(gen: dict, models, rng: np.random.Generator,
             fake_rng: np.random.Generator) -> ak.Array:
    """Flash-simulated RECO muons, ``N * var * {Muon fields}``, pT-ordered: those of GEN muons
    (drawn from ``rng``) and, when ``models`` has :data:`FAKE_MODELS`, the fake muons above
    :data:`PT_MIN` (drawn from ``fake_rng``, so the other collections do not depend on them).

    ``genPartIdx`` points into ``gen["GenPart"]``; ``jetIdx`` is left for
    :func:`flashsim.objects.crossref.link`.
    """
    n_events = len(gen["event"])
    fields, event = simulate_matched(gen_muons(gen), models["muon_efficiency"],
                                     models["muon_flow"], rng, _fields, EFFICIENCY_CONTEXT)
    keep = np.ones(len(event), bool)
    if all(name in models for name in FAKE_MODELS):
        fakes, fake_event = sample_fakes(gen, "muon", models, fake_rng, event,
                                         fields["genPartIdx"], (13,))
        fields = joined(fields, _fields(fakes))
        keep = np.concatenate([keep, fakes["pt"] > PT_MIN])
        event = np.concatenate([event, fake_event])
    return pt_ordered("Muon", fields, event, keep, n_events)
