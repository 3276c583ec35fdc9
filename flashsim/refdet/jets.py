"""AK4 CHS jets: clustering, calibration, IDs, flavour tagging, quark/gluon likelihood.

Clustering: anti-kT R = 0.4 (fastjet, all events at once) on the PF candidates kept by CHS.
Constituent sums give the raw four-momentum and the energy fractions.

Calibration (derived from this detector by ``training/calibrate_refdet.py``)::

    pT_L1 = pT_raw - c(eta) rho A,     pT = pT_L1 / R(pT_L1),  R(x) = p0 - p1 / x^p2

applied to the whole four-momentum; ``rawFactor = 1 - pT_raw / pT``.  The area is a
parametrisation (N(0.497, 0.02)), not a ghost area, to stay cheap.

b/c tagging (no ML): for charged constituents with pT > 1 GeV the signed transverse
impact-parameter significance ``S = sign((PCA) . jet) |dxy| / sigma`` is computed; the
three largest S per jet, and the mass of the tracks with S > 2 (pion hypothesis) give::

    x_b = 0.5 g(S1) + g(S2) + 1.3 g(S3) + 1.5 clip(m_SV - 1.5, 0, 3) [n_SV >= 2],   g(s) = log(1 + max(s, 0))

``btagDeepFlavB`` maps x_b piecewise-linearly onto [0, 1] through knots placed at the 90%,
99%, 99.9% light-jet quantiles on ttbar, so the DeepJet 2018 WPs give 10%/1%/0.1% light
mistags by construction and the b/c efficiencies follow from the IP physics.
``CvL`` and ``CvB`` are logistic functions of the moderate-displacement and SV-mass features.

PileupJetID-like score below 50 GeV: inside the tracker the fraction of the jet pT carried
by charged constituents compatible with the PV (|dz| < 1 mm) minus twice the pT-weighted
<dR^2>; outside, a width-only score.  Bits: loose 4, medium 2, tight 1 (values 0, 4, 6, 7);
7 above 50 GeV.  jetId: 2018 tight (value 2) and tightLepVeto (4) from the fractions and
multiplicities (JetID twiki, 2018 UL-like criteria per |eta| region).
"""

from __future__ import annotations

import awkward as ak
import fastjet
import numpy as np

from flashsim.clustering import cluster_sequence
from flashsim.kinematics import delta_r
from flashsim.refdet.calorimeter import (
    KIND_CH,
    KIND_ELE,
    KIND_HFE,
    KIND_HFH,
    KIND_MU,
    KIND_NH,
    KIND_PHO,
)
from flashsim.refdet.config import DetectorConfig

