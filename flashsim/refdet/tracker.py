"""Tracker (|eta| < 2.5) and vertex reconstruction.

Tracking efficiency: ``eps = plateau(species, eta) * (1 - exp(-(pT - pT_min)/scale))`` for
charged particles produced inside the tracker volume.  Transverse momentum: the curvature
``q/pT`` is smeared, ``sigma(pT)/pT = c(eta) (+) s(eta) pT``.  Direction: ``phi`` and ``eta``
are smeared with ``sigma = a(eta) (+) b(eta)/(pT sin^1/2 theta)``, a hit-resolution constant
and a multiple-scattering term (the scattering angle ~ sqrt(x/X0 / sin theta)/p projects onto
phi as 1/(pT sin^1/2 theta) and onto cot theta as 1/(pT sin^3/2 theta), i.e. onto
eta = asinh(cot theta) again as 1/(pT sin^1/2 theta)).  A few percent of tracks (fakes, kinks)
have a 3x wider curvature and direction resolution.  Impact parameters of a straight track from its production vertex
``v`` relative to the true hard vertex::

    dxy = (-vx py + vy px) / pT,   dz = vz - (vx px + vy py)/pT * pz/pT

smeared by ``sigma_d0 = a (+) b/(pT sin^1/2 theta)`` and ``sigma_dz = a (+) b/(pT sin^3/2 theta)``
with rare large mismeasurements (``ip_tail``), the floor of light-jet mistags.

Vertices: a vertex (hard or pileup) with ``n`` fit tracks (pT > 0.4 GeV) is found with
``1 - exp(-(n-1)/scale)``; found vertices closer than ``vertex_merge`` in z are merged.
The hard vertex is always the PV.  Tracks of found pileup vertices not merged with the PV
are used in their fit (probability ``vertex_fit_fraction``) and removed by CHS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashsim.refdet.config import DetectorConfig

__all__ = ["Tracks", "Vertices", "direction_resolution", "reconstruct_tracks", "reconstruct_vertices"]


@dataclass
class Tracks:
    """Reconstructed tracks: ``idx`` = particle index in the overlay table, measured values."""

    idx: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    dxy: np.ndarray
    dz: np.ndarray
    dxy_err: np.ndarray
    dz_err: np.ndarray
    pt_rel_err: np.ndarray


@dataclass
class Vertices:
    """Per-event vertex summary and the CHS decision per track."""

    npvs: np.ndarray
    npvs_good: np.ndarray
    pv_fields: dict[str, np.ndarray]
    chs_removed: np.ndarray  # per track (aligned with Tracks.idx)


def direction_resolution(pt: np.ndarray, abseta: np.ndarray, sin_theta: np.ndarray,
                         cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Core Gaussian sigma(phi) (rad) and sigma(eta) of tracks: ``a (+) b/(pT sin^1/2 theta)``
    with the barrel / endcap constants of :class:`DetectorConfig` (see the module doc)."""
    barrel = abseta < cfg.track_dir_barrel_eta
    scattering = 1.0 / (pt * np.sqrt(sin_theta))
    sigma_phi = np.hypot(np.where(barrel, cfg.track_phi_res_const_barrel, cfg.track_phi_res_const_endcap),
                         np.where(barrel, cfg.track_phi_res_ms_barrel, cfg.track_phi_res_ms_endcap)
                         * scattering)
    sigma_eta = np.hypot(np.where(barrel, cfg.track_eta_res_const_barrel, cfg.track_eta_res_const_endcap),
                         cfg.track_eta_res_ms * scattering)
    return sigma_phi, sigma_eta


