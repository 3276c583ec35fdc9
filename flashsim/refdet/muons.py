"""Muon reconstruction, quality variables, IDs and PF isolation.

Sources: true muons (hard and pileup) with a reconstructed inner track, |eta| < 2.4 and
p above the station threshold; fakes from tracked pions/kaons decaying in flight (P = k/p)
or punching through (p > 10 GeV) -- these carry the hadron's track, are not matched to a
GEN muon and are usually non-isolated.

Momentum: the curvature is smeared with ``sigma(pT)/pT = c(eta) (+) s(eta) pT`` (1.1-2.5%
constant, 1e-4..2.5e-4 /GeV slope) and a 4x-wider component for 4% of muons, so charge
flips appear at TeV momenta.  Direction: that of the inner track (``flashsim.refdet.tracker``).
Quality variables (``nStations``, ``nTrackerLayers``, pixel hits, normalised chi2, segment
compatibility, kink) are drawn per source type; the IDs are the muon POG cut-based
definitions applied to them (SWGuideMuonIdRun2):

- loose: PF and (global or tracker);
- medium: loose, valid fraction > 0.8 and ((global, chi2 < 3, kink < 20, segComp > 0.303) or segComp > 0.451);
- tight: global, PF, chi2 < 10, muon hits > 0, nStations >= 2, |dxy| < 0.2 cm, |dz| < 0.5 cm,
  pixel hits > 0, nTrackerLayers > 5;
- soft: tracker (one station tight), nTrackerLayers > 5, pixel layers > 0, |dxy| < 0.3, |dz| < 20 cm;
- highPt: 2 global (nStations >= 2, muon hits, dpT/pT < 0.3, |dxy| < 0.2, |dz| < 0.5, pixel, layers > 5),
  1 tracker high pT.

Isolation from the PF candidates around the muon (own candidate excluded): charged hadrons
kept by CHS (PV), neutral hadrons and photons above 0.5 GeV, charged PU (CHS-removed);
``pfRelIso = (ch + max(0, nh + ph - 0.5 pu)) / pT``; mini-isolation with cone
``10 GeV / min(max(pT, 50), 200)`` and ``rho * EA * (R/0.3)^2`` correction.
"""

from __future__ import annotations

import numpy as np

from flashsim.nanoaod.muon_working_points import cut_based_ids, loose_id
from flashsim.refdet.config import DetectorConfig
from flashsim.refdet.leptons import IsolationPairs
from flashsim.refdet.tracker import Tracks

__all__ = ["isolation", "muon_ids", "reconstruct_muons"]

