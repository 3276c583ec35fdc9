r"""Electrons: a GSF track matched to an ECAL supercluster, with everything NanoAOD stores.

**Calorimeter deposits.** Every particle reaching the ECAL (:math:`|\eta| < 3`, charged ones
above the looping threshold) hits it where its straight path in :math:`r`-:math:`z` from its
production vertex meets the barrel (:math:`r` = 1.29 m) or an endcap (:math:`|z|` = 3.17 m);
the position seen from the origin gives :math:`\eta_{SC}`, and charged particles are bent by
:math:`\sin\alpha = 0.3 B R / 2p_T`. Photons and electrons leave all their energy in the ECAL;
a hadron starts its shower there with probability :math:`1 - e^{-1.1}` (ECAL depth in
interaction lengths) and then leaves the EM fraction of its first interaction
(:math:`\pi^0`\ s, Beta(1.5, 3.5)) plus a little of the rest, else a MIP; the remainder goes
to the HCAL.

**Candidates.** (i) every track with :math:`p_T > 2` GeV — true electrons, and hadrons that
will mostly fail; (ii) converted photons: a photon converts before the outer tracker with
:math:`1 - e^{-7t/9}` (:math:`t` the material in front, in :math:`X_0`), at a radius uniform
in the tracker volume; its harder leg is tracked with :math:`e^{-R/250\,mm}` and becomes the
candidate, carrying the photon's whole ECAL energy when both legs stay in the road.

**Supercluster.** The ECAL energy of every deposit inside the road (:math:`|\Delta\eta| <
0.05`, :math:`|\Delta\phi| < 0.15`) joins the candidate's own: brem photons (not separate
particles), final-state radiation, :math:`\pi^0` photons of a jet, the ECAL part of nearby
hadrons. Electrons radiate :math:`f_{brem} = 1 - z` of their energy in the tracker material,
:math:`-\ln z \sim \Gamma(t/\ln 2)` (Bethe-Heitler); the brem lands between the vertex
direction and the bent impact. The measured energy is smeared by
:math:`S/\sqrt E \oplus N/E \oplus C \oplus b f_{brem}` with a low tail and extra smearing in
the barrel-endcap gap; the GSF momentum :math:`p_{in}` by the tracker resolution
:math:`\oplus\, 0.06 f_{brem}` with a low tail; the two are combined by their weights when
compatible (:math:`|E/p - 1| < 3\sigma`), else :math:`E_{SC}` is used; ``eCorr`` is the MC
smearing of scale-and-smearing. ``energyErr`` is the combination's error.

**Shower shape and matching**, from the deposits themselves: ``sieie`` is the energy-weighted
:math:`\eta` spread of the 5x5 window (intrinsic EM or hadronic width plus every other
deposit's offset), ``r9`` the 3x3 fraction (brem spreading in :math:`\phi` lowers it),
``hoe`` the HCAL energy within :math:`\Delta R < 0.15` (own leakage or hadronic part,
neighbours, noise, a tower threshold) over :math:`E_{SC}`, :math:`\Delta\eta_{in}^{seed}` and
:math:`\Delta\phi_{in}` the seed / supercluster centroid minus the track extrapolation plus a
resolution; ``deltaEtaSC`` follows from the vertex position. Non-isolated electrons and hadron
fakes fail these cuts because their superclusters really hold other particles.

**Charge** is the majority of the GSF charge (flipped by early converting brem,
:math:`P = 0.012\,t^2`), the KF charge (absent for 5%) and the supercluster-pixel charge
(the side of the vertex direction the supercluster centroid lies on); ``tightCharge`` counts
their agreement (P06005 Sec. 7). ``lostHits`` = pixel layers crossed before the production
radius plus a missing-first-hit chance; ``convVeto`` fails for conversions whose partner leg is
reconstructed. Impact parameters come from the track (GSF: 1.6 times a pion's resolution;
a conversion leg has :math:`d_{xy} = qR^2/2\rho`). The electron's direction is its track's
measured one (:mod:`flashsim.refdet.tracker`; a conversion leg without a track keeps the
photon's).

**Selection.** GsfElectron preselection (ECAL-driven: :math:`E_{T,SC} > 4` GeV, H/E < 0.15,
:math:`|\Delta\eta_{in}| < 0.02`, :math:`|\Delta\phi_{in}| < 0.15`) or the PF electron
identification (tracker-driven seeding, ``isPFcand``), then NanoAOD's :math:`p_T > 5` GeV.
The identification distance :math:`D` (sum of squared standardised deviations of the matching,
shape, H/E, E/p, hit and conversion variables from a prompt electron's) drives the PF
identification and the MVA scores: :func:`mva_scores` maps :math:`D` onto the Fall17 V2 raw
output so that the quantiles :math:`D_{80}, D_{90}` of prompt electrons land on the WP80/WP90
cuts. Isolation, IDs, jet links and GEN matching are applied by the detector after particle
flow (:func:`isolation`, :func:`identification`).

The physics parameters are in :class:`~flashsim.refdet.config.DetectorConfig`; the crystal
windows (3x3, 5x5 of 0.0174 in eta and phi) and the shapes of the per-candidate fluctuations
are named where they are used.
"""