def reconstruct_tracks(cols: dict[str, np.ndarray], kin: dict[str, np.ndarray],
                       cfg: DetectorConfig, rng: np.random.Generator) -> Tracks:
    """Tracks of the charged particles in ``cols`` (overlay table) with kinematics ``kin``."""
    aid = np.abs(cols["pdgId"])
    pt, eta = kin["pt"], kin["eta"]
    rho_prod = np.hypot(cols["vx"], cols["vy"])
    cand = np.flatnonzero((cols["charge"] != 0) & (np.abs(eta) < cfg.tracker_eta_max)
                          & (pt > cfg.track_pt_min) & (rho_prod < cfg.tracker_radius_max))
    a, pt_c, abseta = aid[cand], pt[cand], np.abs(eta[cand])
    lepton = (a == 11) | (a == 13)
    plateau = np.where(abseta < 1.2, cfg.track_eff_pion_barrel, cfg.track_eff_pion_endcap)
    plateau = np.where(lepton, cfg.track_eff_lepton, plateau)
    eff = plateau * (1.0 - np.exp(-(pt_c - cfg.track_pt_min) / cfg.track_eff_turnon))
    ok = rng.random(len(cand)) < eff
    idx = cand[ok]
    pt_c, abseta = pt_c[ok], abseta[ok]
    n = len(idx)
    barrel = abseta < 0.9
    const = np.where(barrel, cfg.track_res_const_barrel, cfg.track_res_const_endcap)
    slope = np.where(barrel, cfg.track_res_slope_barrel, cfg.track_res_slope_endcap)
    rel = np.hypot(const, slope * pt_c)
    widen = np.where(rng.random(n) < cfg.track_tail_fraction, cfg.track_tail_scale, 1.0)
    curvature = (1.0 + rel * widen * rng.standard_normal(n)) / pt_c
    pt_meas = 1.0 / np.abs(curvature)
    sin_theta = 1.0 / np.cosh(eta[idx])
    sigma_phi, sigma_eta = direction_resolution(pt_c, abseta, sin_theta, cfg)
    eta_meas = eta[idx] + sigma_eta * widen * rng.standard_normal(n)
    phi_meas = np.angle(np.exp(1j * (kin["phi"][idx] + sigma_phi * widen * rng.standard_normal(n))))
    px, py, pz = cols["px"][idx], cols["py"][idx], cols["pz"][idx]
    vx, vy, vz = cols["vx"][idx], cols["vy"][idx], cols["vz"][idx]
    pt_true = np.hypot(px, py)
    dxy = (-vx * py + vy * px) / pt_true
    dz = vz - (vx * px + vy * py) / pt_true * pz / pt_true
    sd0 = np.hypot(cfg.d0_res_const, cfg.d0_res_slope / (pt_c * np.sqrt(sin_theta)))
    sdz = np.hypot(cfg.dz_res_const, cfg.dz_res_slope / (pt_c * sin_theta**1.5))
    ip_widen = np.where(rng.random(n) < cfg.ip_tail_fraction, cfg.ip_tail_scale, 1.0)
    dxy = dxy + sd0 * ip_widen * rng.standard_normal(n)
    dz = dz + sdz * ip_widen * rng.standard_normal(n)
    return Tracks(idx=idx, pt=pt_meas, eta=eta_meas, phi=phi_meas,
                  charge=np.sign(curvature) * np.sign(cols["charge"][idx]),
                  dxy=dxy, dz=dz, dxy_err=sd0, dz_err=sdz, pt_rel_err=rel)


def reconstruct_vertices(tracks: Tracks, cols: dict[str, np.ndarray], vertex_evt: np.ndarray,
                         vertex_z: np.ndarray, hard_z: np.ndarray, cfg: DetectorConfig,
                         rng: np.random.Generator) -> Vertices:
    """Find vertices, count them (npvs, npvsGood), fill PV_* and decide CHS per track."""
    n_events = len(hard_z)
    n_vtx = len(vertex_evt)
    tvtx = cols["vtx"][tracks.idx]
    fit_track = tracks.pt > cfg.vertex_track_pt_min
    n_fit = np.bincount(tvtx[fit_track], minlength=n_vtx)
    found = rng.random(n_vtx) < 1.0 - np.exp(-np.maximum(n_fit - 1, 0) / cfg.vertex_n_scale)
    found[:n_events] = True  # the hard vertex is the PV by construction
    merged_pv = np.abs(vertex_z) < cfg.vertex_merge
    # count resolved vertices: sort found vertices by (event, z), a new vertex starts at each gap
    f = np.flatnonzero(found)
    order = np.lexsort((vertex_z[f], vertex_evt[f]))
    fe, fz, fn = vertex_evt[f][order], vertex_z[f][order], n_fit[f][order]
    new = np.ones(len(f), dtype=bool)
    new[1:] = (fe[1:] != fe[:-1]) | (np.diff(fz) > cfg.vertex_merge)
    npvs = np.bincount(fe[new], minlength=n_events)
    good = new & (2 * fn - 3 > 4)  # ndof = 2 sum(w) - 3 > 4 (|z| < 24 cm holds for the beam spot)
    npvs_good = np.maximum(np.bincount(fe[good], minlength=n_events), 1)
    pu_track = tvtx >= n_events
    chs_removed = (pu_track & found[tvtx] & ~merged_pv[tvtx] & fit_track
                   & (rng.random(len(tvtx)) < cfg.vertex_fit_fraction))
    pv_tracks = ~pu_track & fit_track
    n_pv = np.bincount(tvtx[pv_tracks], minlength=n_vtx)[:n_events]
    sum_pt2 = np.bincount(tvtx[pv_tracks], weights=tracks.pt[pv_tracks] ** 2, minlength=n_vtx)[:n_events]
    ndof = np.maximum(2.0 * n_pv * 0.9 - 3.0, 0.0) + rng.normal(0, 0.5, n_events).clip(0)
    sz = cfg.pv_z_resolution / np.sqrt(np.maximum(n_pv, 1))
    pv = {
        "x": rng.normal(0.0, cfg.beamspot_sigma_xy, n_events) / 10.0,
        "y": rng.normal(0.0, cfg.beamspot_sigma_xy, n_events) / 10.0,
        "z": (hard_z + sz * rng.standard_normal(n_events)) / 10.0,
        "ndof": ndof,
        "chi2": rng.gamma(20.0, 1.0 / 20.0, n_events),
        "score": sum_pt2,
        "npvs": np.maximum(npvs, 1),
        "npvsGood": npvs_good,
    }
    return Vertices(npvs=pv["npvs"], npvs_good=npvs_good, pv_fields=pv, chs_removed=chs_removed)