_MINI_EA_EDGES = np.array([0.8, 1.3, 2.0, 2.2])
_MINI_EA = np.array([0.0735, 0.0619, 0.0465, 0.0433, 0.0577])  # muon mini-iso effective areas


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reconstruct_muons(cols, kin, tracks: Tracks, cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """Reconstructed muon candidates (flat, grouped by event) before isolation and selection."""
    t = tracks.idx
    aid = np.abs(cols["pdgId"][t])
    eta, pt_true = kin["eta"][t], kin["pt"][t]
    p = pt_true * np.cosh(eta)
    in_acc = np.abs(eta) < cfg.muon_eta_max
    true_mu = in_acc & (aid == 13) & (p > cfg.muon_p_min)
    hadron = in_acc & ((aid == 211) | (aid == 321)) & (p > 5.0)
    k = np.where(aid == 321, cfg.muon_dif_k_kaon, cfg.muon_dif_k_pion)
    p_fake = np.minimum(k / p, 0.5) + np.where(p > 10.0, cfg.muon_punch_prob, 0.0)
    fake = hadron & (rng.random(len(t)) < p_fake)
    sel = np.flatnonzero(true_mu | fake)
    is_fake = fake[sel]
    n = len(sel)
    eta, pt_true, p = eta[sel], pt_true[sel], p[sel]
    abseta = np.abs(eta)

    # reconstruction algorithms: tracker muon needs to reach a station, global two
    reach = _sigmoid((np.where(abseta < 1.2, pt_true, p) - 3.0) / 0.4)
    dip = np.where((abseta > 0.2) & (abseta < 0.3), 0.93, 1.0) * np.where(
        (abseta > 0.85) & (abseta < 1.2), 0.985, 1.0)
    is_tracker = rng.random(n) < cfg.muon_tracker_eff * reach * np.where(is_fake, 0.8, 1.0)
    p_glob = cfg.muon_global_eff * dip * _sigmoid((pt_true - 4.5) / 0.8) * np.where(is_fake, 0.4, 1.0)
    is_global = rng.random(n) < p_glob
    is_pf = (is_global | is_tracker) & (rng.random(n) < cfg.muon_pf_eff)

    # momentum: smear the true curvature (fakes: the decay muon carries 70-100% of the track)
    carried = np.where(is_fake, rng.uniform(0.7, 1.0, n), 1.0)
    barrel, overlap = abseta < 0.9, (abseta >= 0.9) & (abseta < 1.2)
    const = np.select([barrel, overlap], [cfg.muon_res_const_barrel, cfg.muon_res_const_overlap],
                      cfg.muon_res_const_endcap) * np.where(abseta > 2.1, 1.3, 1.0)
    slope = np.where(barrel, cfg.muon_res_slope_barrel, cfg.muon_res_slope_endcap)
    rel = np.hypot(const, slope * pt_true)
    tail = rng.random(n) < cfg.muon_tail_fraction
    z = rng.standard_normal(n) * np.where(tail, cfg.muon_tail_scale, 1.0)
    curvature = (1.0 + rel * z) / (pt_true * carried)
    ti = np.flatnonzero(true_mu | fake)  # index into tracks
    charge = np.sign(cols["charge"][t[sel]]) * np.sign(curvature)
    pt = 1.0 / np.abs(curvature)
    pt_err = pt * rel * np.where(tail, 2.0, 1.0) * rng.uniform(0.9, 1.1, n)

    # quality variables
    n_stations = np.where(is_global, 1 + rng.binomial(3, np.where(is_fake, 0.3, 0.8), n),
                          1 + rng.binomial(1, 0.3, n)) * (is_global | is_tracker)
    layers = 6 + rng.binomial(np.where(abseta < 1.0, 11, 9), 0.8, n)
    layers = np.where(rng.random(n) < 0.012, rng.binomial(5, 0.8, n), layers)
    pixel_ok = rng.random(n) < 0.995
    chi2 = rng.gamma(np.where(is_fake, 2.0, 4.0), np.where(is_fake, 2.0, 0.25), n)
    chi2 = np.where(rng.random(n) < 0.015, chi2 * 12.0, chi2)
    muon_hits = is_global & (rng.random(n) < 0.995)
    seg_comp = np.where(is_fake, rng.beta(2.0, 3.0, n), rng.beta(8.0, 2.0, n)) * (is_global | is_tracker)
    valid_frac = rng.random(n) < 0.99
    kink_ok = rng.random(n) < np.where(is_fake, 0.3, 0.99)
    return {
        "evt": cols["evt"][t[sel]], "src": t[sel], "trk": ti, "fake": is_fake,
        "pt": pt, "eta": tracks.eta[ti], "phi": tracks.phi[ti], "charge": charge.astype(np.int32), "ptErr": pt_err,
        "dxy": tracks.dxy[ti] / 10.0, "dz": tracks.dz[ti] / 10.0,
        "dxyErr": tracks.dxy_err[ti] / 10.0, "dzErr": tracks.dz_err[ti] / 10.0,
        "isGlobal": is_global, "isTracker": is_tracker, "isPFcand": is_pf,
        "nStations": n_stations, "nTrackerLayers": layers, "segmentComp": seg_comp,
        "_pixel": pixel_ok, "_chi2": chi2, "_muon_hits": muon_hits, "_valid": valid_frac, "_kink": kink_ok,
    }


def muon_ids(mu: dict) -> dict:
    """Cut-based IDs and the NanoAOD selection mask from the quality variables (module doc):
    the cuts on stored branches are :func:`~flashsim.nanoaod.muon_working_points.stored_requirements`'s,
    which the flash simulation shares, the rest the outcome of the hidden ones."""
    loose = loose_id(mu)
    chi2, pixel, hits = mu["_chi2"], mu["_pixel"], mu["_muon_hits"]
    hidden = {"mediumId_hidden": mu["_valid"] & ((mu["segmentComp"] > 0.451)
                                                 | ((chi2 < 3) & mu["_kink"])),
              "tightId_hidden": (chi2 < 10) & hits & pixel, "softId_hidden": pixel,
              "highPtId_global_hidden": hits & pixel, "highPtId_tracker_hidden": pixel}
    ids = cut_based_ids(mu, hidden)
    rel_err = mu["ptErr"] / mu["pt"]
    return {
        "looseId": loose, **ids, "triggerIdLoose": loose | ids["softId"],
        "tightCharge": np.where(rel_err < 0.2, 2, 0).astype(np.int32),
        "selected": (mu["pt"] > 3.0) & (loose | ids["softId"] | (ids["highPtId"] > 0)),
    }


def isolation(mu: dict, pf: dict, pf_chs: np.ndarray, rho: np.ndarray) -> dict:
    """PF isolation sums around each muon (see module doc); ``pf_chs`` = CHS-removed flag."""
    pairs = IsolationPairs(mu, pf, pf_chs)
    neutral = pairs.neutral & (pairs.pt > 0.5) & (pairs.dr > 0.01)
    pt = mu["pt"]
    out = {}
    for tag, cone in (("03", 0.3), ("04", 0.4)):
        ch, nu = pairs.total(pairs.charged_pv, cone), pairs.total(neutral, cone)
        pu = pairs.total(pairs.charged_pu, cone)
        out[f"pfRelIso{tag}_all"] = (ch + np.maximum(0.0, nu - 0.5 * pu)) / pt
        if tag == "03":
            out["pfRelIso03_chg"] = ch / pt
    out["tkRelIso"] = pairs.total(pairs.any_track, 0.3) / pt
    r = 10.0 / np.clip(pt, 50.0, 200.0)
    ch, nu = pairs.total(pairs.charged_pv, r), pairs.total(neutral, r)
    ea = _MINI_EA[np.searchsorted(_MINI_EA_EDGES, np.abs(mu["eta"]))]
    out["miniPFRelIso_chg"] = ch / pt
    out["miniPFRelIso_all"] = (ch + np.maximum(0.0, nu - rho[mu["evt"]] * ea * (r / 0.3) ** 2)) / pt
    return out
