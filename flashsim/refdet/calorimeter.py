"""Calorimeters and the PF-like candidate list (one candidate at most per particle).

- Tracked charged particles become charged PF candidates (charged hadrons, or muons when the
  muon reconstruction made a PF muon of them) with the track momentum and direction; PF
  electrons (``flashsim.refdet.electrons``) carry the electron's combined momentum and
  direction and absorb the photons of their supercluster, so that energy is not counted twice
  (nor as a jet's neutral EM part).
- Everything else that reaches a calorimeter becomes a neutral deposit:
  photons and untracked electrons -> ECAL photons (|eta| < 3), HF EM (3 < |eta| < 5);
  neutral hadrons and untracked charged hadrons (pT > 0.7 GeV or |eta| > 2.5) -> HCAL
  neutral hadrons (|eta| < 3) or HF hadrons.  Energy resolution
  ``sigma/E = S/sqrt(E) (+) N/E (+) C``; hadrons have a residual non-compensation
  ``1 - a/E^p`` and a tail of partially lost showers.  Positions get a granularity smear.
  PF thresholds on the measured energy remove soft deposits.

PF kind codes (``KIND_*``) map to PF pdgIds as in PackedCandidates: 211, 11, 13, 22, 130, 1, 2.
"""

from __future__ import annotations

import numpy as np

from flashsim.pdg import is_neutrino
from flashsim.refdet.config import DetectorConfig
from flashsim.refdet.tracker import Tracks

__all__ = ["KIND_CH", "KIND_ELE", "KIND_MU", "KIND_PHO", "KIND_NH", "KIND_HFH", "KIND_HFE",
           "pf_candidates"]

KIND_CH, KIND_ELE, KIND_MU, KIND_PHO, KIND_NH, KIND_HFH, KIND_HFE = range(7)


def _smear_energy(e, stoch, noise, const, rng):
    sigma = e * np.sqrt(stoch**2 / np.maximum(e, 1e-6) + (noise / np.maximum(e, 1e-6)) ** 2 + const**2)
    return np.maximum(e + sigma * rng.standard_normal(len(e)), 0.0)


