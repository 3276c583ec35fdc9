r"""Jets matched to GenJets: GenJet -> (efficiency) -> RECO jet.

GEN definition: every ``GenJet`` of the event (anti-kT R=0.4, NanoAOD keeps
:math:`p_T > 10` GeV). Training pairs come from ``Jet_genJetIdx``.

Models (FlashSim approach, Vaselli et al. 2024, arXiv:2402.13047):

* ``jet_efficiency`` — :math:`P(\text{a RECO jet with } p_T > 15 \text{ GeV is matched} \mid c)`;
* ``jet_btag_working_point`` — :math:`P(k \mid c)`, the number :math:`k` = 0-3 of DeepJet
  working points the matched jet's ``btagDeepFlavB`` passes (:data:`DEEPJET_INTERVAL`);
* ``jet_flow`` — conditional NSF for the matched RECO jet, given :math:`c` and the drawn
  :math:`k`.

Conditioning :math:`c`: GenJet :math:`p_T, \eta, \phi`, mass; hadron flavour (b, c) and
parton flavour (gluon, light, heavy) as indicators; the nearest other GenJet
(:math:`\Delta R`, :math:`p_T` ratio); the nearest GEN muon of :mod:`flashsim.objects.muon`
(:math:`\Delta R`) and the GEN-muon :math:`p_T` fraction within :math:`\Delta R < 0.4`;
``Pileup_nTrueInt``. The efficiency also conditions on the :math:`p_T` fraction carried by
final-state muons beyond the muon acceptance (:math:`|\eta| \geq 2.5`): GenJets keep
muons, the detector does not see them there, so a forward GenJet that is mostly a muon
(frequent in Drell-Yan) has no RECO jet while a hadronic one at the same :math:`p_T, \eta`
nearly always has.

Targets: :math:`p_T^{reco}/p_T^{gen}` (log), :math:`\Delta\eta`, :math:`\Delta\phi`, mass,
area, the energy fractions as their stick-breaking shares (they sum to 1:
:func:`energy_fraction_shares`), constituent counts, ``jetId``/``puId`` bit flags, b/c/quark-gluon
taggers, regression outputs — every candidate the training files contain. Derived:
``hadronFlavour``/``partonFlavour`` (copied from the GenJet), ``genJetIdx``; ``nMuons``,
``muonIdx1/2``, ``nElectrons``, ``electronIdx1/2`` come from :mod:`flashsim.objects.crossref`.

Outside the tracker (:math:`|\eta| \ge 2.5`, :data:`TRACKER_ETA`) a jet has no tracks; the
reference detector then gives ``qgl`` and every b/c tagger its default (-1 or 0) in every jet,
and the flows, which learnt it as a point mass, missed it in 2–6% of the forward jets and put a
default on 0.8% of the central ones (``qgl`` = -1 in 94.0% of forward flash jets of held-out
VBF H→μμ, where each of the unmatched jets' top culprits, ``qgl`` and ``btagDeepFlavCvL``, cost
the classifier 0.03 AUC). Training records each target one value fills in at least 99.5% of the
forward rows (:func:`flashsim.models.training.region_constants`) and simulation sets it there
exactly (:func:`with_region_constants`, also for fake jets); real CMS NanoAOD has no such rule
(``qgl`` = -1 in 57% of the forward jets of ``nano_dy.root``), so models trained on it get
none.

``jetId`` is partly a fixed function of the sampled branches (:func:`exact_jet_id`, also for
fake jets): the 2018 tight jet ID (bit 2) for :math:`|\eta| \le 2.7` and the tightLepVeto
bit 4 everywhere are computed from the energy fractions and ``nConstituents`` (JetID twiki,
2018 criteria); the sampled ``jetId`` only decides the tight bit beyond
:math:`|\eta| = 2.7`, where the criteria count neutral constituents, which NanoAOD does not
store. Both rules hold for every jet of ``nano_dy.root`` (real CMS, 188 jets) and by
construction in the reference detector.

Branches that the training data make fixed functions of others are computed, not sampled
(:data:`RELATIONS`; the rule each obeys is the artifact's ``derived_targets``): in the
reference detector ``btagCMVA``, ``btagDeepFlavC``, ``btagDeepC``, ``btagCSVV2`` (of the
DeepJet scores), ``bRegRes`` (of :math:`p_T`) and ``jercCHF``; in real CMS NanoAOD
(``nano_dy.root``) ``jercCHF`` alone. Likewise ``puId`` above 50 GeV, where CMS applies no
pileup ID, and the charm scores of central jets without a displaced track (``btagDeepFlavB``
exactly 0 in the reference detector) are region constants where the data fix them
(:func:`jet_regions`).

``jet_flow`` also sees the electrons around the GenJet (:data:`ELECTRON_CONTEXT`): the
simulation runs the electron models first (:func:`flashsim.objects.simulate_reco`); and the
calorimeter region the GenJet points at (:data:`REGION_CONTEXT`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.kinematics import delta_phi, delta_r
from flashsim.models.classifier import draw_counts
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.objects.common import (
    discrete,
    event_keys,
    event_weights,
    flat,
    nearest,
    region_columns,
    region_context,
    typed,
)
from flashsim.objects.lepton import gen_leptons

__all__ = [
    "DEEPJET_WORKING_POINTS",
    "DEEPJET_INTERVAL",
    "DEEPJET_POSITION",
    "ELECTRON_CONTEXT",
    "ENERGY_FRACTIONS",
    "ENERGY_FRACTION_SHARES",
    "ETA_EDGES",
    "JET_CONTINUOUS",
    "JET_DISCRETE",
    "MODELS",
    "PHOTON_CONTEXT",
    "PILEUP_ID_PT",
    "REGION_CONTEXT",
    "RELATIONS",
    "TRACKER_ETA",
    "TRAINING_NAMES",
    "deepjet_intervals",
    "deepjet_score",
    "derived_branches",
    "energy_fraction_shares",
    "energy_fractions",
    "exact_jet_id",
    "gen_jets",
    "jet_properties",
    "jet_regions",
    "outside_tracker",
    "simulate",
    "with_region_constants",
    "training_tables",
]

TRACKER_ETA = 2.5
"""Tracker acceptance :math:`|\\eta|`: beyond it a jet has no tracks, hence no track-based
tagger (:func:`outside_tracker`)."""

TRAINING_NAMES = ["GenPart", "GenJet", "Pileup", "Jet", "Electron", "genWeight", "run",
                  "luminosityBlock", "event"]

CONTEXT = (
    ColumnSpec("gen_pt", transform="log"),
    ColumnSpec("gen_eta"),
    ColumnSpec("gen_phi"),
    ColumnSpec("gen_mass", transform="log", offset=1.0),
    ColumnSpec("had_b"),
    ColumnSpec("had_c"),
    ColumnSpec("parton_gluon"),
    ColumnSpec("parton_light"),
    ColumnSpec("parton_heavy"),
    ColumnSpec("near_dr"),
    ColumnSpec("near_ptratio", transform="log", offset=1.0),
    ColumnSpec("mu_dr"),
    ColumnSpec("mu_ptfrac", transform="log", offset=1.0),
    ColumnSpec("pileup"),
)
EFFICIENCY_CONTEXT = (*CONTEXT, ColumnSpec("fwd_mu_ptfrac", transform="log", offset=1.0))
#: The RECO electrons around the GenJet (simulated ones in simulation, the full simulation's in
#: training): :math:`\Delta R` to the nearest and the :math:`p_T` fraction within
#: :math:`\Delta R < 0.4`. A jet has charged electromagnetic energy (``chEmEF``) when, and
#: only when, it holds an electron (reference detector; ``nano_dy.root``: 1 of 166 jets without
#: an electron has ``chEmEF`` > 0), and which jets hold one is decided by the electron models.
#: Without it the flow gave ``chEmEF`` > 0.5 to jets of which 7% held a simulated electron
#: (full simulation: all).
ELECTRON_CONTEXT = (
    ColumnSpec("ele_dr"),
    ColumnSpec("ele_ptfrac", transform="log", offset=1.0),
)
#: Where the GenJet points in the calorimeters: one step per edge of the ECAL barrel, the
#: tracker, the 2018 tight jet ID's regions (2.6, 2.7) and HF (3.0), beside :math:`|\eta|`
#: (:func:`~flashsim.objects.common.region_context`). The response, the energy fractions and
#: the jet ID change in steps there, and a conditioner fed the signed :math:`\eta` alone
#: smooths each step: on held-out VBF H→μμ the ``jet_flow`` without them passed the tight ID
#: in 84.0% of the jets at :math:`2.5 < |\eta| < 3` against 89.7% in the full simulation,
#: and 95.0% against 98.6% beyond 3.
ETA_EDGES = (1.479, TRACKER_ETA, 2.6, 2.7, 3.0)
REGION_CONTEXT = region_context(ETA_EDGES)
#: What ``jet_btag_working_point`` sees; ``jet_flow`` sees it and the drawn working point.
WORKING_POINT_CONTEXT = (*CONTEXT, *ELECTRON_CONTEXT, *REGION_CONTEXT)
#: The GenJet's leading GEN photon within :math:`\Delta R < 0.4` (status 1 in the pruned
#: ``GenPart``: above 10 GeV or prompt, e.g. a lepton's FSR): its :math:`p_T` fraction and
#: offsets from the jet axis, zero without one. Context of the electrons from jets
#: (:mod:`flashsim.objects.fake_lepton`): a converted photon becomes an electron that NanoAOD
#: matches to that photon (``genPartFlav`` 22), and the jet's other columns cannot say
#: whether, or where, the jet holds one.
PHOTON_CONTEXT = (
    ColumnSpec("photon_ptfrac", transform="log", offset=1.0),
    ColumnSpec("photon_deta"),
    ColumnSpec("photon_dphi"),
)

#: The PF energy fractions of a jet, in the order of their stick-breaking shares. They
#: divide one energy, so they sum to 1 (every jet of ``nano_dy.root``: 0.992–1.01, the
#: NanoAOD rounding; the reference detector: exactly). Sampled as five numbers, the sum
#: of 9.4% of the held-out VBF jets of the detector-v1 ``jet_flow`` and 1.1% of the fake
#: jets fell outside 0.98–1.02 (reference detector: none).
ENERGY_FRACTIONS = ("chHEF", "neEmEF", "neHEF", "chEmEF", "muEF")
#: Stick-breaking shares :math:`s_k = f_k / (1 - \sum_{j<k} f_j)`, :math:`k = 1..4`: four
#: free numbers in [0, 1] that give five fractions on the simplex (:func:`energy_fractions`).
ENERGY_FRACTION_SHARES = tuple(f"{name}_share" for name in ENERGY_FRACTIONS[:-1])

#: DeepJet's 2018 working points of ``btagDeepFlavB`` (loose, medium, tight): a jet passes
#: one when its score is above it.
DEEPJET_WORKING_POINTS = (0.0494, 0.2770, 0.7264)
_DEEPJET_EDGES = np.array([0.0, *DEEPJET_WORKING_POINTS, 1.0])
#: ``btagDeepFlavB`` of a GEN-matched jet as the models draw it (:func:`deepjet_intervals`):
#: first how many working points the score passes (0-3), from the class probabilities of
#: ``jet_btag_working_point``, then, by ``jet_flow`` given that number, where the score lies
#: between the two working points around it (0-1). A tagger calibrated onto its working
#: points has a density that jumps at each (the reference detector maps its discriminant
#: piecewise linearly through knots there, so the light-jet density falls 18-fold across the
#: loose one in tt̄), and a spline flow, whose density is continuous, smooths every jump
#: across the cut that defines the working point. Sampled as a logit, 5.0% of the ttbar
#: *training* sample's light jets lay just above the loose working point (0.0494-0.1) against
#: 3.7%, and 2.3% passed the medium one against 1.6% (held-out VBF: 1.1% against 0.6%). As a
#: *discrete flow target* (uniformly dequantised, :mod:`flashsim.models.transforms`) the
#: number has a step density, and the flow smoothed its jumps the same way: 2.7% passed the
#: medium working point. A classifier's softmax gives class probabilities with no density to
#: smooth. For a tagger with a smooth density (real CMS) the split loses nothing.
DEEPJET_INTERVAL = ColumnSpec("btagDeepFlavB_interval")
DEEPJET_POSITION = ColumnSpec("btagDeepFlavB_position")
_DEEPJET_NAMES = (DEEPJET_INTERVAL.name, DEEPJET_POSITION.name)

#: Jet branches generated as they are (shared with the fake-jet model), with the transform
#: applied before the flow. The b/c discriminants live in [0, 1] and matter most near 1
#: (the working points): logit spreads that end over the spline's domain. Their exact 0
#: and 1 values are spikes, encoded separately (:mod:`flashsim.models.transforms`).
#: The energy fractions enter as their stick-breaking shares (:data:`ENERGY_FRACTIONS`),
#: ``btagDeepFlavB`` of matched jets as its working-point interval and position
#: (:data:`DEEPJET_INTERVAL`); the fake jets' flow samples it as it is.
JET_CONTINUOUS = {
    "area": "none", **{name: "none" for name in ENERGY_FRACTION_SHARES},
    "btagDeepFlavB": "logit", "btagDeepFlavC": "none",
    "btagDeepFlavCvL": "logit", "btagDeepFlavCvB": "logit", "btagDeepB": "logit",
    "btagDeepC": "none", "btagCSVV2": "none", "btagCMVA": "none", "qgl": "none",
    "rawFactor": "none", "bRegCorr": "none", "bRegRes": "none", "muonSubtrFactor": "none",
    "jercCHF": "none", "jercCHPUF": "none",
}
#: ``nElectrons`` and ``nMuons`` are not among them: :mod:`flashsim.objects.crossref` counts
#: the simulated leptons linked to each jet.
JET_DISCRETE = ("nConstituents", "jetId", "puId")

_CSVV2_OF_DEEPFLAVB = (_DEEPJET_EDGES, (0.0, 0.5803, 0.8838, 0.9693, 1.0))


def _column(columns: dict, name: str) -> np.ndarray:
    """A jet branch from sampled or training columns: the energy fractions also from their
    shares, ``pt`` also from the GenJet's and the response; KeyError when neither is there."""
    if name in columns:
        return np.asarray(columns[name], np.float64)
    if name in ENERGY_FRACTIONS:
        return energy_fractions(columns)[name]
    if name == "pt":
        return np.asarray(columns["gen_pt"], np.float64) * np.asarray(columns["pt_ratio"])
    if name == "btagDeepFlavB":
        return deepjet_score(columns)
    raise KeyError(name)


