r"""Muons: GEN muon -> (efficiency) -> RECO muon, the whole story in one module.

GEN definition (the same in training and simulation): ``GenPart`` with ``status == 1``,
``|pdgId| == 13``, :math:`p_T > 3` GeV and :math:`|\eta| < 2.5`.

Models (FlashSim approach, Vaselli et al. 2024, arXiv:2402.13047):

* ``muon_efficiency`` — classifier :math:`P(\text{reconstructed} \mid c)`; a GEN muon is
  reconstructed when a RECO muon has ``Muon_genPartIdx`` pointing to it;
* ``muon_flow`` — conditional NSF for the RECO muon of a reconstructed GEN muon.

Conditioning :math:`c`: GEN :math:`p_T, \eta, \phi`, charge; ``statusFlags`` bits
(isPrompt, isTauDecayProduct, isDirectHadronDecayProduct, fromHardProcess); whether the
mother is a b or c hadron; the nearest GenJet (:math:`\Delta R`, :math:`p_T` ratio within
0.4, its b/c hadron flavour) as the GEN environment; ``Pileup_nTrueInt``.

Targets: :math:`p_T^{reco}/p_T^{gen}` (log), :math:`\Delta\eta`, :math:`\Delta\phi`, charge
flip :math:`q^{reco} q^{gen} \in \{-1, 1\}`, :math:`\sigma_{p_T}/p_T`, impact parameters,
isolations, MVA scores, ID booleans/working points, station/layer counts. Derived, not
generated: ``pdgId`` (:math:`-13 q`), ``mass``, ``genPartIdx``, ``genPartFlav`` (from the
GEN flags), ``jetIdx`` (:mod:`flashsim.objects.crossref`), and the working points CMS
computes from other branches (``pfIsoId``, ``miniIsoId``, ``tkIsoId``, ``mvaId``,
``softMvaId``, ``mediumPromptId``: :mod:`flashsim.nanoaod.muon_working_points`).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.nanoaod.muon_working_points import derived_ids
from flashsim.objects.common import (
    discrete,
    event_keys,
    event_weights,
    flat,
    nearest,
    typed,
)
from flashsim.pdg import BOTTOM, CHARM, has_heavy_quark

__all__ = [
    "MODELS",
    "MUON_MASS",
    "TRAINING_NAMES",
    "gen_muons",
    "simulate",
    "training_tables",
]

MUON_MASS = 0.10566
TRAINING_NAMES = ["GenPart", "GenJet", "Pileup", "Muon", "genWeight", "run", "luminosityBlock",
                  "event"]
_FLAG_BITS = {"is_prompt": 0, "is_tau_decay": 2, "is_hadron_decay": 6, "from_hard": 8}

CONTEXT = (
    ColumnSpec("gen_pt", transform="log"),
    ColumnSpec("gen_eta"),
    ColumnSpec("gen_phi"),
    ColumnSpec("gen_charge"),
    *(ColumnSpec(name) for name in _FLAG_BITS),
    ColumnSpec("mother_b"),
    ColumnSpec("mother_c"),
    ColumnSpec("jet_dr"),
    ColumnSpec("jet_ptratio", transform="log", offset=1.0),
    ColumnSpec("jet_b"),
    ColumnSpec("jet_c"),
    ColumnSpec("pileup"),
)

_CONTINUOUS = {
    "dxy": "symlog", "dz": "symlog", "dxyErr": "log", "dzErr": "log", "ip3d": "log",
    "sip3d": "log", "pfRelIso03_all": "log", "pfRelIso03_chg": "log", "pfRelIso04_all": "log",
    "miniPFRelIso_all": "log", "miniPFRelIso_chg": "log", "tkRelIso": "log",
    "jetRelIso": "symlog", "jetPtRelv2": "symlog", "segmentComp": "none", "softMva": "none",
    "mvaLowPt": "none", "mvaTTH": "none", "tunepRelPt": "log",
}
#: Working-point bits that NanoAOD computes from other branches (pfIsoId, mvaId, …) are
#: not sampled: :func:`flashsim.nanoaod.muon_working_points.derived_ids` computes them from
#: the sampled isolation, MVA and impact-parameter values, so they always agree.
_DISCRETE = ("isGlobal", "isTracker", "isPFcand", "looseId", "mediumId", "tightId", "softId",
             "inTimeMuon", "triggerIdLoose", "highPtId", "multiIsoId", "nStations",
             "nTrackerLayers", "tightCharge")
#: Muon branches computed from the generated targets (not fields of the flow).
_DERIVED_FROM = {"pt": "pt_ratio", "eta": "deta", "phi": "dphi", "charge": "charge_flip",
                 "ptErr": "ptErr_rel"}

TARGETS = (
    ColumnSpec("pt_ratio", transform="log"),
    ColumnSpec("deta", spikes=False),
    ColumnSpec("dphi", spikes=False),
    ColumnSpec("charge_flip", "discrete", values=(-1.0, 1.0)),
    ColumnSpec("ptErr_rel", transform="log"),
    *(ColumnSpec(name, transform=t) for name, t in _CONTINUOUS.items()),
    *(discrete("Muon", name) for name in _DISCRETE),
)

MODELS = {
    "muon_efficiency": ModelSpec("muon_efficiency", "muon", "classifier", CONTEXT),
    "muon_flow": ModelSpec("muon_flow", "muon", "flow", CONTEXT, TARGETS),
}


def _hadron_flavour(pdg_id):
    """5 for b hadrons, 4 for c hadrons, else 0 (:func:`flashsim.pdg.has_heavy_quark`)."""
    return ak.where(has_heavy_quark(pdg_id, BOTTOM), 5,
                    ak.where(has_heavy_quark(pdg_id, CHARM), 4, 0))


def gen_muons(gen: dict) -> ak.Array:
    """The GEN muons (definition above) with every context column and ``index`` into GenPart."""
    part = gen["GenPart"]
    index = ak.local_index(part.pt, axis=1)
    select = (part.status == 1) & (abs(part.pdgId) == 13) & (part.pt > 3) & (abs(part.eta) < 2.5)
    mu, index = part[select], index[select]
    mother = mu.genPartIdxMother
    mother_flavour = _hadron_flavour(ak.fill_none(part.pdgId[ak.mask(mother, mother >= 0)], 0))
    jets = gen["GenJet"]
    dr, jet_index = nearest(mu.eta, mu.phi, jets.eta, jets.phi)
    jet_index = ak.mask(jet_index, dr < 0.4)
    jet_pt = ak.fill_none(jets.pt[jet_index], 0.0)
    jet_flavour = ak.fill_none(jets.hadronFlavour[jet_index], 0)
    pileup = ak.broadcast_arrays(np.asarray(gen["Pileup"].nTrueInt, np.float64), mu.pt)[0]
    fields = {
        "gen_pt": mu.pt, "gen_eta": mu.eta, "gen_phi": mu.phi,
        "gen_charge": -np.sign(mu.pdgId),
        **{name: (mu.statusFlags >> bit) & 1 for name, bit in _FLAG_BITS.items()},
        "mother_b": 1 * (mother_flavour == 5), "mother_c": 1 * (mother_flavour == 4),
        "jet_dr": np.minimum(dr, 1.0), "jet_ptratio": jet_pt / mu.pt,
        "jet_b": 1 * (jet_flavour == 5), "jet_c": 1 * (jet_flavour == 4),
        "pileup": pileup, "index": index,
    }
    return ak.zip(fields)


def _gen_flav(mu: ak.Array):
    """``Muon_genPartFlav`` of a matched muon from the GEN flags (1, 15, 5, 4 or 3)."""
    return ak.where(mu.is_prompt == 1, 1, ak.where(mu.is_tau_decay == 1, 15,
                    ak.where(mu.mother_b == 1, 5, ak.where(mu.mother_c == 1, 4, 3))))


def _match(reco_idx, gen_idx):
    """For every RECO object, whether its gen index is a selected GEN object, and where."""
    same = reco_idx[:, :, None] == gen_idx[:, None, :]
    return ak.any(same, axis=2), ak.fill_none(ak.argmax(same, axis=2), 0)


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    """(GEN, RECO) training rows from a NANOAODSIM chunk, paired by ``Muon_genPartIdx``."""
    gen = gen_muons(chunk)
    reco = chunk["Muon"]
    weight, key = event_weights(chunk), event_keys(chunk)
    reconstructed = ak.any(gen.index[:, :, None] == reco.genPartIdx[:, None, :], axis=2)
    per_gen = ak.broadcast_arrays(weight, gen.gen_pt)[0], ak.broadcast_arrays(key, gen.gen_pt)[0]
    efficiency = TrainingTable(
        {c.name: flat(gen[c.name]) for c in CONTEXT}, {"reconstructed": flat(reconstructed)},
        flat(per_gen[0]), np.asarray(ak.flatten(per_gen[1]), dtype=np.uint64))

    matched, position = _match(reco.genPartIdx, gen.index)
    reco, position = reco[matched], position[matched]
    g = gen[position]
    available = set(ak.fields(reco))
    targets = {"pt_ratio": reco.pt / g.gen_pt, "deta": reco.eta - g.gen_eta,
               "dphi": delta_phi(reco.phi, g.gen_phi), "charge_flip": reco.charge * g.gen_charge}
    if "ptErr" in available:
        targets["ptErr_rel"] = reco.ptErr / reco.pt
    targets.update({name: reco[name] for name in (*_CONTINUOUS, *_DISCRETE) if name in available})
    per_reco = ak.broadcast_arrays(weight, reco.pt)[0], ak.broadcast_arrays(key, reco.pt)[0]
    flow = TrainingTable(
        {c.name: flat(g[c.name]) for c in CONTEXT}, {k: flat(v) for k, v in targets.items()},
        flat(per_reco[0]), np.asarray(ak.flatten(per_reco[1]), dtype=np.uint64),
        {"delta": _delta(reco, g)})
    return {"muon_efficiency": efficiency, "muon_flow": flow}


def _delta(reco, g) -> tuple[np.ndarray, np.ndarray]:
    """Per-event :math:`\\sum (\\vec p_T^{reco} - \\vec p_T^{gen})` over the matched muons."""
    dx = ak.sum(reco.pt * np.cos(reco.phi) - g.gen_pt * np.cos(g.gen_phi), axis=1)
    dy = ak.sum(reco.pt * np.sin(reco.phi) - g.gen_pt * np.sin(g.gen_phi), axis=1)
    return np.asarray(dx, dtype=np.float64), np.asarray(dy, dtype=np.float64)


def simulate(gen: dict, models, rng: np.random.Generator) -> ak.Array:
    """Flash-simulated RECO muons, ``N * var * {Muon fields}``, pT-ordered.

    ``genPartIdx`` points into ``gen["GenPart"]``; ``jetIdx`` is left for
    :func:`flashsim.objects.crossref.link`.
    """
    mu = gen_muons(gen)
    columns = {c.name: flat(mu[c.name]) for c in CONTEXT}
    p = models["muon_efficiency"].probability(columns)
    keep = rng.uniform(size=len(p)) < p
    counts = np.asarray(ak.sum(ak.unflatten(keep, ak.num(mu)), axis=1))
    mu = ak.unflatten(ak.flatten(mu)[keep], counts)
    g = {k: v[keep] for k, v in columns.items()}
    out = models["muon_flow"].sample(g, rng)
    pt = g["gen_pt"] * out.pop("pt_ratio")
    charge = out.pop("charge_flip") * g["gen_charge"]
    fields = {
        "pt": pt, "eta": g["gen_eta"] + out.pop("deta"),
        "phi": delta_phi(g["gen_phi"] + out.pop("dphi"), 0.0),
        "mass": np.full(len(pt), MUON_MASS), "charge": charge, "pdgId": -13 * charge,
    }
    if "ptErr_rel" in out:
        fields["ptErr"] = out.pop("ptErr_rel") * pt
    fields.update(out)
    fields.update(derived_ids(fields))  # replaces the sampled bits of older artifacts
    fields["genPartIdx"] = flat(mu.index)
    fields["genPartFlav"] = flat(_gen_flav(mu))
    record = ak.unflatten(ak.zip(typed("Muon", fields)), counts)
    return record[ak.argsort(record.pt, axis=1, ascending=False)]
