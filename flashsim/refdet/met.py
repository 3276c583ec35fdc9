"""Missing transverse momentum and the event pT density rho.

RawMET = -sum of all PF candidates' pT (pileup included, no CHS), sumEt = scalar sum.
Type-1 MET: RawMET - sum over jets with corrected pT > 15 GeV and EM fraction < 0.9 of
(pT_corr - pT_L1), i.e. the jet calibration propagated.
Covariance: each stored jet contributes sigma_pT^2 along and (pT sigma_phi)^2 across its
direction, sigma_pT/pT = N/pT (+) S/sqrt(pT) (+) C; the unclustered candidates add
``c^2 + s^2 sum pT`` to each axis.  Significance = MET^T C^-1 MET.

rho (fixedGridRhoFastjetAll): median over a 0.55 x 0.55 (eta, phi) grid of |eta| < 5 of
the summed PF pT per cell divided by the cell area.
"""

from __future__ import annotations

import numpy as np

from flashsim.refdet.config import DetectorConfig

__all__ = ["grid_rho", "missing_et"]


def grid_rho(pf: dict, n_events: int, cfg: DetectorConfig) -> np.ndarray:
    """Median pT density of the (eta, phi) grid, per event."""
    n_eta = int(round(2 * cfg.rho_eta_max / cfg.rho_cell))
    n_phi = int(round(2 * np.pi / cfg.rho_cell))
    d_eta, d_phi = 2 * cfg.rho_eta_max / n_eta, 2 * np.pi / n_phi
    inside = np.abs(pf["eta"]) < cfg.rho_eta_max
    ie = ((pf["eta"][inside] + cfg.rho_eta_max) / d_eta).astype(np.int64).clip(0, n_eta - 1)
    ip = (((pf["phi"][inside] + np.pi) % (2 * np.pi)) / d_phi).astype(np.int64).clip(0, n_phi - 1)
    n_cells = n_eta * n_phi
    key = pf["evt"][inside] * n_cells + ie * n_phi + ip
    grid = np.bincount(key, weights=pf["pt"][inside], minlength=n_events * n_cells)
    return np.median(grid.reshape(n_events, n_cells), axis=1) / (d_eta * d_phi)


def missing_et(pf: dict, pf_jet: np.ndarray, jets: dict, n_events: int, cfg: DetectorConfig) -> tuple[dict, dict]:
    """(MET fields, RawMET fields) per event; see the module doc."""
    evt = pf["evt"]
    mex = -np.bincount(evt, weights=pf["px"], minlength=n_events)
    mey = -np.bincount(evt, weights=pf["py"], minlength=n_events)
    sum_et = np.bincount(evt, weights=pf["pt"], minlength=n_events)
    raw = {"pt": np.hypot(mex, mey), "phi": np.arctan2(mey, mex), "sumEt": sum_et}

    jevt, jpt, jphi = jets["evt"], jets["pt"], jets["phi"]
    t1 = (jets["chEmEF"] + jets["neEmEF"]) < 0.9
    delta = np.where(t1, jpt - jets["pt_l1"], 0.0)
    cos, sin = np.cos(jphi), np.sin(jphi)
    t1x = mex - np.bincount(jevt, weights=delta * cos, minlength=n_events)
    t1y = mey - np.bincount(jevt, weights=delta * sin, minlength=n_events)

    rel = np.sqrt((cfg.jer_noise / jpt) ** 2 + cfg.jer_stoch**2 / jpt + cfg.jer_const**2)
    s_par, s_perp = (rel * jpt) ** 2, (cfg.jet_phi_res * jpt) ** 2
    cxx = np.bincount(jevt, weights=s_par * cos**2 + s_perp * sin**2, minlength=n_events)
    cyy = np.bincount(jevt, weights=s_par * sin**2 + s_perp * cos**2, minlength=n_events)
    cxy = np.bincount(jevt, weights=(s_par - s_perp) * cos * sin, minlength=n_events)
    unclustered = pf_jet < 0
    sum_uncl = np.bincount(evt[unclustered], weights=pf["pt"][unclustered], minlength=n_events)
    unc = cfg.met_uncl_const**2 + cfg.met_uncl_stoch**2 * sum_uncl
    cxx, cyy = cxx + unc, cyy + unc
    det = cxx * cyy - cxy**2
    significance = (t1x**2 * cyy - 2 * t1x * t1y * cxy + t1y**2 * cxx) / det
    met = {"pt": np.hypot(t1x, t1y), "phi": np.arctan2(t1y, t1x), "sumEt": sum_et,
           "covXX": cxx, "covXY": cxy, "covYY": cyy, "significance": significance,
           "MetUnclustEnUpDeltaX": 0.1 * np.bincount(evt[unclustered], weights=-pf["px"][unclustered], minlength=n_events),
           "MetUnclustEnUpDeltaY": 0.1 * np.bincount(evt[unclustered], weights=-pf["py"][unclustered], minlength=n_events)}
    return met, raw