def _charged_fraction(columns: dict) -> np.ndarray:
    return sum(_column(columns, name) for name in ("chHEF", "chEmEF", "muEF"))


def _charm_of_deepflav(columns: dict) -> np.ndarray:
    return _column(columns, "btagDeepFlavCvL") * (1.0 - _column(columns, "btagDeepFlavB"))


#: Rules that may make a jet branch a fixed function of others (:attr:`ModelSpec.relations`):
#: training keeps the first rule the data obey, and that branch is then computed
#: (:func:`derived_branches`), not sampled. ``jercCHF`` = ``chHEF`` + ``chEmEF`` + ``muEF``
#: holds for every jet of ``nano_dy.root`` (real CMS: the JERC charged fraction counts every
#: charged PF candidate); the reference detector up to v3 sets ``jercCHF`` = ``chHEF``, and
#: makes the older b/c taggers and ``bRegRes`` functions of DeepJet's scores and of
#: :math:`p_T` (:mod:`flashsim.refdet.jets`), which real NanoAOD does not. Sampled, those were
#: the detector-v3 ``jet_flow``'s giveaways: ``btagCMVA`` = -1 in 11% of its central jets
#: (full simulation: 27%, with ``btagDeepFlavB`` = 0), classifier AUC 0.62 from it alone.
RELATIONS = {
    "jercCHF": {"chHEF + chEmEF + muEF": _charged_fraction,
                "chHEF": lambda c: _column(c, "chHEF")},
    "btagCMVA": {"clip(2 btagDeepFlavB - 1, -1, 1)":
                 lambda c: np.clip(2.0 * _column(c, "btagDeepFlavB") - 1.0, -1.0, 1.0)},
    "btagDeepFlavC": {"btagDeepFlavCvL (1 - btagDeepFlavB)": _charm_of_deepflav},
    "btagDeepC": {"0.6 btagDeepFlavCvL (1 - btagDeepFlavB)":
                  lambda c: np.clip(0.6 * _charm_of_deepflav(c), 0.0, 1.0)},
    "btagCSVV2": {"piecewise-linear in btagDeepFlavB":
                  lambda c: np.interp(_column(c, "btagDeepFlavB"), *_CSVV2_OF_DEEPFLAVB)},
    "bRegRes": {"0.06 + 1/sqrt(pt)":
                lambda c: 0.06 + 1.0 / np.sqrt(np.maximum(_column(c, "pt"), 1.0))},
}

