r"""Electrons: GEN electron -> (efficiency) -> RECO electron, and electrons from jets.

GEN electrons (:mod:`flashsim.objects.lepton`, the muon definition with
:math:`|\text{pdgId}| = 11`): status 1, :math:`p_T > 3` GeV, :math:`|\eta| < 2.5`, prompt or
not — electrons of heavy-flavour decays are GEN electrons too.

Models (FlashSim approach, Vaselli et al. 2024, arXiv:2402.13047, as for muons):

* ``electron_efficiency`` — classifier :math:`P(\text{reconstructed} \mid c)`; a GEN
  electron is reconstructed when a RECO electron's ``genPartIdx`` points to it;
* ``electron_flow`` — conditional NSF of that RECO electron given :math:`c` (the lepton
  context: GEN kinematics, origin flags, the nearest GenJet, pileup);
* ``fake_electron_multiplicity`` — per GenJet, the number (0, 1, :math:`\ge 2`) of RECO
  electrons without a GEN electron within :math:`\Delta R < 0.4` of it: hadrons and photon
  conversions passing the loose GsfElectron preselection, electrons of GenPart particles
  outside the GEN selection;
* ``fake_electron_flow`` — their properties given the GenJet context of
  :mod:`flashsim.objects.jet` and their count in the jet; :math:`p_T` relative to the GenJet.
  Both also see the jet's leading GEN photon (:data:`flashsim.objects.jet.PHOTON_CONTEXT`):
  a conversion is an electron near that photon, matched to it (``genPartFlav`` 22);
* ``pileup_electron_multiplicity`` and ``pileup_electron_flow`` — per event, the RECO
  electrons with neither a GEN electron nor a GenJet near them (at pileup 30 more than a third
  of the non-GEN electrons of Drell-Yan: almost all from pileup vertices, mostly soft), given
  the event's pileup and GEN activity (:func:`flashsim.objects.fake_jet.event_activity`),
  as fake jets are.

Targets: :math:`p_T` ratio, :math:`\Delta\eta`, :math:`\Delta\phi`, the charge flip (fakes:
the charge, and :math:`\eta` as its position in the acceptance,
:data:`~flashsim.objects.fake_lepton.ETA_POSITION`), and the electron branches that are
measurements (:data:`CONTINUOUS`, :data:`DISCRETE`): impact parameters, isolations, shower
shape, H/E, E-p, energy error (relative), the five MVA outputs (four IDs, ``mvaTTH``) as :math:`\operatorname{atanh}` (the raw
BDT scale on which the working points cut), hit and conversion information, the cut-based V1 level,
and the :data:`~flashsim.nanoaod.electron_working_points.HIDDEN` outcomes of cuts on
quantities NanoAOD does not store.

Derived, not generated: ``pdgId`` (:math:`-11q`), ``genPartIdx`` (the source GEN electron;
for electrons from jets NanoAOD's MC matching to status-1 electrons and photons,
:func:`flashsim.nanoaod.mc_match.gen_match`), ``genPartFlav``, ``jetIdx``
(:mod:`flashsim.objects.crossref`), ``photonIdx`` = -1 (no Photon collection),
``cleanmask`` = 1, ``ip3d`` from ``dxy``, ``dz`` and :math:`\eta`
(:func:`~flashsim.objects.lepton.impact_parameter_3d`; exact, so not sampled; the values of
models trained before, which sample it, are overwritten), ``sip3d`` from ``ip3d``, the
sampled errors and the sampled ratio of the 3D error to the track's
(:func:`~flashsim.objects.lepton.ip3d_error_ratio`), and every working-point branch NanoAOD computes from the others
(``cutBased``, both bitmaps, ``cutBased_HEEP``, the twelve MVA working points, the non-PF
isolations zeroed below 35 GeV): :func:`flashsim.nanoaod.electron_working_points.derived_ids`,
given the event's simulated ``fixedGridRhoFastjetAll``. NanoAOD keeps electrons above
:data:`PT_MIN`, so sampled electrons below it are not stored.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.nanoaod.electron_working_points import HIDDEN, derived_ids, hidden_from_bitmaps
from flashsim.objects.common import discrete
from flashsim.objects.fake_lepton import fake_models, fake_tables, joined, pt_ordered, sample_fakes
from flashsim.objects.lepton import (
    CONTEXT,
    flow_targets,
    gen_leptons,
    impact_parameter_3d,
    ip3d_error_ratio,
    kinematic_targets,
    neutral_isolation_targets,
    row_table,
    significance_3d,
    simulate_matched,
    training_pairs,
    with_total_isolations,
)

__all__ = [
    "CONTINUOUS",
    "DISCRETE",
    "MAX_FAKES_PER_JET",
    "MODELS",
    "PT_MIN",
    "TRAINING_NAMES",
    "gen_electrons",
    "mva_score",
    "simulate",
    "training_tables",
]

PT_MIN = 5.0
"""NanoAOD stores slimmedElectrons with pT > 5 GeV."""
MAX_FAKES_PER_JET = 2
MAX_PILEUP_ELECTRONS = 3
TRAINING_NAMES = ["GenPart", "GenJet", "GenMET", "Pileup", "Electron", "genWeight", "run",
                  "luminosityBlock", "event"]

#: generated electron branches with their transform before the flow
CONTINUOUS = {
    "deltaEtaSC": "none", "dxy": "symlog", "dz": "symlog", "dxyErr": "log", "dzErr": "log",
    "eCorr": "log", "eInvMinusPInv": "symlog",
    "hoe": "log", "sieie": "log", "r9": "none", "mass": "symlog",
    "pfRelIso03_neutral": "log", "pfRelIso03_chg": "log", "miniPFRelIso_neutral": "log",
    "miniPFRelIso_chg": "log", "jetRelIso": "symlog", "jetPtRelv2": "symlog",
    "dr03TkSumPt": "log", "dr03TkSumPtHEEP": "log", "dr03EcalRecHitSumEt": "log",
    "dr03HcalDepth1TowerSumEt": "log",
}
DISCRETE = ("convVeto", "isPFcand", "lostHits", "seedGain", "tightCharge", "cutBased_Fall17_V1")
#: BDT outputs (TMVA's gradient boosting gives tanh of the sum of its trees), sampled as their
#: atanh: the additive scale on which their working points cut. mvaTTH on its own [-1, 1]
#: scale, where 77% of the electrons of held-out VBF H->mumu lie within 0.001 of -1, was the
#: branch whose removal cost the electron classifier most: flash had 931 electrons off that
#: end against 768 (on the atanh scale 774).
_MVA = ("mvaFall17V2Iso", "mvaFall17V2noIso", "mvaFall17V1Iso", "mvaFall17V1noIso", "mvaTTH")
_RAW_CLIP = 1.0 - 1e-7

PROPERTIES = (
    ColumnSpec("energyErr_rel", transform="log"),
    ColumnSpec("ip3d_error_ratio", transform="log"),
    *(ColumnSpec(f"{name}_raw") for name in _MVA),
    *(ColumnSpec(name, transform=t) for name, t in CONTINUOUS.items()),
    *(discrete("Electron", name) for name in DISCRETE),
    *(ColumnSpec(name, "discrete", values=(0.0, 1.0, 2.0, 3.0, 4.0) if name.startswith("vid_")
                 else (0.0, 1.0)) for name in HIDDEN),
)


TARGETS = flow_targets(True, "charge_flip", PROPERTIES)

MODELS = {
    "electron_efficiency": ModelSpec("electron_efficiency", "electron", "classifier", CONTEXT),
    "electron_flow": ModelSpec("electron_flow", "electron", "flow", CONTEXT, TARGETS),
    **fake_models("electron", "electron", PROPERTIES, MAX_FAKES_PER_JET, MAX_PILEUP_ELECTRONS),
}


def gen_electrons(gen: dict) -> ak.Array:
    """The GEN electrons (:func:`flashsim.objects.lepton.gen_leptons`) with their context."""
    return gen_leptons(gen, 11)


def _properties(reco: ak.Array) -> dict:
    """The generated non-kinematic targets present in ``reco`` (module doc)."""
    available = set(ak.fields(reco))
    out = {name: reco[name] for name in (*CONTINUOUS, *DISCRETE) if name in available}
    if "energyErr" in available:
        out["energyErr_rel"] = reco.energyErr / (reco.pt * np.cosh(reco.eta))
    if {"ip3d", "sip3d", "dxyErr", "dzErr"} <= available:
        out["ip3d_error_ratio"] = ip3d_error_ratio(reco)
    for name in _MVA:
        if name in available:
            out[f"{name}_raw"] = np.arctanh(np.maximum(np.minimum(reco[name], _RAW_CLIP), -_RAW_CLIP))
    out.update(neutral_isolation_targets(reco))
    out.update(hidden_from_bitmaps(reco))
    return out


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    r"""Training rows from a NANOAODSIM chunk: GEN-matched electrons by ``genPartIdx``, the
    others by the nearest GenJet within :math:`\Delta R < 0.4`, the rest per event (module
    doc)."""
    efficiency, reco, g, others = training_pairs(chunk, gen_electrons(chunk), chunk["Electron"])
    flow = row_table(chunk, {c.name: g[c.name] for c in CONTEXT},
                     {**kinematic_targets(reco, g), **_properties(reco)}, reco.pt)

    return {"electron_efficiency": efficiency, "electron_flow": flow,
            **fake_tables(chunk, "electron", others, _properties, MAX_FAKES_PER_JET,
                          MAX_PILEUP_ELECTRONS)}


def mva_score(raw: np.ndarray) -> np.ndarray:
    r"""An MVA output from its sampled :math:`\operatorname{atanh}`: :math:`\tanh`, except that
    the training clip :math:`\pm\operatorname{atanh}(1 - 10^{-7})`, which holds every
    :math:`|x| \ge 1 - 10^{-7}`, gives :math:`\pm 1`. Almost all of those are exactly
    :math:`\pm 1` in NanoAOD (reference-detector ttbar: 32% of ``mvaFall17V2noIso`` values
    against 1.8% in :math:`[1 - 10^{-7}, 1)`; 49% of the electrons of VBF H→μμ, nearly all
    fakes), and :math:`\tanh` of the clip would put them all just inside, apart from every
    full-simulation value (a classifier on that branch alone: AUC 0.94)."""
    score = np.tanh(np.asarray(raw, np.float64))
    # the clip as training saw it: applied to float32 branches, so in float32
    return np.where(np.abs(score) >= float(np.float32(_RAW_CLIP)) - 1e-8, np.sign(score), score)


def _fields(out: dict) -> dict:
    """Sampled targets -> Electron branches (energy error, MVA scores, pdgId, ip3d, sip3d)."""
    fields = with_total_isolations(dict(out))
    if "dxy" in fields and "dz" in fields:
        fields["ip3d"] = impact_parameter_3d(fields["dxy"], fields["dz"], fields["eta"])
    if "ip3d_error_ratio" in fields:
        fields["sip3d"] = significance_3d(fields, fields.pop("ip3d_error_ratio"))
    if "energyErr_rel" in fields:
        fields["energyErr"] = fields.pop("energyErr_rel") * fields["pt"] * np.cosh(fields["eta"])
    for name in _MVA:
        if f"{name}_raw" in fields:
            fields[name] = mva_score(fields.pop(f"{name}_raw"))
    fields["pdgId"] = -11 * fields["charge"]
    return fields


def simulate(gen: dict, models, rng: np.random.Generator, rho: np.ndarray) -> ak.Array:
    """Flash-simulated RECO electrons, ``N * var * {Electron fields}``, pT-ordered.

    ``rho``: the event's simulated ``fixedGridRhoFastjetAll`` (the working points use it).
    ``genPartIdx`` points into ``gen["GenPart"]``; ``jetIdx`` is left for
    :func:`flashsim.objects.crossref.link`.
    """
    n_events = len(gen["event"])
    matched, matched_event = simulate_matched(gen_electrons(gen), models["electron_efficiency"],
                                              models["electron_flow"], rng, _fields)
    fakes, fake_event = sample_fakes(gen, "electron", models, rng, matched_event,
                                     matched["genPartIdx"], (11, 22))
    fakes = _fields(fakes)
    fields = joined(dict(sorted(matched.items())), fakes)
    event = np.concatenate([matched_event, fake_event])
    rho = np.asarray(rho, np.float64)
    fields.update(derived_ids(fields, rho[event]))
    fields["photonIdx"] = np.full(len(event), -1)
    fields["cleanmask"] = np.ones(len(event))
    fields = {k: v for k, v in fields.items() if k not in HIDDEN}
    return pt_ordered("Electron", fields, event, fields["pt"] > PT_MIN, n_events)