def pf_candidates(cols: dict[str, np.ndarray], kin: dict[str, np.ndarray], tracks: Tracks,
                  pf_muon_idx: np.ndarray, pf_muon_pt: np.ndarray, cfg: DetectorConfig,
                  rng: np.random.Generator, electrons: dict | None = None) -> dict[str, np.ndarray]:
    """PF candidates as a flat table (grouped by event like ``cols``).

    ``electrons``: the PF electrons (``src`` particle index — a track, or a converted photon —,
    measured ``pt``, ``eta``, ``phi`` and ``charge``) and the particles their superclusters ``absorbed``
    (photons, whose energy the electron carries); tracks of other particles are charged
    hadrons. Fields: ``evt, kind, pt, eta, phi, e, px, py, pz, charge, src`` (particle
    index), ``trk`` (track index or -1).
    """
    n = len(cols["pdgId"])
    aid = np.abs(cols["pdgId"])
    eta, phi, e_true, pt_true = kin["eta"], kin["phi"], cols["e"], kin["pt"]
    abseta = np.abs(eta)
    kind = np.full(n, -1, dtype=np.int8)
    pt = np.zeros(n)
    e_meas = np.zeros(n)
    out_eta = eta.copy()
    out_phi = phi.copy()
    trk_of = np.full(n, -1, dtype=np.int64)
    trk_of[tracks.idx] = np.arange(len(tracks.idx))

    # charged candidates: the track's momentum and direction
    t = tracks.idx
    kind[t] = KIND_CH
    pt[t] = tracks.pt
    out_eta[t] = tracks.eta
    out_phi[t] = tracks.phi
    charge_of = np.zeros(n)
    charge_of[t] = tracks.charge
    claimed = np.zeros(n, dtype=bool)  # tracked, or taken by a PF electron
    claimed[t] = True
    if electrons is not None:
        src = electrons["src"]
        kind[src] = KIND_ELE
        pt[src] = electrons["pt"]
        out_eta[src] = electrons["eta"]
        out_phi[src] = electrons["phi"]
        charge_of[src] = electrons["charge"]
        claimed[src] = True
        claimed[electrons["absorbed"]] = True
    kind[pf_muon_idx] = KIND_MU
    pt[pf_muon_idx] = pf_muon_pt

    # neutral deposits
    invisible = is_neutrino(aid) | (aid == 13)
    em = (aid == 22) | (aid == 11)
    reach = (cols["charge"] == 0) | (pt_true > cfg.calo_reach_pt) | (abseta > cfg.tracker_eta_max)
    calo = ~claimed & ~invisible & reach & (abseta < cfg.hf_eta_max)
    ecal = calo & em & (abseta < cfg.ecal_eta_max)
    hcal = calo & ~em & (abseta < cfg.hcal_eta_max)
    hf = calo & (abseta >= cfg.ecal_eta_max)
    hf_em = hf & em

    i = np.flatnonzero(ecal)
    barrel = abseta[i] < cfg.ecal_barrel_eta
    e = _smear_energy(e_true[i], np.where(barrel, cfg.ecal_stoch_barrel, cfg.ecal_stoch_endcap),
                      np.where(barrel, cfg.ecal_noise_barrel, cfg.ecal_noise_endcap),
                      np.where(barrel, cfg.ecal_const_barrel, cfg.ecal_const_endcap), rng)
    ok = e > np.where(barrel, cfg.photon_e_min_barrel, cfg.photon_e_min_endcap)
    kind[i[ok]] = KIND_PHO
    e_meas[i] = e
    out_eta[i] += cfg.ecal_pos_res * rng.standard_normal(len(i))
    out_phi[i] += cfg.ecal_pos_res * rng.standard_normal(len(i))

    i = np.flatnonzero(hcal)
    response = 1.0 - cfg.hcal_resp_a / np.maximum(e_true[i], 0.5) ** cfg.hcal_resp_p
    lost = np.where(rng.random(len(i)) < cfg.hcal_tail_fraction, rng.uniform(0.3, 0.9, len(i)), 1.0)
    e = _smear_energy(e_true[i] * response * lost, cfg.hcal_stoch, 0.0, cfg.hcal_const, rng)
    ok = e > np.where(abseta[i] < 1.3, cfg.neutral_had_e_min_barrel, cfg.neutral_had_e_min_endcap)
    kind[i[ok]] = KIND_NH
    e_meas[i] = e
    out_eta[i] += cfg.hcal_pos_res * rng.standard_normal(len(i))
    out_phi[i] += cfg.hcal_pos_res * rng.standard_normal(len(i))

    i = np.flatnonzero(hf)
    is_em = hf_em[i]
    e = _smear_energy(e_true[i], np.where(is_em, cfg.hf_em_stoch, cfg.hf_had_stoch), 0.0,
                      np.where(is_em, cfg.hf_em_const, cfg.hf_had_const), rng)
    ok = e > cfg.hf_e_min
    kind[i[ok]] = np.where(is_em[ok], KIND_HFE, KIND_HFH)
    e_meas[i] = e
    out_eta[i] += cfg.hf_pos_res * rng.standard_normal(len(i))
    out_phi[i] += cfg.hf_pos_res * rng.standard_normal(len(i))

    sel = np.flatnonzero(kind >= 0)
    k = kind[sel]
    charged = k <= KIND_MU
    c_eta, c_phi = out_eta[sel], out_phi[sel]
    c_pt = np.where(charged, pt[sel], e_meas[sel] / np.cosh(c_eta))
    mass = np.select([k == KIND_MU, k == KIND_CH], [0.10566, 0.13957], 0.0)
    pz = c_pt * np.sinh(c_eta)
    e = np.where(charged, np.sqrt(c_pt**2 + pz**2 + mass**2), e_meas[sel])
    trk = trk_of[sel]
    charge = np.where(charged, charge_of[sel], 0.0)
    return {
        "evt": cols["evt"][sel], "kind": k, "pt": c_pt, "eta": c_eta, "phi": c_phi, "e": e,
        "px": c_pt * np.cos(c_phi), "py": c_pt * np.sin(c_phi), "pz": pz, "charge": charge,
        "src": sel, "trk": trk,
    }