TARGETS = (
    ColumnSpec("pt_ratio", transform="log"),
    ColumnSpec("deta", spikes=False),
    ColumnSpec("dphi", spikes=False),
    ColumnSpec("mass", transform="log", offset=1.0),
    *(ColumnSpec(name, transform=t) for name, t in JET_CONTINUOUS.items()
      if name != "btagDeepFlavB"),
    DEEPJET_POSITION,
    *(discrete("Jet", name) for name in JET_DISCRETE),
)

MODELS = {
    "jet_efficiency": ModelSpec("jet_efficiency", "jet", "classifier", EFFICIENCY_CONTEXT),
    "jet_btag_working_point": ModelSpec("jet_btag_working_point", "jet", "multiplicity",
                                        WORKING_POINT_CONTEXT,
                                        max_count=len(DEEPJET_WORKING_POINTS)),
    "jet_flow": ModelSpec("jet_flow", "jet", "flow", (*WORKING_POINT_CONTEXT, DEEPJET_INTERVAL),
                          TARGETS, relations=RELATIONS),
}


def gen_jets(gen: dict, electrons: ak.Array | None = None) -> ak.Array:
    """Every GenJet with its context columns, ``index`` and flavours; the
    :data:`ELECTRON_CONTEXT` from the RECO ``electrons`` (``N * var`` with ``pt``, ``eta``,
    ``phi``; ``None``: none in any event)."""
    jets = gen["GenJet"]
    had = jets.hadronFlavour
    parton = abs(jets.partonFlavour)
    near_dr, near_index = nearest(jets.eta, jets.phi, jets.eta, jets.phi, exclude_self=True)
    near_pt = ak.fill_none(jets.pt[ak.mask(near_index, near_index >= 0)], 0.0)
    mu = gen_leptons(gen, 13)  # the GEN muons (flashsim.objects.muon.gen_muons)
    mu_dr, _ = nearest(jets.eta, jets.phi, mu.gen_eta, mu.gen_phi)
    part = gen["GenPart"]
    forward = part[(part.status == 1) & (abs(part.pdgId) == 13) & (abs(part.eta) >= 2.5)]
    pileup = ak.broadcast_arrays(np.asarray(gen["Pileup"].nTrueInt, np.float64), jets.pt)[0]
    photons = part[(part.status == 1) & (part.pdgId == 22)]
    photon_pt, photon_deta, photon_dphi = _leading_within(jets, photons)
    if electrons is None:
        electrons = ak.zip({"pt": jets.pt[:, :0], "eta": jets.eta[:, :0], "phi": jets.phi[:, :0]})
    ele_dr, _ = nearest(jets.eta, jets.phi, electrons.eta, electrons.phi)
    return ak.zip({
        "gen_pt": jets.pt, "gen_eta": jets.eta, "gen_phi": jets.phi, "gen_mass": jets.mass,
        "had_b": 1 * (had == 5), "had_c": 1 * (had == 4), "parton_gluon": 1 * (parton == 21),
        "parton_light": 1 * ((parton >= 1) & (parton <= 3)),
        "parton_heavy": 1 * ((parton == 4) | (parton == 5)),
        "near_dr": np.minimum(near_dr, 5.0), "near_ptratio": near_pt / jets.pt,
        "mu_dr": np.minimum(mu_dr, 5.0), "pileup": pileup,
        "ele_dr": np.minimum(ele_dr, 5.0),
        "ele_ptfrac": _pt_within(jets, electrons.eta, electrons.phi, electrons.pt) / jets.pt,
        "mu_ptfrac": _pt_within(jets, mu.gen_eta, mu.gen_phi, mu.gen_pt) / jets.pt,
        "fwd_mu_ptfrac": _pt_within(jets, forward.eta, forward.phi, forward.pt) / jets.pt,
        "photon_ptfrac": photon_pt / jets.pt, "photon_deta": photon_deta,
        "photon_dphi": photon_dphi, **region_columns(jets.eta, ETA_EDGES),
        "index": ak.local_index(jets.pt, axis=1),
        "hadronFlavour": jets.hadronFlavour, "partonFlavour": jets.partonFlavour,
    })