from __future__ import annotations

import numpy as np

from flashsim.nanoaod.electron_working_points import (
    FALL17_V1,
    cut_levels,
    derived_ids,
    mva_category,
    mva_cut,
    supercluster,
)
from flashsim.pdg import is_neutrino
from flashsim.refdet.calorimeter import KIND_PHO
from flashsim.refdet.config import DetectorConfig
from flashsim.refdet.leptons import IsolationPairs, footprint_keys, pf_index_of
from flashsim.refdet.matching import pairs_near
from flashsim.refdet.tracker import Tracks

__all__ = ["ELECTRON_EA", "calorimeter_deposits", "identification", "isolation", "mva_scores",
           "reconstruct_electrons"]

_EA_EDGES = np.array([1.0, 1.479, 2.0, 2.2, 2.3, 2.4])
ELECTRON_EA = np.array([0.1440, 0.1562, 0.1032, 0.0859, 0.1116, 0.1321, 0.1654])
"""Fall17 94X effective areas of the neutral isolation (RecoEgamma/ElectronIdentification/
data/Fall17/effAreaElectrons_cone03_pfNeuHadronsAndPhotons_94X.txt), by |eta_SC|."""
_BARREL = 1.479
_GAP = (1.4442, 1.566)
_CLIP_D = 25.0
_CRYSTAL = 0.0174
_WINDOW_3X3 = 1.5 * _CRYSTAL
_WINDOW_5X5 = 2.5 * _CRYSTAL


def _barrel(eta: np.ndarray) -> np.ndarray:
    return np.abs(eta) < _BARREL


def _pick(barrel: np.ndarray, pair: tuple) -> np.ndarray:
    return np.where(barrel, pair[0], pair[1])