__all__ = ["cluster_jets"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(s):
    return np.log1p(np.maximum(s, 0.0))


def cluster_jets(pf: dict, keep: np.ndarray, track_dxy: np.ndarray, track_dxy_err: np.ndarray,
                 track_dz: np.ndarray, rho: np.ndarray, n_events: int, cfg: DetectorConfig,
                 rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Cluster, calibrate and describe jets.

    Returns the flat jet table (grouped by event, pT-ordered, corrected pT > 15 GeV) and,
    per PF candidate, the index of the stored jet that contains it (-1 if none).
    """
    sel = np.flatnonzero(keep)
    counts = np.bincount(pf["evt"][sel], minlength=n_events)
    inputs = ak.unflatten(ak.zip({"px": pf["px"][sel], "py": pf["py"][sel], "pz": pf["pz"][sel],
                                  "E": pf["e"][sel]}, with_name=None), counts)
    seq = cluster_sequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, cfg.jet_r))
    cidx = seq.constituent_index(cfg.jet_raw_pt_min)
    n_jets_evt = ak.to_numpy(ak.num(cidx, axis=1))
    n_const = ak.to_numpy(ak.flatten(ak.num(cidx, axis=2)))
    local = ak.to_numpy(ak.flatten(cidx, axis=None)).astype(np.int64)
    jet_evt = np.repeat(np.arange(n_events), n_jets_evt)
    const_jet = np.repeat(np.arange(len(jet_evt)), n_const)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = sel[starts[jet_evt[const_jet]] + local]  # PF index of every constituent
    nj = len(jet_evt)

    def jsum(w, mask=None):
        if mask is None:
            return np.bincount(const_jet, weights=w, minlength=nj)
        return np.bincount(const_jet[mask], weights=w[mask], minlength=nj)

    kind, cpt = pf["kind"][c], pf["pt"][c]
    px, py, pz, e = (jsum(pf[f][c]) for f in ("px", "py", "pz", "e"))
    raw_pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(raw_pt, 1e-9))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    ce = pf["e"][c]
    frac = {name: jsum(ce, np.isin(kind, kinds)) / np.maximum(e, 1e-9) for name, kinds in (
        ("chHEF", (KIND_CH,)), ("neHEF", (KIND_NH, KIND_HFH)), ("chEmEF", (KIND_ELE,)),
        ("neEmEF", (KIND_PHO, KIND_HFE)), ("muEF", (KIND_MU,)))}
    n_charged = np.bincount(const_jet[kind <= KIND_MU], minlength=nj)
    n_neutral = n_const - n_charged
    n_mu = np.bincount(const_jet[kind == KIND_MU], minlength=nj)
    n_ele = np.bincount(const_jet[kind == KIND_ELE], minlength=nj)
    dr = delta_r(pf["eta"][c], pf["phi"][c], eta[const_jet], phi[const_jet])
    dr2_mean = jsum(cpt * dr**2) / np.maximum(jsum(cpt), 1e-9)
    width = jsum(cpt * dr) / np.maximum(jsum(cpt), 1e-9)
    ptd = np.sqrt(jsum(cpt**2)) / np.maximum(jsum(cpt), 1e-9)

    # calibration
    area = np.clip(rng.normal(cfg.jet_area_mean, cfg.jet_area_sigma, nj), 0.35, 0.65)
    b = np.clip(np.searchsorted(np.asarray(cfg.jec_offset_eta_edges), np.abs(eta)) - 1, 0,
                len(cfg.jec_offset) - 1)
    pt_l1 = np.maximum(raw_pt - np.asarray(cfg.jec_offset)[b] * rho[jet_evt] * area, 0.2 * raw_pt)
    resp = np.asarray(cfg.jec_resp_p0)[b] - np.asarray(cfg.jec_resp_p1)[b] / np.maximum(pt_l1, 5.0) ** np.asarray(cfg.jec_resp_p2)[b]
    scale_l1 = pt_l1 / raw_pt
    scale = scale_l1 / np.clip(resp, 0.3, 1.5)
    # A particle-level detector lacks the charged/neutral PF confusion, calorimeter
    # non-uniformity and out-of-cone losses of real jets; this jet-level constant term
    # (symmetric, so the calibrated median response stays 1) brings the resolution at
    # 100-300 GeV to CMS's (JINST 12 (2017) P02014).
    scale = scale * np.clip(rng.normal(1.0, cfg.jet_constant_term, nj), 0.5, 1.5)
    pt = raw_pt * scale

    # tracks in jets: signed IP significance, PV compatibility
    trk = pf["trk"][c]
    has_trk = trk >= 0
    t_dxy = np.where(has_trk, track_dxy[trk], 0.0)
    t_err = np.where(has_trk, track_dxy_err[trk], 1.0)
    t_dz = np.where(has_trk, track_dz[trk], 1e3)
    cphi = pf["phi"][c]
    # PCA direction in the transverse plane is -dxy * n, n = (sin phi, -cos phi)
    n_dot_jet = np.sin(cphi) * np.cos(phi[const_jet]) - np.cos(cphi) * np.sin(phi[const_jet])
    sign = np.where(-t_dxy * n_dot_jet >= 0, 1.0, -1.0)
    sig = sign * np.abs(t_dxy) / t_err
    ip_trk = has_trk & (cpt > 1.0)
    s = np.where(ip_trk, sig, -99.0)
    order = np.lexsort((-s, const_jet))
    rank = np.arange(len(order)) - np.concatenate([[0], np.cumsum(n_const)[:-1]])[const_jet[order]]
    top = np.full((nj, 3), -99.0)
    first3 = rank < 3
    top[const_jet[order][first3], rank[first3]] = s[order][first3]
    sv = ip_trk & (sig > 2.0)
    m_pi = 0.13957
    sv_e = jsum(np.sqrt(cpt**2 * np.cosh(pf["eta"][c]) ** 2 + m_pi**2), sv)
    sv_px, sv_py, sv_pz = (jsum(pf[f][c], sv) for f in ("px", "py", "pz"))
    m_sv = np.sqrt(np.maximum(sv_e**2 - sv_px**2 - sv_py**2 - sv_pz**2, 0.0))
    n_sv = np.bincount(const_jet[sv], minlength=nj)
    x_b = (0.5 * _g(top[:, 0]) + _g(top[:, 1]) + 1.3 * _g(top[:, 2])
           + 1.5 * np.clip(m_sv - 1.5, 0.0, 3.0) * (n_sv >= 2))
    in_tracker = np.abs(eta) < 2.5
    x_b = np.where(in_tracker, x_b, 0.0)
    deep_b = np.interp(x_b, cfg.btag_knots_x, cfg.btag_knots_y)
    x_c = _g(top[:, 0]) + _g(top[:, 1])
    cvl = np.where(in_tracker, _sigmoid(1.3 * (x_c - 2.8) - 0.2 * np.maximum(m_sv - 2.0, 0)), 0.0)
    cvb = np.where(in_tracker, _sigmoid(1.5 - 1.0 * np.minimum(m_sv, 5.0) * (n_sv >= 2)
                                        - 0.8 * _g(top[:, 2]) + 0.3 * _g(top[:, 0])), 0.0)

    # pileup ID
    pv_charged = has_trk & (np.abs(t_dz) < cfg.chs_dz_pv)
    f_pv = jsum(cpt, pv_charged) / np.maximum(raw_pt, 1e-9)
    pu_charged = jsum(ce, has_trk & ~pv_charged) / np.maximum(e, 1e-9)
    score = np.where(in_tracker, f_pv - 2.0 * dr2_mean, 0.8 - 6.0 * dr2_mean)
    thr = np.where(in_tracker[:, None], np.asarray(cfg.puid_tight)[None, :], np.asarray(cfg.puid_forward)[None, :])
    pass_t, pass_m, pass_l = (score > thr[:, 0]), (score > thr[:, 1]), (score > thr[:, 2])
    pu_id = (4 * pass_l + 2 * (pass_m & pass_l) + (pass_t & pass_m & pass_l)).astype(np.int32)
    pu_id = np.where(pt > 50.0, 7, pu_id)

    # jet ID (2018 tight / tightLepVeto)
    ae = np.abs(eta)
    nhf, nemf, chf, cemf, muf = (frac[k] for k in ("neHEF", "neEmEF", "chHEF", "chEmEF", "muEF"))
    central = (nhf < 0.9) & (nemf < 0.9) & (n_const > 1) & (chf > 0) & (n_charged > 0)
    tight = np.select(
        [ae <= 2.6, ae <= 2.7, ae <= 3.0],
        [central, (nhf < 0.9) & (nemf < 0.99) & (n_charged > 0),
         (nemf > 0.02) & (nemf < 0.99) & (n_neutral > 2)],
        (nemf < 0.9) & (nhf > 0.2) & (n_neutral > 10))
    lep_ok = np.where(ae <= 2.7, (muf < 0.8) & (cemf < 0.8), True)
    jet_id = (2 * tight + 4 * (tight & lep_ok)).astype(np.int32)

    # quark/gluon likelihood from multiplicity, width and pT_D
    mult = jsum(np.ones(len(c)), cpt > 1.0)
    z = 2.2 - 0.09 * (mult - 4.0 * np.log(np.maximum(pt, 15.0) / 15.0)) - 12.0 * (width - 0.05) + 1.5 * (ptd - 0.35)
    qgl = np.clip(_sigmoid(z) + rng.normal(0, 0.03, nj), 0.0, 1.0)

    muon_pt = jsum(cpt, kind == KIND_MU)
    lep_frac = (frac["muEF"] + frac["chEmEF"])
    jets = {
        "evt": jet_evt, "pt": pt, "eta": eta, "phi": phi, "mass": mass * scale, "area": area,
        "rawFactor": 1.0 - 1.0 / scale, "pt_l1": raw_pt * scale_l1, "raw_pt": raw_pt,
        **frac, "nConstituents": n_const, "nMuons": n_mu, "nElectrons": n_ele,
        "jetId": jet_id, "puId": pu_id,
        "btagDeepFlavB": deep_b, "btagDeepFlavCvL": cvl, "btagDeepFlavCvB": cvb,
        "btagDeepFlavC": cvl * (1.0 - deep_b),
        "btagDeepB": np.clip(deep_b + rng.normal(0, 0.02, nj) * deep_b, 0, 1),
        "btagDeepC": np.clip(cvl * (1.0 - deep_b) * 0.6, 0, 1),
        "btagCSVV2": np.interp(deep_b, (0.0, 0.0494, 0.2770, 0.7264, 1.0), (0.0, 0.5803, 0.8838, 0.9693, 1.0)),
        "btagCMVA": np.clip(2.0 * deep_b - 1.0, -1, 1),
        "qgl": np.where(in_tracker, qgl, -1.0),
        "jercCHF": frac["chHEF"], "jercCHPUF": pu_charged,
        "muonSubtrFactor": muon_pt / np.maximum(raw_pt, 1e-9),
        "bRegCorr": 1.0 + 0.04 + 0.5 * lep_frac + 0.03 * rng.standard_normal(nj),
        "bRegRes": 0.06 + 1.0 / np.sqrt(np.maximum(pt, 1.0)),
    }
    # keep jets above threshold, pT-ordered within events
    keep_jet = pt > cfg.jet_pt_min
    order = np.lexsort((-pt, jet_evt))
    order = order[keep_jet[order]]
    out = {k: v[order] for k, v in jets.items()}
    new_index = np.full(nj, -1, dtype=np.int64)
    new_index[order] = np.arange(len(order))
    pf_jet = np.full(len(pf["evt"]), -1, dtype=np.int64)
    pf_jet[c] = new_index[const_jet]
    return out, pf_jet
