r"""Event-level RECO quantities: MET and the pileup observables (PV counts, rho).

MET (``met_flow``). RECO MET is minus the vector sum of reconstructed objects, so to
first order :math:`\vec m_0 = \vec{\text{GenMET}} + \vec p_T^{\,\text{lost }\mu} -
\sum_{\text{objects}} (\vec p_T^{\,reco} - \vec p_T^{\,gen})`, the sum running over the
simulated matched muons and jets and the fake jets (whose GEN momentum is zero).
:math:`\vec p_T^{\,\text{lost }\mu}` (:func:`invisible_muons`) is the momentum of the GEN
muons that no RECO muon took, outside :math:`2.4 < |\eta| < 2.5`: GenMET holds the
neutrinos only, and a muon that is neither tracked nor identified leaves the detector
unseen (a minimum-ionising deposit of a few GeV at most). Between the muon system's edge
(2.4) and the tracker's (2.5) a muon is tracked but not identified, so particle flow keeps
it as a charged hadron with its track momentum. In the reference detector's VBF H→μμ
(50 000 events), 21% of the events lose more than 5 GeV of muon momentum this way, and
MET − GenMET follows it with slope 1.006; a model without it gave those events the MET
of events that kept their muons (median 33 GeV against 50 in the full simulation).
The flow generates the residual
:math:`\vec r = \vec{\text{MET}} - \vec m_0` (x, y) together with ``sumEt`` and the
covariance ``covXX/XY/YY`` (and the unclustered-energy shifts if the training files have
them), conditioned on :math:`\vec m_0`, :math:`|\vec m_0|`,
GenMET, GEN :math:`H_T`, the GenJet count, :math:`|\sum \Delta\vec p_T|`,
:math:`|\vec p_T^{\,\text{lost }\mu}|` and ``Pileup_nTrueInt``. In training
:math:`\vec m_0` uses the true RECO objects of the file; in simulation the flash ones,
so MET stays correlated with mismeasured and lost objects.

``significance`` is not sampled: it is :math:`\vec{\text{MET}}^T C^{-1} \vec{\text{MET}}`
with :math:`C` the covariance (:func:`exact_significance`), as CMS defines it (METSignificance;
``nano_dy.root``: largest relative difference 2e-3, NanoAOD float precision) and the
reference detector computes it. ``covXY`` is not sampled either: the flow samples the
correlation :math:`\rho = C_{xy} / \sqrt{C_{xx} C_{yy}}` (``cov_rho``), which sampling
keeps inside its training range (reference detector: :math:`|\rho| \le 0.63`), and
:math:`C_{xy} = \rho \sqrt{C_{xx} C_{yy}}`. Sampled as ``covXY`` (symlog) it reached
:math:`|\rho|` = 0.999 in 5 of 20 000 held-out VBF events, where :math:`C` is nearly singular
and the significance of one event came out 5096 (full simulation: at most 187).
:func:`exact_significance` still keeps :math:`|\rho| \le 0.999`, so that :math:`C` is
positive definite, as every real covariance is.

Pileup observables (``pv_flow``): ``PV_npvs``, ``PV_npvsGood`` (integers, dequantised),
the main vertex (``PV_x/y/z``, ``ndof``, ``chi2``, ``score``) and ``fixedGridRhoFastjetAll``
from one flow given ``Pileup_nTrueInt``, ``Pileup_nPU``, GEN :math:`H_T` and the hard
interaction's activity inside the tracker (:func:`tracker_activity`). The main vertex is
the hard interaction's: its ``ndof`` = :math:`2\sum_i w_i - 3` counts its tracks and its
``score`` is :math:`\sum p_T^2` over them, so both follow what the hard process puts into
:math:`|\eta| < 2.5`, not its total :math:`H_T`. Given :math:`H_T` alone, the flow trained on
Drell-Yan, tt̄ and gluon-fusion events gave the held-out VBF H→μμ events (whose tag jets
are forward, with a colour-singlet exchange and little activity between them) a mean
``ndof`` of 110 against 78, and half the ``score`` (its muons' tracks), classifier AUC 0.815.
Given the tracker activity: the ``score`` right (mean 13 300 against 13 600), AUC 0.676, and
``ndof`` 90: at the same hadronic :math:`H_T` in the tracker a VBF event has about 10 fewer
ndof than a Drell-Yan event (its colour-singlet exchange leaves a rapidity gap), which no
GenJet above 10 GeV shows. Electroweak dijets (t-channel W/Z exchange, a colour singlet too)
among the training events did not teach it (``ndof`` 89.5): at the same GEN context the flow
cannot tell them from Drell-Yan.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.objects import fake_jet, jet, muon
from flashsim.objects.common import (
    event_keys,
    event_weights,
    typed,
    vector_sum,
)

__all__ = ["MODELS", "TRAINING_NAMES", "exact_significance", "invisible_muons", "simulate_met",
           "simulate_pv", "tracker_activity", "training_tables"]

TRAINING_NAMES = ["GenPart", "GenJet", "GenMET", "Pileup", "Muon", "Jet", "MET", "PV",
                  "fixedGridRhoFastjetAll", "genWeight", "run", "luminosityBlock", "event"]

MET_CONTEXT = (
    ColumnSpec("m0_x", transform="symlog"),
    ColumnSpec("m0_y", transform="symlog"),
    ColumnSpec("m0_pt", transform="log", offset=1.0),
    ColumnSpec("genmet_pt", transform="log", offset=1.0),
    ColumnSpec("gen_ht", transform="log", offset=1.0),
    ColumnSpec("n_genjet"),
    ColumnSpec("delta_pt", transform="log", offset=1.0),
    ColumnSpec("invisible_muon_pt", transform="log", offset=1.0),
    ColumnSpec("pileup"),
)
# |eta| band where a muon is tracked (tracker to 2.5) but not identified (muon system to 2.4)
TRACKED_ONLY_ETA = (2.4, 2.5)
_MET_BRANCHES = {"sumEt": "log", "covXX": "log", "covYY": "log",
                 "MetUnclustEnUpDeltaX": "symlog", "MetUnclustEnUpDeltaY": "symlog"}
_MAX_CORRELATION = 0.999
MET_TARGETS = (
    ColumnSpec("res_x", transform="symlog", spikes=False),
    ColumnSpec("res_y", transform="symlog", spikes=False),
    *(ColumnSpec(name, transform=t) for name, t in _MET_BRANCHES.items()),
    ColumnSpec("cov_rho"),
)

PV_CONTEXT = (
    ColumnSpec("pileup"),
    ColumnSpec("n_pu"),
    ColumnSpec("gen_ht", transform="log", offset=1.0),
    ColumnSpec("tracker_genjets"),
    ColumnSpec("tracker_hadron_ht", transform="log", offset=1.0),
    ColumnSpec("tracker_hadron_pt2", transform="log", offset=1.0),
    ColumnSpec("tracker_lepton_pt2", transform="log", offset=1.0),
)
# Position and fit quality of the main vertex are generated too: analyses cut on them and
# coffea's NanoAOD schema requires PV_x/y/z for its vertex behaviour.
PV_BRANCHES = ("npvs", "npvsGood", "x", "y", "z", "ndof", "chi2", "score")
PV_TARGETS = (
    ColumnSpec("npvs", "discrete"),
    ColumnSpec("npvsGood", "discrete"),
    ColumnSpec("x"),
    ColumnSpec("y"),
    ColumnSpec("z"),
    ColumnSpec("ndof"),
    ColumnSpec("chi2", transform="log", offset=1.0),
    ColumnSpec("score", transform="log", offset=1.0),
    ColumnSpec("fixedGridRhoFastjetAll"),
)

MODELS = {
    "met_flow": ModelSpec("met_flow", "met", "flow", MET_CONTEXT, MET_TARGETS),
    "pv_flow": ModelSpec("pv_flow", "met", "flow", PV_CONTEXT, PV_TARGETS,
                         required=("fixedGridRhoFastjetAll",)),
}


def invisible_muons(gen_part: ak.Array, muon_gen_idx: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per-event :math:`(p_x, p_y)` sum of the status-1 GEN muons that no RECO muon's
    ``genPartIdx`` points at, outside :data:`TRACKED_ONLY_ETA` (module doc)."""
    counts = ak.to_numpy(ak.num(gen_part.pdgId))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    valid = (muon_gen_idx >= 0) & (muon_gen_idx < counts)
    taken = np.zeros(int(counts.sum()), bool)
    taken[ak.to_numpy(ak.flatten((muon_gen_idx + starts)[valid]))] = True
    eta = abs(gen_part.eta)
    lost = ((abs(gen_part.pdgId) == 13) & (gen_part.status == 1)
            & ~ak.unflatten(taken, counts)
            & ~((eta > TRACKED_ONLY_ETA[0]) & (eta < TRACKED_ONLY_ETA[1])))
    return vector_sum(gen_part.pt[lost], gen_part.phi[lost])