def _pt_within(jets: ak.Array, eta: ak.Array, phi: ak.Array, pt: ak.Array) -> ak.Array:
    r"""Per jet: the summed ``pt`` of the particles within :math:`\Delta R < 0.4` of it."""
    dr = delta_r(jets.eta[:, :, None], jets.phi[:, :, None], eta[:, None, :], phi[:, None, :])
    return ak.sum(ak.where(dr < 0.4, ak.broadcast_arrays(pt[:, None, :], dr)[0], 0.0), axis=2)


def _leading_within(jets: ak.Array, particles: ak.Array) -> tuple[ak.Array, ak.Array, ak.Array]:
    r"""Per jet: :math:`p_T`, :math:`\Delta\eta` and :math:`\Delta\phi` (particle minus jet)
    of the highest-:math:`p_T` of ``particles`` within :math:`\Delta R < 0.4`; zeros without
    one."""
    dr = delta_r(jets.eta[:, :, None], jets.phi[:, :, None], particles.eta[:, None, :],
                 particles.phi[:, None, :])
    pt = ak.where(dr < 0.4, ak.broadcast_arrays(particles.pt[:, None, :], dr)[0], -1.0)
    best = ak.argmax(pt, axis=2, keepdims=True)
    found = ak.fill_none(ak.firsts(pt[best], axis=2), -1.0) > 0
    chosen = ak.firsts(ak.broadcast_arrays(particles[:, None, :], dr)[0][best], axis=2)

    def column(values: ak.Array) -> ak.Array:
        return ak.where(found, ak.fill_none(values, 0.0), 0.0)

    return (column(chosen.pt), column(chosen.eta - jets.eta),
            column(delta_phi(chosen.phi, jets.phi)))