def material(eta: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Tracker material in front of the ECAL (radiation lengths) at pseudorapidity ``eta``."""
    return np.interp(np.abs(eta), cfg.material_eta, cfg.material_x0)


def _impact(eta, phi, pt, charge, vz, cfg: DetectorConfig):
    """(eta seen from the origin, phi, transverse radius in mm, reaches) of the ECAL impact."""
    sinh = np.sinh(eta)
    z_barrel = vz + cfg.ecal_radius * sinh
    in_barrel = np.abs(z_barrel) < cfg.ecal_endcap_z
    z_face = np.where(eta >= 0, cfg.ecal_endcap_z, -cfg.ecal_endcap_z)
    r_endcap = np.abs((z_face - vz) / np.where(sinh == 0, 1e-9, sinh))
    radius = np.where(in_barrel, cfg.ecal_radius, np.minimum(r_endcap, cfg.ecal_radius))
    z = np.where(in_barrel, z_barrel, z_face)
    eta_sc = np.arcsinh(z / np.maximum(radius, 1e-3))
    s = 0.3 * cfg.bfield * radius * 1e-3 / (2.0 * np.maximum(pt, 1e-6))
    reaches = (charge == 0) | (s < 1.0)
    bend = np.where(charge != 0, np.sign(charge) * np.arcsin(np.minimum(s, 1.0)), 0.0)
    return eta_sc, (phi - bend + np.pi) % (2 * np.pi) - np.pi, radius, reaches, bend


def calorimeter_deposits(cols: dict, kin: dict, hard_z: np.ndarray, cfg: DetectorConfig,
                         rng: np.random.Generator) -> dict:
    """ECAL and HCAL energy every particle leaves, at its ECAL impact (module doc);
    ``hard_z``: the hard vertex z per event (mm), the origin of ``cols``' vertices."""
    aid = np.abs(cols["pdgId"])
    e = cols["e"]
    z0 = cols["vz"] + hard_z[cols["evt"]]
    eta_sc, phi_sc, radius, reaches, bend = _impact(kin["eta"], kin["phi"], kin["pt"],
                                                     cols["charge"], z0, cfg)
    em = (aid == 11) | (aid == 22)
    hadron = ~em & (aid != 13) & ~is_neutrino(aid)
    inside = reaches & (np.abs(eta_sc) < cfg.ecal_eta_max)
    n = len(aid)
    interacts = rng.random(n) < 1.0 - np.exp(-cfg.ecal_lambda_int)
    pi0 = rng.beta(*cfg.hadron_pi0_beta, n)
    f_ecal = np.where(interacts, pi0 + (1.0 - pi0) * 0.3 * rng.random(n),
                      np.minimum(cfg.hadron_ecal_mip / np.maximum(e, 1e-3), 1.0))
    response = 1.0 - cfg.hcal_resp_a / np.maximum(e, 0.5) ** cfg.hcal_resp_p
    ecal = np.where(em, e, np.where(hadron, f_ecal * e, 0.0)) * inside
    hcal = np.where(hadron, (1.0 - f_ecal) * e * response, 0.0) * inside
    return {"eta": eta_sc, "phi": phi_sc, "radius": radius, "bend": bend, "ecal": ecal,
            "hcal": hcal, "em": em, "hadron": hadron, "inside": inside, "z0": z0}


def _lost_hits(eta: np.ndarray, r_prod: np.ndarray, cfg: DetectorConfig,
               rng: np.random.Generator) -> np.ndarray:
    """Pixel layers or disks a track from the origin crosses inside its production radius,
    plus missing first hits (probability ``pixel_inner_miss`` each, in sequence)."""
    sinh = np.abs(np.sinh(eta))
    crossed = []
    for r in cfg.pixel_layer_radii:
        crossed.append((r * sinh < cfg.pixel_barrel_half_length, r))
    for z in cfg.pixel_disk_z:
        r = z / np.maximum(sinh, 1e-6)
        crossed.append(((r > cfg.pixel_disk_radii[0]) & (r < cfg.pixel_disk_radii[1])
                        & (cfg.pixel_layer_radii[-1] * sinh >= cfg.pixel_barrel_half_length), r))
    before = sum((hit & (r < r_prod)).astype(np.int64) for hit, r in crossed)
    missed = rng.geometric(1.0 - cfg.pixel_inner_miss, len(eta)) - 1
    return (before + missed).astype(np.uint8)


def _conversions(cols: dict, kin: dict, cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """Photons converting in the tracker whose harder leg is tracked: the leg's kinematics."""
    aid = np.abs(cols["pdgId"])
    pt, eta = kin["pt"], kin["eta"]
    cand = np.flatnonzero((aid == 22) & (pt > cfg.conversion_pt_min)
                          & (np.abs(eta) < cfg.electron_eta_max))
    t = material(eta[cand], cfg)
    converts = rng.random(len(cand)) < 1.0 - np.exp(-7.0 / 9.0 * t)
    radius = rng.uniform(cfg.conversion_radius_min, cfg.conversion_radius_max, len(cand))
    share = rng.random(len(cand))
    lead = np.maximum(share, 1.0 - share)
    tracked = rng.random(len(cand)) < np.exp(-radius / cfg.conversion_track_scale)
    keep = converts & tracked & (lead * pt[cand] > cfg.electron_track_pt_min)
    i = cand[keep]
    return {"src": i, "radius": radius[keep], "lead": lead[keep],
            "t_left": t[keep] * (1.0 - radius[keep] / cfg.conversion_radius_max),
            "charge": rng.choice([-1.0, 1.0], len(i))}


def reconstruct_electrons(cols: dict, kin: dict, tracks: Tracks, deposits: dict, n_pu: np.ndarray,
                          cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """Electron candidates before isolation (flat, grouped by event): kinematics, shower,
    track and charge variables, preselection, PF decision, supercluster members.

    ``deposits``: :func:`calorimeter_deposits`; ``n_pu``: pileup interactions per event.
    """
    aid = np.abs(cols["pdgId"])
    tsel = np.flatnonzero((tracks.pt > cfg.electron_track_pt_min) & (aid[tracks.idx] != 13)
                          & (np.abs(kin["eta"][tracks.idx]) < cfg.electron_eta_max))
    conv = _conversions(cols, kin, cfg, rng)
    n_t, n_c = len(tsel), len(conv["src"])
    src = np.concatenate([tracks.idx[tsel], conv["src"]])
    trk = np.concatenate([tsel, np.full(n_c, -1)])
    is_conv = np.concatenate([np.zeros(n_t, bool), np.ones(n_c, bool)])
    order = np.lexsort((src, cols["evt"][src]))
    src, trk, is_conv = src[order], trk[order], is_conv[order]
    c_radius = np.zeros(len(src))
    c_lead = np.ones(len(src))
    c_charge = np.zeros(len(src))
    c_t = np.zeros(len(src))
    where_conv = np.flatnonzero(is_conv)
    conv_index = order[where_conv] - n_t  # position in the conversion arrays
    for name, target in (("radius", c_radius), ("lead", c_lead), ("charge", c_charge),
                         ("t_left", c_t)):
        target[where_conv] = conv[name][conv_index]
    n = len(src)
    evt = cols["evt"][src]
    true_e = cols["e"][src]
    eta, phi = kin["eta"][src], kin["phi"][src]
    electron = (aid[src] == 11) | is_conv
    has_trk = trk >= 0
    ti = np.maximum(trk, 0)

    # -------------------------------------------------------------- track (GSF) momentum
    p_true = np.where(is_conv, c_lead * true_e, true_e)
    t_mat = np.where(is_conv, c_t, material(eta, cfg))
    gamma = rng.gamma(np.maximum(t_mat / np.log(2.0), 1e-6))
    fbrem = np.where(electron, 1.0 - np.exp(-gamma), np.abs(rng.normal(0.0, 0.03, n)))
    base_res = np.where(has_trk, tracks.pt_rel_err[ti], np.hypot(cfg.track_res_const_endcap,
                                                                  cfg.track_res_slope_endcap * p_true))
    p_res = np.hypot(base_res, np.where(electron, cfg.gsf_brem_res * fbrem, 0.0))
    p_in = p_true * (1.0 + p_res * rng.standard_normal(n))
    early = electron & (rng.random(n) < 0.3 * fbrem)
    p_in = np.where(early, p_in * rng.uniform(1.0 - 0.5 * fbrem, 1.0), p_in)
    p_in = np.maximum(p_in, 0.1)

    # -------------------------------------------------------------- supercluster
    dep = deposits
    own_charge = np.where(is_conv, c_charge, cols["charge"][src])
    z0 = dep["z0"][src]
    c_eta, c_phi, c_rad, _, c_bend = _impact(eta, phi, np.where(is_conv, c_lead * kin["pt"][src],
                                                                 kin["pt"][src]),
                                             own_charge, z0, cfg)
    barrel = _barrel(c_eta)
    two_legs = is_conv & (np.abs(_impact(eta, phi, (1 - c_lead) * kin["pt"][src], -c_charge,
                                         z0, cfg)[4] - c_bend) < cfg.sc_window_dphi)
    own_ecal = np.where(electron, np.where(is_conv & ~two_legs, p_true, true_e), dep["ecal"][src])
    own_hcal = np.where(electron, true_e * rng.exponential(cfg.electron_leakage, n), dep["hcal"][src])
    z_kept = 1.0 - fbrem
    brem_u = rng.uniform(0.3, 0.7, n)
    own_phi = c_phi + np.where(electron, fbrem * brem_u * c_bend, 0.0)
    had_offset = np.where(electron, 0.0, cfg.hadron_position_spread)
    own_eta = c_eta + had_offset * rng.standard_normal(n)
    own_phi = own_phi + had_offset * rng.standard_normal(n)
    # fraction of the own deposit in the 5x5 / 3x3 windows: brem lands along the bending
    # range in phi, and brem photons converting in the tracker (7/9 of the material they
    # still cross) open up in the field and leave the core
    spread = np.abs(c_bend) * rng.uniform(0.5, 1.5, n)
    brem_converted = 1.0 - np.exp(-7.0 / 9.0 * 0.5 * t_mat)
    core = rng.normal(0.94, 0.02, n)
    in5 = np.where(electron, np.minimum(core + 0.04, 1.0) * (z_kept + fbrem * (1 - brem_converted)
                   * np.clip(_WINDOW_5X5 / np.maximum(spread, 1e-6), 0, 1)), 0.85)
    in3 = np.where(electron, core * (z_kept + fbrem * (1 - brem_converted)
                                     * np.clip(_WINDOW_3X3 / np.maximum(spread, 1e-6), 0, 1)),
                   rng.uniform(0.4, 0.9, n))

    reach = max(cfg.hoe_cone, cfg.sc_window_deta)
    ia, ib, deta, dphi = pairs_near(evt, c_eta, c_phi, cols["evt"], dep["eta"], dep["phi"],
                                    reach, max(cfg.hoe_cone, cfg.sc_window_dphi))
    others = (ib != src[ia]) & dep["inside"][ib]
    ia, ib, deta, dphi = ia[others], ib[others], deta[others], dphi[others]
    ecal_j, hcal_j = dep["ecal"][ib], dep["hcal"][ib]
    in_sc = (np.abs(deta) < cfg.sc_window_deta) & (np.abs(dphi) < cfg.sc_window_dphi)
    in_5x5 = (np.abs(deta) < _WINDOW_5X5) & (np.abs(dphi) < _WINDOW_5X5)
    in_3x3 = (np.abs(deta) < _WINDOW_3X3) & (np.abs(dphi) < _WINDOW_3X3)

    def add(mask, weights):
        return np.bincount(ia[mask], weights=weights[mask], minlength=n)

    e_sc_true = own_ecal + add(in_sc, ecal_j)
    e5 = own_ecal * in5 + add(in_5x5, ecal_j)
    eta5 = (own_ecal * in5 * own_eta + add(in_5x5, ecal_j * (c_eta[ia] + deta))) / np.maximum(e5, 1e-9)
    phi_sc = c_phi + (own_ecal * (own_phi - c_phi) + add(in_sc, ecal_j * dphi)) / np.maximum(e_sc_true, 1e-9)
    width_own = np.where(electron, _pick(barrel, cfg.sieie_em)
                         * np.exp(cfg.sieie_spread * rng.standard_normal(n)),
                         _pick(barrel, cfg.sieie_had) * rng.uniform(0.6, 1.6, n))
    em_width = _pick(barrel[ia], cfg.sieie_em)
    moment = (own_ecal * in5 * (width_own**2 + (own_eta - eta5) ** 2)
              + add(in_5x5, ecal_j * (em_width**2 + (c_eta[ia] + deta - eta5[ia]) ** 2)))
    sieie = np.sqrt(moment / np.maximum(e5, 1e-9))
    e3 = own_ecal * in3 + add(in_3x3, ecal_j)
    e2x5 = own_ecal * in5 * np.where(electron, rng.uniform(0.93, 0.99, n), rng.uniform(0.5, 0.95, n))
    hcal_noise = cfg.hcal_hoe_noise * np.sqrt(1.0 + n_pu[evt] / 20.0) * rng.standard_normal(n)
    # HCAL deposits count above the tower threshold, as does the candidate's own (hadrons)
    h_sum = (np.where(own_hcal > cfg.hcal_hoe_threshold, own_hcal, 0.0) + hcal_noise
             + add((np.hypot(deta, dphi) < cfg.hoe_cone) & (hcal_j > cfg.hcal_hoe_threshold), hcal_j))
    h_sum = np.where(h_sum > cfg.hcal_hoe_threshold, h_sum, 0.0)

    # -------------------------------------------------------------- energy measurement
    e_true_safe = np.maximum(e_sc_true, 1e-3)
    res = np.sqrt((_pick(barrel, (cfg.ele_stoch_barrel, cfg.ele_stoch_endcap)) ** 2 / e_true_safe)
                  + (_pick(barrel, (cfg.ele_noise_barrel, cfg.ele_noise_endcap)) / e_true_safe) ** 2
                  + _pick(barrel, (cfg.ele_const_barrel, cfg.ele_const_endcap)) ** 2
                  + (_pick(barrel, (cfg.ele_brem_barrel, cfg.ele_brem_endcap)) * fbrem) ** 2)
    in_gap = (np.abs(c_eta) > _GAP[0]) & (np.abs(c_eta) < _GAP[1])
    res = np.where(in_gap, np.hypot(res, cfg.ele_gap_res), res)
    res = np.where(electron, res, np.hypot(res, 0.10 / np.sqrt(e_true_safe)))
    e_sc = e_sc_true * (1.0 + res * rng.standard_normal(n)) * np.where(in_gap, 0.97, 1.0)
    tail = rng.random(n) < cfg.ele_tail_fraction * fbrem
    e_sc = np.maximum(np.where(tail, e_sc * rng.uniform(0.85, 1.0, n), e_sc), 0.05)
    sigma_e, sigma_p = res * e_sc, p_res * p_in
    pull = np.abs(e_sc - p_in) / np.hypot(sigma_e, sigma_p)
    combine = pull < 3.0
    w_e = np.where(combine, sigma_p**2 / (sigma_e**2 + sigma_p**2), 1.0)
    energy = w_e * e_sc + (1.0 - w_e) * p_in
    energy_err = np.where(combine, sigma_e * sigma_p / np.hypot(sigma_e, sigma_p), sigma_e)
    e_corr = 1.0 + w_e * _pick(barrel, (cfg.ele_smear_barrel, cfg.ele_smear_endcap)) \
        * rng.standard_normal(n)
    eta_trk = np.where(has_trk, tracks.eta[ti], eta)
    phi_trk = np.where(has_trk, tracks.phi[ti], phi)
    pt_raw = energy / np.cosh(eta_trk)

    # -------------------------------------------------------------- matching and shape outputs
    deta_in = eta5 - c_eta + _pick(barrel, cfg.deta_in_res) * rng.standard_normal(n)
    dphi_in = (phi_sc - c_phi) + _pick(barrel, cfg.dphi_in_res) * rng.standard_normal(n)
    r9 = e3 / np.maximum(e_sc_true * rng.normal(0.97, 0.02, n), 1e-3)

    # -------------------------------------------------------------- charge
    q_true = np.where(has_trk, tracks.charge[ti], c_charge)
    p_flip = np.where(electron, cfg.gsf_flip * t_mat**2, 0.0)
    q_gsf = np.where(rng.random(n) < p_flip, -q_true, q_true)
    has_ctf = ~electron | (rng.random(n) > cfg.ctf_missing)
    q_ctf = np.where(rng.random(n) < 0.3 * p_flip, -q_true, q_true)
    phi_sc_meas = phi_sc + cfg.sc_phi_res * rng.standard_normal(n)
    q_sc = np.where(((phi - phi_sc_meas + np.pi) % (2 * np.pi) - np.pi) >= 0, 1.0, -1.0)
    majority = np.sign(q_gsf + q_ctf + q_sc)
    charge = np.where(has_ctf, majority, q_gsf)
    tight_charge = ((q_gsf == q_sc).astype(np.int32)
                    + ((q_gsf == q_sc) & (q_gsf == q_ctf) & has_ctf).astype(np.int32))

    # -------------------------------------------------------------- track quality, conversions
    r_prod = np.where(is_conv, c_radius, np.hypot(cols["vx"][src], cols["vy"][src]))
    lost = _lost_hits(eta, r_prod, cfg, rng)
    partner_pt = (1.0 - c_lead) * kin["pt"][src]
    vetoed = np.where(is_conv, (partner_pt > cfg.conversion_partner_pt_min)
                      & (rng.random(n) < cfg.conversion_vertex_eff
                         * np.exp(-c_radius / cfg.conversion_track_scale)),
                      rng.random(n) < cfg.conversion_veto_fake)
    sin_theta = 1.0 / np.cosh(eta)
    ip_scale = np.where(electron, cfg.gsf_ip_scale, 1.0)
    sd0 = np.where(has_trk, tracks.dxy_err[ti], np.hypot(cfg.d0_res_const, cfg.d0_res_slope
                                                        / (p_true * sin_theta * np.sqrt(sin_theta))))
    sdz = np.where(has_trk, tracks.dz_err[ti], np.hypot(cfg.dz_res_const, cfg.dz_res_slope
                                                       / (p_true * sin_theta**2.5)))
    rho_mm = np.maximum(p_true * sin_theta, 0.1) / (0.3 * cfg.bfield) * 1e3
    conv_dxy = c_charge * c_radius**2 / (2.0 * rho_mm)
    extra = np.sqrt(ip_scale**2 - 1.0)
    dxy = np.where(has_trk, tracks.dxy[ti], conv_dxy) + extra * sd0 * rng.standard_normal(n)
    dz = np.where(has_trk, tracks.dz[ti], cols["vz"][src]) + extra * sdz * rng.standard_normal(n)
    dxy = np.where(has_trk, dxy, dxy + sd0 * ip_scale * rng.standard_normal(n))
    dz = np.where(has_trk, dz, dz + sdz * ip_scale * rng.standard_normal(n))

    out = {
        "evt": evt, "src": src, "trk": trk, "_conversion": is_conv, "_electron": electron,
        "pt": pt_raw * e_corr, "eta": eta_trk, "phi": phi_trk, "charge": charge.astype(np.int32),
        "mass": energy * e_corr * 2e-4 * rng.standard_normal(n),
        "eCorr": e_corr, "energyErr": energy_err * e_corr * rng.uniform(0.9, 1.1, n),
        "deltaEtaSC": c_eta - eta_trk, "eInvMinusPInv": 1.0 / e_sc - 1.0 / p_in,
        "hoe": h_sum / e_sc, "sieie": sieie, "r9": r9, "tightCharge": tight_charge,
        "lostHits": lost, "convVeto": ~vetoed,
        "dxy": dxy / 10.0, "dz": dz / 10.0, "dxyErr": sd0 * ip_scale / 10.0,
        "dzErr": sdz * ip_scale / 10.0,
        "dEtaInSeed": deta_in, "dPhiIn": dphi_in, "_e2x5_ratio": e2x5 / np.maximum(e5, 1e-9),
        "_e_sc": e_sc, "_fbrem": fbrem, "_p_in": p_in, "_sc_eta": c_eta, "_sc_phi": phi_sc,
    }
    out["_distance"] = identification_distance(out, barrel, cfg)
    et_sc = e_sc / np.cosh(c_eta)
    out["_ecal_driven"] = ((et_sc > cfg.preselection_et) & (out["hoe"] < cfg.preselection_hoe)
                           & (np.abs(deta_in) < cfg.preselection_deta)
                           & (np.abs(dphi_in) < cfg.preselection_dphi))
    out["isPFcand"] = out["_distance"] < cfg.pf_electron_distance
    out["_candidate"] = out["_ecal_driven"] | out["isPFcand"]
    # supercluster members: photons a PF electron absorbs, the footprint of its isolation
    member = in_sc & (np.abs(cols["pdgId"][ib]) == 22)
    out["_members"] = (ia[member], ib[member])
    out["_non_pf_iso"] = _non_pf_isolation(out, cols, kin, tracks, dep, cfg, rng)
    return out


def identification_distance(e: dict, barrel: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """D: sum of squared standardised deviations of a candidate from a prompt electron (each
    term clipped at 25): track-cluster matching, shower width, H/E, E/p, lost hits, conversion."""
    terms = [
        (e["dEtaInSeed"] / _pick(barrel, cfg.deta_in_res)) ** 2 / 2.0,
        (e["dPhiIn"] / (2.0 * _pick(barrel, cfg.dphi_in_res))) ** 2 / 2.0,
        (np.maximum(e["sieie"] / _pick(barrel, cfg.sieie_em) - 1.0, 0.0) / cfg.sieie_spread) ** 2 / 4.0,
        (e["hoe"] / 0.03) ** 2,
        (e["eInvMinusPInv"] / 0.01) ** 2,
        4.0 * e["lostHits"],
        9.0 * ~e["convVeto"],
    ]
    return sum(np.minimum(t, _CLIP_D) for t in terms)


def _non_pf_isolation(e: dict, cols: dict, kin: dict, tracks: Tracks, dep: dict,
                      cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """dr03 track (pT > 0.7 GeV, |dz| < 2 mm; HEEP: pT > 1 GeV, |dz| < 1 mm), ECAL (E_T above
    80 MeV, inner cone 3 crystals and |d eta| < 0.02 strip vetoed) and HCAL depth-1
    (0.15 < Delta R < 0.3) sums: the non-PF isolations, true values at every pT."""
    n = len(e["evt"])
    t_evt = cols["evt"][tracks.idx]
    ia, ib, deta, dphi = pairs_near(e["evt"], e["eta"], e["phi"], t_evt, kin["eta"][tracks.idx],
                                    kin["phi"][tracks.idx], 0.3, 0.3)
    dr = np.hypot(deta, dphi)
    own_dz = np.where(e["trk"] >= 0, tracks.dz[np.maximum(e["trk"], 0)], e["dz"] * 10.0)
    dz = np.abs(tracks.dz[ib] - own_dz[ia])
    ring = (dr < 0.3) & (dr > 0.015) & (np.abs(deta) > 0.015) & (tracks.idx[ib] != e["src"][ia])
    tk = ring & (tracks.pt[ib] > 0.7) & (dz < 2.0)
    heep = ring & (tracks.pt[ib] > 1.0) & (dz < 1.0)
    ia2, ib2, deta2, dphi2 = pairs_near(e["evt"], e["_sc_eta"], e["_sc_phi"], cols["evt"], dep["eta"],
                                        dep["phi"], 0.3, 0.3)
    dr2 = np.hypot(deta2, dphi2)
    sin_t = 1.0 / np.cosh(dep["eta"][ib2])
    other = (ib2 != e["src"][ia2]) & dep["inside"][ib2]
    ecal_et = dep["ecal"][ib2] * sin_t
    ecal = other & (dr2 < 0.3) & (dr2 > 0.045) & (np.abs(deta2) > 0.02) & (ecal_et > 0.08)
    hcal = other & (dr2 < 0.3) & (dr2 > 0.15)
    noise = 0.1 * np.abs(rng.standard_normal(n))
    return {
        "dr03TkSumPt": np.bincount(ia[tk], weights=tracks.pt[ib[tk]], minlength=n),
        "dr03TkSumPtHEEP": np.bincount(ia[heep], weights=tracks.pt[ib[heep]], minlength=n),
        "dr03EcalRecHitSumEt": np.bincount(ia2[ecal], weights=ecal_et[ecal], minlength=n) + noise,
        "dr03HcalDepth1TowerSumEt": np.bincount(ia2[hcal], weights=0.7 * dep["hcal"][ib2[hcal]]
                                                * sin_t[hcal], minlength=n),
    }


def isolation(e: dict, pf: dict, pf_chs: np.ndarray, pf_dz: np.ndarray, rho: np.ndarray,
              cfg: DetectorConfig) -> dict:
    """PF isolation of the electrons with their supercluster footprint removed: charged hadrons
    of the PV (CHS-kept and within ``chs_dz_pv`` of it in z: ``pf_dz``), neutral hadrons and
    photons (endcap vetoes 0.015 / 0.08), rho * EA corrected (cone 0.3, 0.4 and
    mini-isolation with EA (R/0.3)^2)."""
    members_e, members_p = e["_members"]
    members_pf = pf_index_of(pf, members_p)
    found = members_pf >= 0
    pairs = IsolationPairs(e, pf, pf_chs, footprint_keys(members_e[found], members_pf[found]),
                           pv_dz=(pf_dz, cfg.chs_dz_pv))
    endcap = ~_barrel(e["_sc_eta"])[pairs.ia]
    charged = pairs.charged_pv & ~(endcap & (pairs.dr < 0.015))
    neutral = pairs.neutral & ~(endcap & (pairs.kind == KIND_PHO) & (pairs.dr < 0.08))
    pt = e["pt"]
    ea = ELECTRON_EA[np.searchsorted(_EA_EDGES, np.abs(e["_sc_eta"]))] * rho[e["evt"]]
    out = {}
    ch, nu = pairs.total(charged, 0.3), pairs.total(neutral, 0.3)
    out["pfRelIso03_chg"] = ch / pt
    out["pfRelIso03_all"] = (ch + np.maximum(0.0, nu - ea)) / pt
    ch4, nu4 = pairs.total(charged, 0.4), pairs.total(neutral, 0.4)
    out["_pfRelIso04_all"] = (ch4 + np.maximum(0.0, nu4 - ea * (0.4 / 0.3) ** 2)) / pt
    r = 10.0 / np.clip(pt, 50.0, 200.0)
    ch, nu = pairs.total(charged, r), pairs.total(neutral, r)
    out["miniPFRelIso_chg"] = ch / pt
    out["miniPFRelIso_all"] = (ch + np.maximum(0.0, nu - ea * (r / 0.3) ** 2)) / pt
    return out


def mva_scores(e: dict, cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """Fall17-like MVA scores from the identification distance (module doc): raw output
    linear in D through (D_90, WP90 cut) and (D_80, WP80 cut) of the electron's category."""
    pt, eta_sc, _ = supercluster(e)
    category = mva_category(pt, eta_sc)
    iso_term = (e["pfRelIso03_all"] / 0.05) ** 2
    out = {}
    for name, distance, q80, q90 in (
            ("mvaFall17V2noIso", e["_distance"], cfg.electron_mva_q80, cfg.electron_mva_q90),
            ("mvaFall17V2Iso", e["_distance"] + np.minimum(iso_term, _CLIP_D),
             cfg.electron_mva_iso_q80, cfg.electron_mva_iso_q90)):
        cut = {wp: mva_cut(name, wp, pt, category) for wp in ("WP80", "WP90")}
        raw = cut["WP90"] + (cut["WP80"] - cut["WP90"]) * (q90 - distance) / (q90 - q80)
        out[name] = np.tanh(raw)
        v1 = name.replace("V2", "V1")
        out[v1] = np.tanh(cfg.mva_v1_scale * raw + 0.1 * rng.standard_normal(len(raw)))
    return out


def identification(e: dict, rho: np.ndarray, cfg: DetectorConfig, rng: np.random.Generator) -> dict:
    """Cut-based (V2 via :func:`derived_ids`, V1), HEEP and MVA identification of electrons
    with isolation, from the true matching values."""
    rho_e = rho[e["evt"]]
    barrel = _barrel(e["_sc_eta"])
    e = dict(e)
    e.update(mva_scores(e, cfg, rng))
    iso = e["_non_pf_iso"]
    e.update(iso)
    e["heep_dEtaInSeed"] = np.abs(e["dEtaInSeed"]) < np.where(barrel, 0.004, 0.006)
    e["heep_dPhiIn"] = np.abs(e["dPhiIn"]) < 0.06
    e["heep_E2x5"] = ~barrel | (e["_e2x5_ratio"] > 0.94)
    e["heep_ecalDriven"] = e["_ecal_driven"]
    pt, _, _ = supercluster(e)
    e["heep_trkIso"] = iso["dr03TkSumPtHEEP"] < 5.0
    e["heep_emHadIso"] = (iso["dr03EcalRecHitSumEt"] + iso["dr03HcalDepth1TowerSumEt"]
                          < np.where(barrel, 2.0 + 0.03 * pt, 2.5 + 0.03 * np.maximum(pt - 50, 0))
                          + 0.28 * rho_e)
    out = {k: e[k] for k in ("mvaFall17V2noIso", "mvaFall17V2Iso", "mvaFall17V1noIso",
                             "mvaFall17V1Iso")}
    out.update(derived_ids(e, rho_e))
    out["cutBased_Fall17_V1"] = cut_levels(e, rho_e, FALL17_V1).min(axis=1).astype(np.int32)
    return out