def _met_context(gen: dict, delta: tuple[np.ndarray, np.ndarray],
                 invisible: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    genmet = gen["GenMET"]
    gpt, gphi = np.asarray(genmet.pt, np.float64), np.asarray(genmet.phi, np.float64)
    m0_x = gpt * np.cos(gphi) + invisible[0] - delta[0]
    m0_y = gpt * np.sin(gphi) + invisible[1] - delta[1]
    activity = fake_jet.event_activity(gen)
    return {"m0_x": m0_x, "m0_y": m0_y, "m0_pt": np.hypot(m0_x, m0_y), "genmet_pt": gpt,
            "gen_ht": activity["gen_ht"], "n_genjet": activity["n_genjet"],
            "delta_pt": np.hypot(*delta), "invisible_muon_pt": np.hypot(*invisible),
            "pileup": activity["pileup"]}


def _pv_context(gen: dict) -> dict[str, np.ndarray]:
    pileup = gen["Pileup"]
    missing = [f"Pileup_{name}" for name in ("nTrueInt", "nPU") if name not in ak.fields(pileup)]
    if missing:
        raise FlashSimError(f"the input lacks {' and '.join(missing)}, which the pileup model "
                            "(pv_flow) conditions on; give GEN NanoAOD or NANOAODSIM that has "
                            "them (CMS files and `flashsim generate` do)")
    return {"pileup": np.asarray(pileup.nTrueInt, np.float64),
            "n_pu": np.asarray(pileup.nPU, np.float64),
            "gen_ht": fake_jet.event_activity(gen)["gen_ht"], **tracker_activity(gen)}


def tracker_activity(gen: dict) -> dict[str, np.ndarray]:
    r"""Per event, what the hard interaction puts inside the tracker (:math:`|\eta| <`
    :data:`~flashsim.objects.jet.TRACKER_ETA`), which the main vertex's tracks follow: the
    count of GenJets there, their hadronic :math:`H_T` and :math:`\sum p_T^2` (GenJets hold
    the leptons too, which are subtracted), and :math:`\sum p_T^2` of the status-1 GEN muons
    and electrons, one track each where a hadronic jet's momentum is shared among many."""
    jets = gen["GenJet"]
    central = jets.pt[abs(jets.eta) < jet.TRACKER_ETA]
    part = gen["GenPart"]
    leptons = part.pt[(part.status == 1) & ((abs(part.pdgId) == 11) | (abs(part.pdgId) == 13))
                      & (abs(part.eta) < jet.TRACKER_ETA)]
    lepton_pt2 = np.asarray(ak.sum(leptons**2, axis=1), dtype=np.float64)
    return {
        "tracker_genjets": np.asarray(ak.num(central), dtype=np.float64),
        "tracker_hadron_ht": np.maximum(np.asarray(ak.sum(central, axis=1) - ak.sum(leptons, axis=1),
                                                   dtype=np.float64), 0.0),
        "tracker_hadron_pt2": np.maximum(np.asarray(ak.sum(central**2, axis=1), dtype=np.float64)
                                         - lepton_pt2, 0.0),
        "tracker_lepton_pt2": lepton_pt2,
    }


def training_tables(chunk: dict) -> dict[str, TrainingTable]:
    """MET and pileup-observable rows (one per event) from a NANOAODSIM chunk."""
    weight, key = event_weights(chunk), event_keys(chunk)
    tables = {**muon.training_tables(chunk), **jet.training_tables(chunk),
              **fake_jet.training_tables(chunk)}
    delta = [np.asarray(tables["muon_flow"].info["delta"][i])
             + np.asarray(tables["jet_flow"].info["delta"][i])
             + np.asarray(tables["fake_jet_flow"].info["sum"][i]) for i in range(2)]
    context = _met_context(chunk, (delta[0], delta[1]),
                           invisible_muons(chunk["GenPart"], chunk["Muon"].genPartIdx))
    met = chunk["MET"]
    mpt, mphi = np.asarray(met.pt, np.float64), np.asarray(met.phi, np.float64)
    targets = {"res_x": mpt * np.cos(mphi) - context["m0_x"],
               "res_y": mpt * np.sin(mphi) - context["m0_y"]}
    targets.update({k: np.asarray(met[k], np.float64) for k in _MET_BRANCHES
                    if k in ak.fields(met)})
    if {"covXX", "covXY", "covYY"} <= set(ak.fields(met)):
        cxx, cxy, cyy = (np.asarray(met[k], np.float64) for k in ("covXX", "covXY", "covYY"))
        targets["cov_rho"] = cxy / np.sqrt(cxx * cyy)
    pv = chunk["PV"]
    pv_targets = {k: np.asarray(pv[k], np.float64) for k in PV_BRANCHES if k in ak.fields(pv)}
    if "fixedGridRhoFastjetAll" in chunk:
        pv_targets["fixedGridRhoFastjetAll"] = np.asarray(chunk["fixedGridRhoFastjetAll"],
                                                          np.float64)
    return {"met_flow": TrainingTable(context, targets, weight, key),
            "pv_flow": TrainingTable(_pv_context(chunk), pv_targets, weight, key)}


def exact_significance(fields: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                       ) -> dict[str, np.ndarray]:
    r"""``{"covXY", "significance"}`` for MET :math:`(x, y)` and the sampled covariance in
    ``fields`` (empty without one): ``covXY`` clipped to
    :math:`|\rho| \le` 0.999 and :math:`S = (x^2 C_{yy} - 2xy C_{xy} + y^2 C_{xx}) /
    (C_{xx} C_{yy} - C_{xy}^2)`."""
    if not {"covXX", "covXY", "covYY"} <= set(fields):
        return {}
    cxx, cyy = np.asarray(fields["covXX"], np.float64), np.asarray(fields["covYY"], np.float64)
    bound = _MAX_CORRELATION * np.sqrt(np.maximum(cxx * cyy, 0.0))
    cxy = np.clip(np.asarray(fields["covXY"], np.float64), -bound, bound)
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = (x**2 * cyy - 2 * x * y * cxy + y**2 * cxx) / (cxx * cyy - cxy**2)
    return {"covXY": cxy, "significance": significance}


def simulate_met(gen: dict, models, rng: np.random.Generator, muons: ak.Array,
                 jets: ak.Array) -> ak.Array:
    """Flash-simulated ``MET`` (``N * {pt, phi, ...}``) given the flash muons and jets
    (the GEN muons that no flash muon took count as lost: :func:`invisible_muons`).

    ``jets`` must hold matched and fake jets (``genJetIdx == -1`` for fakes); their
    :math:`\\sum(\\vec p_T^{reco} - \\vec p_T^{gen})` enters :math:`\\vec m_0`.
    """
    mu_idx = ak.mask(muons.genPartIdx, muons.genPartIdx >= 0)
    jet_idx = ak.mask(jets.genJetIdx, jets.genJetIdx >= 0)
    part, genjet = gen["GenPart"], gen["GenJet"]
    mx, my = vector_sum(muons.pt, muons.phi)
    gmx, gmy = vector_sum(ak.fill_none(part.pt[mu_idx], 0.0), ak.fill_none(part.phi[mu_idx], 0.0))
    jx, jy = vector_sum(jets.pt, jets.phi)
    gjx, gjy = vector_sum(ak.fill_none(genjet.pt[jet_idx], 0.0),
                          ak.fill_none(genjet.phi[jet_idx], 0.0))
    context = _met_context(gen, (mx - gmx + jx - gjx, my - gmy + jy - gjy),
                           invisible_muons(part, muons.genPartIdx))
    out = models["met_flow"].sample(context, rng)
    x, y = context["m0_x"] + out.pop("res_x"), context["m0_y"] + out.pop("res_y")
    if "cov_rho" in out:
        out["covXY"] = out.pop("cov_rho") * np.sqrt(out["covXX"] * out["covYY"])
    out.update(exact_significance(out, x, y))
    return ak.zip(typed("MET", {"pt": np.hypot(x, y), "phi": np.arctan2(y, x), **out}))


def simulate_pv(gen: dict, models, rng: np.random.Generator) -> tuple[ak.Array, np.ndarray]:
    """Flash-simulated ``PV`` (``N * {npvs, npvsGood, x, y, z, ...}``) and ``fixedGridRhoFastjetAll``."""
    out = models["pv_flow"].sample(_pv_context(gen), rng)
    rho = np.asarray(out.pop("fixedGridRhoFastjetAll"))  # required: load_models checks it
    if "npvs" in out and "npvsGood" in out:  # a good vertex is a vertex
        out["npvsGood"] = np.minimum(out["npvsGood"], out["npvs"])
    rho = typed(None, {"fixedGridRhoFastjetAll": rho})["fixedGridRhoFastjetAll"]
    return ak.zip(typed("PV", out)), rho