def outside_tracker(eta) -> np.ndarray:
    """The ``outside_tracker`` region of the jet flows (:data:`TRACKER_ETA`): a training
    table's ``regions`` entry and, at sampling, where the flow's ``region_constants`` hold."""
    return np.abs(np.asarray(eta, dtype=np.float64)) >= TRACKER_ETA


PILEUP_ID_PT = 50.0
"""Above this :math:`p_T` (GeV) CMS applies no pileup jet ID; the reference detector then sets
``puId`` = 7 (all bits), a region constant of the jet flows."""


_REGIONS = {
    "outside_tracker": lambda fields: outside_tracker(fields["eta"]),
    "no_pileup_id": lambda fields: np.asarray(fields["pt"], np.float64) > PILEUP_ID_PT,
    "no_displaced_track": lambda fields: (~outside_tracker(fields["eta"])
                                          & (_column(fields, "btagDeepFlavB") == 0)),
}


def jet_regions(jets: ak.Array) -> dict[str, np.ndarray]:
    """The regions where a rule of the detector may fix jet targets (training tables'
    ``regions``; at sampling, where the flow's ``region_constants`` hold), per jet of the
    jagged RECO ``jets``: outside the tracker (:func:`outside_tracker`), above
    :data:`PILEUP_ID_PT`, and inside the tracker with ``btagDeepFlavB`` exactly 0 (the
    reference detector's jets without a track of positive impact-parameter significance,
    27% of the central VBF jets, whose charm scores are then fixed too: the detector-v3
    ``jet_flow`` gave the fixed ``btagDeepFlavCvB`` to 36% of them). Regions whose branches
    ``jets`` lacks are left out."""
    available = set(ak.fields(jets))
    columns = {name: flat(jets[name]) for name in ("eta", "pt", "btagDeepFlavB")
               if name in available}
    out = {}
    for name, region in _REGIONS.items():
        with contextlib.suppress(KeyError):
            out[name] = region(columns)
    return out


