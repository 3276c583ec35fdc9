"""Derive the reference detector's jet-energy correction and b-tag mapping from itself.

Usage::

    python training/calibrate_refdet.py --events 2000 --seed 3

Generates ttbar with pileup (``flashsim.generation``), reconstructs it with the
*uncalibrated* detector (``jec`` off, identity b-tag mapping) and prints:

- L1 offset: slope of (raw - gen) pT vs rho*A of matched jets per |eta| bin;
- L2L3 response by numerical inversion: in bins of GenJet pT, the median of
  pT_L1/pT_gen and of pT_L1; a fit R(x) = p0 - p1/x^p2 of response vs median pT_L1;
- b-tag score quantiles of light jets (90%, 99%, 99.9%) = the knots that map the score
  onto the DeepJet 2018 working points.

With ``--electrons`` it generates ``dy_ee`` instead and prints the 80% / 90% quantiles of the
electron identification distance D (without and with the isolation term) of prompt
electrons with GEN pT > 20 GeV, read back from their MVA scores: the constants that put the
Fall17 V2 WP80/WP90 cuts at 80% / 90% efficiency (``electron_mva_*q80/q90``).

Paste the printed constants into ``flashsim/refdet/config.py``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import awkward as ak
import numpy as np

from flashsim.generation import iter_batches, minbias_pool

__all__ = ["main", "report", "rows_and_scores"]


def _fit_response(x: np.ndarray, r: np.ndarray) -> tuple[float, float, float]:
    """Least squares of R = p0 - p1 / x^p2 over a small p2 grid."""
    best = None
    for p2 in np.arange(0.3, 1.01, 0.05):
        design = np.stack([np.ones_like(x), -x ** -p2], axis=1)
        coef, *_ = np.linalg.lstsq(design, r, rcond=None)
        chi2 = np.sum((design @ coef - r) ** 2)
        if best is None or chi2 < best[0]:
            best = (chi2, coef[0], coef[1], p2)
    return float(best[1]), float(best[2]), float(best[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--pileup", type=float, default=30.0)
    parser.add_argument("--electrons", action="store_true",
                        help="Calibrate the electron MVA quantiles on dy_ee instead.")
    args = parser.parse_args()

    from flashsim.refdet import DetectorConfig, ReferenceDetector
    from flashsim.seeds import seeded_rng

    if args.electrons:
        electron_quantiles(args)
        return

    base = DetectorConfig()
    nbins = len(base.jec_offset)
    uncal = replace(base, jec_offset=(0.0,) * nbins, jec_resp_p0=(1.0,) * nbins,
                    jec_resp_p1=(0.0,) * nbins, btag_knots_x=(0.0, 1e3), btag_knots_y=(0.0, 1e3))
    detector = ReferenceDetector(minbias_pool(400, seed=args.seed), config=uncal)
    rng = seeded_rng(args.seed, "detector")
    rows, light_scores = [], []
    t0 = time.time()
    for batch in iter_batches("ttbar", args.events, seed=args.seed, pileup_mean=args.pileup,
                              batch_size=200):
        chunk = detector.reconstruct(batch, rng)
        rows_and_scores(chunk, batch, rows, light_scores)
    print(f"# {args.events} ttbar events in {time.time() - t0:.0f} s")
    report(rows, light_scores, base)


def electron_quantiles(args) -> None:
    """Print the D quantiles of prompt electrons (module doc), inverting the MVA mapping of
    ``flashsim.refdet.electrons.mva_scores`` with the constants currently configured."""
    from flashsim.nanoaod.electron_working_points import mva_category, mva_cut, supercluster
    from flashsim.refdet import DetectorConfig, ReferenceDetector

    cfg = DetectorConfig()
    detector = ReferenceDetector(minbias_pool(400, seed=args.seed + 1000), config=cfg)
    rng = np.random.default_rng(args.seed)
    distances = {"mvaFall17V2noIso": [], "mvaFall17V2Iso": []}
    for batch in iter_batches("dy_ee", args.events, seed=args.seed, pileup_mean=args.pileup,
                              batch_size=200):
        electrons = detector.reconstruct(batch, rng)["Electron"]
        gen = batch.nano["GenPart"][electrons.genPartIdx]
        prompt = ak.flatten(electrons[(electrons.genPartFlav == 1) & (gen.pt > 20)])
        flat = {f: ak.to_numpy(prompt[f]).astype(np.float64) for f in prompt.fields}
        pt, eta_sc, _ = supercluster(flat)
        category = mva_category(pt, eta_sc)
        for name, (q80, q90) in (("mvaFall17V2noIso", (cfg.electron_mva_q80, cfg.electron_mva_q90)),
                                 ("mvaFall17V2Iso", (cfg.electron_mva_iso_q80, cfg.electron_mva_iso_q90))):
            wp80, wp90 = (mva_cut(name, wp, pt, category) for wp in ("WP80", "WP90"))
            raw = np.arctanh(np.clip(flat[name], -1 + 1e-7, 1 - 1e-7))
            distances[name].append(q90 - (raw - wp90) * (q90 - q80) / (wp80 - wp90))
    for name, prefix in (("mvaFall17V2noIso", "electron_mva"), ("mvaFall17V2Iso", "electron_mva_iso")):
        d = np.concatenate(distances[name])
        q80, q90 = np.quantile(d, [0.8, 0.9])
        print(f"{prefix}_q80 = {q80:.2f}\n{prefix}_q90 = {q90:.2f}  # from {len(d)} prompt electrons")


def rows_and_scores(chunk: dict, batch, rows: list, light_scores: list) -> None:
    """Collect (raw pT, eta, area, rho, GenJet pT) of matched jets and light-jet b scores."""
    jet, gj = chunk["Jet"], batch.nano["GenJet"]
    matched = jet[jet.genJetIdx >= 0]
    gen = gj[matched.genJetIdx]
    rho = ak.broadcast_arrays(chunk["fixedGridRhoFastjetAll"], matched.pt)[0]
    rows.append(np.stack([ak.to_numpy(ak.flatten(a)) for a in
                          (matched.pt, matched.eta, matched.area, rho, gen.pt)], axis=1))
    light = jet[(jet.hadronFlavour == 0) & (jet.genJetIdx >= 0) & (np.abs(jet.eta) < 2.5) & (jet.pt > 20)]
    light_scores.append(ak.to_numpy(ak.flatten(light.btagDeepFlavB)))


def report(rows: list, light_scores: list, base) -> None:
    """Fit and print the constants (see the module doc)."""
    raw, eta, area, rho, genpt = np.concatenate(rows).T
    edges = np.asarray(base.jec_offset_eta_edges)
    offs, p0s, p1s, p2s = [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (np.abs(eta) >= lo) & (np.abs(eta) < hi)
        low = sel & (genpt > 20) & (genpt < 60)
        # offset slope: the rho*A dependence of (raw - R*gen) at fixed gen pT, R from low-rho jets
        ra = rho * area
        ratio = raw / genpt
        design = np.stack([genpt[low], ra[low]], axis=1)
        coef, *_ = np.linalg.lstsq(design, raw[low], rcond=None)  # raw = R gen + c rho A
        offs.append(float(np.clip(coef[1], 0.0, 2.0)))
        l1 = raw - offs[-1] * ra
        xs, rs = [], []
        for g_lo in (20, 25, 30, 40, 50, 70, 100, 150, 220, 350, 600):
            b = sel & (genpt >= g_lo) & (genpt < g_lo * 1.35)
            if b.sum() >= 20:
                xs.append(np.median(l1[b]))
                rs.append(np.median(l1[b] / genpt[b]))
        p0, p1, p2 = _fit_response(np.asarray(xs), np.asarray(rs))
        p0s.append(round(p0, 3))
        p1s.append(round(p1, 3))
        p2s.append(round(p2, 2))
        print(f"|eta| {lo}-{hi}: n={sel.sum()} median raw/gen={np.median(ratio[sel]):.3f} "
              f"bins={[(round(x, 1), round(r, 3)) for x, r in zip(xs, rs, strict=True)]}")
    scores = np.concatenate(light_scores)
    q = np.quantile(scores, [0.9, 0.99, 0.999])
    print(f"jec_offset = {tuple(round(o, 3) for o in offs)}")
    print(f"jec_resp_p0 = {tuple(p0s)}\njec_resp_p1 = {tuple(p1s)}\njec_resp_p2 = {tuple(p2s)}")
    print(f"btag_knots_x = (0.0, {q[0]:.3f}, {q[1]:.3f}, {q[2]:.3f}, {max(scores.max(), q[2] + 1):.2f})"
          f"  # from {len(scores)} light jets")


if __name__ == "__main__":
    main()