def with_region_constants(fields: dict[str, np.ndarray], model,
                          names: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """``fields`` with the targets the training data fixed in a region of :func:`jet_regions`
    set there (:attr:`~flashsim.models.artifact.Model.region_constants`; module doc); only
    those among ``names`` if given."""
    for region, fixed in model.region_constants.items():
        inside = _REGIONS[region](fields)
        for name, value in fixed.items():
            if names is None or name in names:
                fields[name] = np.where(inside, value, fields[name])
    return fields


def exact_jet_id(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r"""``{"jetId": ...}`` (bits: 2 tight, 4 tightLepVeto) with the bits the other branches
    fix recomputed (module doc); empty when ``fields`` lacks the sampled ``jetId`` or a
    fraction. Tight (2018): :math:`|\eta| \le 2.6`: NHF < 0.9, NEMF < 0.9, more than one
    constituent, CHF > 0 (a charged hadron, hence a charged constituent);
    :math:`2.6 < |\eta| \le 2.7`: NHF < 0.9, NEMF < 0.99, a charged constituent (CHF +
    CEMF + MUF > 0); beyond: the sampled bit. tightLepVeto: tight, and MUF < 0.8 and CEMF <
    0.8 for :math:`|\eta| \le 2.7`."""
    needed = ("jetId", "eta", "neHEF", "neEmEF", "chHEF", "chEmEF", "muEF", "nConstituents")
    if not all(name in fields for name in needed):
        return {}
    nhf, nemf, chf, cemf, muf = (np.asarray(fields[k], np.float64)
                                 for k in ("neHEF", "neEmEF", "chHEF", "chEmEF", "muEF"))
    abseta = np.abs(np.asarray(fields["eta"], np.float64))
    sampled_tight = (np.asarray(fields["jetId"]).astype(np.int64) & 2) > 0
    tight = np.select(
        [abseta <= 2.6, abseta <= 2.7],
        [(nhf < 0.9) & (nemf < 0.9) & (np.asarray(fields["nConstituents"]) > 1) & (chf > 0),
         (nhf < 0.9) & (nemf < 0.99) & (chf + cemf + muf > 0)],
        sampled_tight)
    lepton_veto = np.where(abseta <= 2.7, (muf < 0.8) & (cemf < 0.8), True)
    return {"jetId": 2 * tight + 4 * (tight & lepton_veto)}


def jet_properties(reco: ak.Array) -> dict:
    """The generated jet branches present in ``reco`` (shared with fake jets): the energy
    fractions as their shares (:func:`energy_fraction_shares`), the others as they are."""
    available = set(ak.fields(reco))
    out = {name: reco[name] for name in (*JET_CONTINUOUS, *JET_DISCRETE) if name in available}
    counts = ak.num(reco.pt)
    if set(ENERGY_FRACTIONS) <= available:
        shares = energy_fraction_shares({name: flat(reco[name]) for name in ENERGY_FRACTIONS})
        out.update({name: ak.unflatten(value, counts) for name, value in shares.items()})
    if "btagDeepFlavB" in available:
        intervals = deepjet_intervals(flat(reco.btagDeepFlavB))
        out.update({name: ak.unflatten(value, counts) for name, value in intervals.items()})
    return out


def deepjet_intervals(score: np.ndarray) -> dict[str, np.ndarray]:
    r"""``btagDeepFlavB`` as :data:`DEEPJET_INTERVAL` and :data:`DEEPJET_POSITION`: the
    interval :math:`k` = the number of :data:`DEEPJET_WORKING_POINTS` :math:`w_j` with
    :math:`w_j < s` (the analyses' cut is :math:`s > w`), and the position
    :math:`(s - e_k)/(e_{k+1} - e_k)` between the edges :math:`e = (0, w_1, w_2, w_3, 1)`. A
    score on a working point is at position 1 of the interval below it; exact 0 and 1 stay
    exact 0 and 1 (spikes of the flows)."""
    s = np.clip(np.asarray(score, np.float64), 0.0, 1.0)
    k = np.searchsorted(_DEEPJET_EDGES[1:-1], s, side="left")
    low, high = _DEEPJET_EDGES[k], _DEEPJET_EDGES[k + 1]
    return {DEEPJET_INTERVAL.name: k.astype(np.float64),
            DEEPJET_POSITION.name: (s - low) / (high - low)}


def deepjet_score(fields: dict[str, np.ndarray]) -> np.ndarray:
    """``btagDeepFlavB`` from its sampled interval and position (:func:`deepjet_intervals`),
    the position clipped to its interval, so the score passes exactly the working points its
    interval says."""
    k = np.clip(np.rint(np.asarray(fields[DEEPJET_INTERVAL.name], np.float64)), 0,
                len(DEEPJET_WORKING_POINTS)).astype(np.int64)
    low, high = _DEEPJET_EDGES[k], _DEEPJET_EDGES[k + 1]
    position = np.clip(np.asarray(fields[DEEPJET_POSITION.name], np.float64), 0.0, 1.0)
    # the analyses cut s > w: the lowest score of an interval above 0 lies just above its edge
    return np.clip(low + position * (high - low), np.where(k > 0, np.nextafter(low, 1.0), low),
                   high)


def energy_fraction_shares(fractions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r"""The stick-breaking shares of the :data:`ENERGY_FRACTIONS`:
    :math:`s_k = f_k / \sum_{j \ge k} f_j`, which is :math:`f_k / (1 - \sum_{j<k} f_j)` for
    fractions that sum to 1 and needs no normalisation of those that do not quite (the
    rounded, then dequantised training values sum to 1 within 1%). An empty remainder gives
    :math:`s_k = 1`, so the last fraction (``muEF``, zero in most jets) is zero wherever a
    share is 1, and outside the tracker, with no charged fractions, every share but the
    photons' is exactly 0 or 1: the spikes and region constants of the flows."""
    f = np.stack([np.asarray(fractions[name], np.float64) for name in ENERGY_FRACTIONS])
    f = np.clip(f, 0.0, None)
    # the remainder as the sum of what is left, not 1 minus what was taken, so that a share
    # whose later fractions are all zero is exactly 1 (a spike the flow keeps exact)
    remainder = np.cumsum(f[::-1], axis=0)[::-1][:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(remainder > 0, np.clip(f[:-1] / remainder, 0.0, 1.0), 1.0)
    return dict(zip(ENERGY_FRACTION_SHARES, shares, strict=True))


def energy_fractions(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r"""The :data:`ENERGY_FRACTIONS` from their sampled shares,
    :math:`f_k = s_k \prod_{j<k} (1 - s_j)` and the last the remainder, so they sum to 1;
    empty when ``fields`` has neither. Models trained before the shares sample the fractions
    themselves: those are normalised to sum 1 (the closest point of the simplex along the
    ray)."""
    if all(name in fields for name in ENERGY_FRACTION_SHARES):
        remainder = np.ones_like(np.asarray(fields[ENERGY_FRACTION_SHARES[0]], np.float64))
        out = {}
        for name, share in zip(ENERGY_FRACTIONS, ENERGY_FRACTION_SHARES, strict=False):
            out[name] = remainder * np.clip(np.asarray(fields[share], np.float64), 0.0, 1.0)
            remainder = remainder - out[name]
        out[ENERGY_FRACTIONS[-1]] = np.clip(remainder, 0.0, 1.0)
        return out
    if all(name in fields for name in ENERGY_FRACTIONS):
        f = np.stack([np.clip(np.asarray(fields[name], np.float64), 0.0, None)
                      for name in ENERGY_FRACTIONS])
        total = f.sum(axis=0)
        f = np.where(total > 0, f / np.where(total > 0, total, 1.0), f)
        return dict(zip(ENERGY_FRACTIONS, f, strict=True))
    return {}


def derived_branches(fields: dict[str, np.ndarray], model) -> dict[str, np.ndarray]:
    """``fields`` of sampled jets (matched or fake) completed: the region constants set
    (:func:`with_region_constants`), the energy fractions from their shares
    (:func:`energy_fractions`), ``btagDeepFlavB`` from its interval and position
    (:func:`deepjet_score`), the branches the training data made functions of others
    (:data:`RELATIONS`, the artifact's ``derived_targets``) and the ``jetId`` bits they fix
    (:func:`exact_jet_id`)."""
    derived = model.derived_targets
    sampled = {name for fixed in model.region_constants.values() for name in fixed} - set(derived)
    fields = with_region_constants(fields, model, sampled)
    fractions = energy_fractions(fields)
    if all(name in fields for name in _DEEPJET_NAMES):
        if DEEPJET_POSITION.name in model.region_constants.get("outside_tracker", {}):
            # no tagger there: the detector's default score (NanoAOD: 0 or -1) lies in the
            # first interval; the classifier sees the GenJet's direction, and a RECO jet
            # beyond the edge may come from a GenJet inside it
            fields[DEEPJET_INTERVAL.name] = np.where(outside_tracker(fields["eta"]), 0,
                                                     fields[DEEPJET_INTERVAL.name])
        fractions["btagDeepFlavB"] = deepjet_score(fields)
    fields = {k: v for k, v in fields.items()
              if k not in ENERGY_FRACTION_SHARES and k not in _DEEPJET_NAMES}
    fields.update(fractions)
    fields.update({name: RELATIONS[name][rule](fields) for name, rule in derived.items()})
    # a region's derived branches: its stored constant, not the rule of its constant inputs
    # (0.6 x the constant CvL of jets without a displaced track rounds to another grid point)
    fields = with_region_constants(fields, model, derived)
    fields.update(exact_jet_id(fields))  # replaces the bits the flow sampled
    return fields


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    """(GenJet, RECO jet) training rows from a NANOAODSIM chunk, paired by ``Jet_genJetIdx``;
    the flow's :data:`ELECTRON_CONTEXT` from the chunk's RECO electrons, and the working
    point of the jet's ``btagDeepFlavB`` (:data:`DEEPJET_INTERVAL`), which
    ``jet_btag_working_point`` learns and the flow is given."""
    reco = chunk["Jet"]
    if "btagDeepFlavB" not in ak.fields(reco):
        raise FlashSimError("the training files have no Jet_btagDeepFlavB, whose working point "
                            "jet_btag_working_point learns and jet_flow is given; train the jet "
                            "models on NANOAODSIM that has it")
    gen = gen_jets(chunk, chunk.get("Electron"))
    weight, key = event_weights(chunk), event_keys(chunk)
    n_gen = ak.num(gen.gen_pt)
    matched = (reco.genJetIdx >= 0) & (reco.genJetIdx < n_gen)
    reconstructed = ak.any(gen.index[:, :, None] == reco.genJetIdx[:, None, :], axis=2)
    w_gen, k_gen = ak.broadcast_arrays(weight, gen.gen_pt)[0], ak.broadcast_arrays(key, gen.gen_pt)[0]
    efficiency = TrainingTable(
        {c.name: flat(gen[c.name]) for c in EFFICIENCY_CONTEXT}, {"reconstructed": flat(reconstructed)},
        flat(w_gen), np.asarray(ak.flatten(k_gen), dtype=np.uint64))
    reco = reco[matched]
    g = gen[reco.genJetIdx]
    targets = {"pt_ratio": reco.pt / g.gen_pt, "deta": reco.eta - g.gen_eta,
               "dphi": delta_phi(reco.phi, g.gen_phi), "mass": reco.mass,
               **jet_properties(reco)}
    w_reco, k_reco = ak.broadcast_arrays(weight, reco.pt)[0], ak.broadcast_arrays(key, reco.pt)[0]
    dx = ak.sum(reco.pt * np.cos(reco.phi) - g.gen_pt * np.cos(g.gen_phi), axis=1)
    dy = ak.sum(reco.pt * np.sin(reco.phi) - g.gen_pt * np.sin(g.gen_phi), axis=1)
    context = {c.name: flat(g[c.name]) for c in WORKING_POINT_CONTEXT}
    w_reco, k_reco = flat(w_reco), np.asarray(ak.flatten(k_reco), dtype=np.uint64)
    interval = flat(targets[DEEPJET_INTERVAL.name])
    working_point = TrainingTable(context, {DEEPJET_INTERVAL.name: interval}, w_reco, k_reco)
    flow = TrainingTable(
        {**context, DEEPJET_INTERVAL.name: interval}, {k: flat(v) for k, v in targets.items()},
        w_reco, k_reco, {"delta": (np.asarray(dx, np.float64), np.asarray(dy, np.float64))},
        jet_regions(reco))
    return {"jet_efficiency": efficiency, "jet_btag_working_point": working_point,
            "jet_flow": flow}


def simulate(gen: dict, models, rng: np.random.Generator,
             electrons: ak.Array | None = None) -> ak.Array:
    """Flash-simulated RECO jets matched to GenJets, ``N * var * {Jet fields}`` (unordered),
    given the event's simulated ``electrons`` (``None``: none; :data:`ELECTRON_CONTEXT`).

    ``genJetIdx`` points into ``gen["GenJet"]``; ordering and the muon cross-references are
    done by :func:`flashsim.objects.crossref.merge_jets` and ``link``.
    """
    jets = gen_jets(gen, electrons)
    columns = {name: flat(jets[name]) for name in dict.fromkeys(
        c.name for c in (*EFFICIENCY_CONTEXT, *WORKING_POINT_CONTEXT))}
    p = models["jet_efficiency"].probability(columns)
    keep = rng.uniform(size=len(p)) < p
    counts = np.asarray(ak.sum(ak.unflatten(keep, ak.num(jets)), axis=1))
    kept = ak.flatten(jets)[keep]
    g = {k: v[keep] for k, v in columns.items()}
    working_point = models["jet_btag_working_point"].probability(g)
    g[DEEPJET_INTERVAL.name] = draw_counts(working_point, rng.uniform(size=len(working_point)))
    out = models["jet_flow"].sample(g, rng)
    fields = {
        "pt": g["gen_pt"] * out.pop("pt_ratio"), "eta": g["gen_eta"] + out.pop("deta"),
        "phi": delta_phi(g["gen_phi"] + out.pop("dphi"), 0.0), **out,
        "hadronFlavour": np.asarray(kept.hadronFlavour), "partonFlavour": np.asarray(kept.partonFlavour),
        "genJetIdx": np.asarray(kept.index), DEEPJET_INTERVAL.name: g[DEEPJET_INTERVAL.name],
    }
    fields = derived_branches(fields, models["jet_flow"])
    return ak.unflatten(ak.zip(typed("Jet", fields)), counts)
