"""Derive the reference detector's jet-energy correction and b-tag mapping from itself.

Usage::

    python training/calibrate_refdet.py --events 2000 --seed 3

Generates ttbar with pileup (``flashsim.generation`` when available, else the small
stand-alone Pythia GEN builder below), reconstructs it with the *uncalibrated* detector
(``jec`` off, identity b-tag mapping) and prints:

- L1 offset: slope of (raw - gen) pT vs rho*A of matched jets per |eta| bin;
- L2L3 response by numerical inversion: in bins of GenJet pT, the median of
  pT_L1/pT_gen and of pT_L1; a fit R(x) = p0 - p1/x^p2 of response vs median pT_L1;
- b-tag score quantiles of light jets (90%, 99%, 99.9%) = the knots that map the score
  onto the DeepJet 2018 working points.

Paste the printed constants into ``flashsim/refdet/config.py``.

The stand-alone GEN builder (``toy_batches``) also feeds the tests and the speed
measurement until ``flashsim.generation`` exists; it follows the GenBatch contract
(docs/CONTRACTS) but prunes GenPart only roughly (leptons, taus, W/Z/H/top, b/c hadrons).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import awkward as ak
import fastjet
import numpy as np

__all__ = ["toy_batches", "toy_minbias_pool", "ToyBatch"]

PROCESS_SETTINGS = {
    "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    "dy_mumu": ["WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 13",
           "PhaseSpace:mHatMin = 50."],
    "minbias": ["SoftQCD:inelastic = on"],
}
COMMON = ["Beams:eCM = 13000.", "Next:numberCount = 0", "Next:numberShowEvent = 0",
          "Next:numberShowInfo = 0", "Next:numberShowProcess = 0", "Print:quiet = on",
          "ParticleDecays:limitTau0 = on", "ParticleDecays:tau0Max = 10", "Random:setSeed = on"]


@dataclass
class ToyBatch:
    """Duck-typed stand-in of ``flashsim.generation.GenBatch``."""

    nano: dict
    particles: ak.Array


def _jagged(rows: list[dict]) -> ak.Array:
    """``N * var * {fields}`` from per-event dicts of equal-length numpy columns."""
    table = ak.Array(rows)
    return ak.zip({f: table[f] for f in table.fields})


def _pythia(process: str, seed: int):
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in COMMON + PROCESS_SETTINGS[process] + [f"Random:seed = {seed}"]:
        pythia.readString(line)
    pythia.init()
    return pythia


def _record(event) -> dict:
    rows = []
    for i in range(event.size()):
        p = event[i]
        rows.append((p.id(), p.status(), p.mother1(), p.px(), p.py(), p.pz(), p.e(), p.m(),
                     p.xProd(), p.yProd(), p.zProd(), p.isFinal(), p.charge()))
    cols = list(zip(*rows, strict=True))
    names = ["id", "status", "m1", "px", "py", "pz", "e", "m", "x", "y", "z", "final", "charge"]
    return {n: np.asarray(c) for n, c in zip(names, cols, strict=True)}


def _is_heavy_hadron(aid: np.ndarray, flavour: int) -> np.ndarray:
    a = aid % 10000
    return ((a // 100) % 10 == flavour) | ((a // 1000) % 10 == flavour)


def _gen_event(rec: dict) -> tuple[dict, dict]:
    """Prune one Pythia event into GenPart rows and the stable-particle record."""
    aid = np.abs(rec["id"])
    n = len(aid)
    final = rec["final"].astype(bool)
    lepton = final & ((aid == 11) | (aid == 13))
    boson = np.isin(aid, (6, 23, 24, 25)) & (np.abs(rec["status"]) == 62)
    tau = (aid == 15) & (rec["status"] < 0) & ~np.isin(np.abs(rec["status"]), (44, 51, 52))
    heavy = (aid > 100) & (_is_heavy_hadron(aid, 5) | _is_heavy_hadron(aid, 4)) & ~final
    hard = (np.abs(rec["status"]) >= 21) & (np.abs(rec["status"]) <= 23) & (aid <= 6)
    keep = lepton | boson | tau | heavy | hard
    kept = np.flatnonzero(keep)
    new_index = np.full(n, -1)
    new_index[kept] = np.arange(len(kept))
    mother, flags = [], []
    for i in kept:
        j, has_hadron, has_tau, direct_tau = rec["m1"][i], False, False, False
        first = True
        mom = -1
        while j > 2:  # stop at the beam protons
            if aid[j] > 100:
                has_hadron = True
            if aid[j] == 15:
                has_tau = True
                direct_tau = direct_tau or first
            if new_index[j] >= 0 and mom < 0:
                mom = new_index[j]
            if aid[j] != aid[i]:
                first = False
            j = rec["m1"][j]
        prompt = not has_hadron
        f = (1 << 13) | (1 << 12)
        if prompt and not has_tau:
            f |= 1 | (1 << 8)
        if has_tau:
            f |= 1 << 2
            if prompt:
                f |= (1 << 3) | (1 << 9)
                if direct_tau:
                    f |= 1 << 5
        if has_hadron:
            f |= 1 << 1
        mother.append(mom)
        flags.append(f)
    px, py = rec["px"][kept], rec["py"][kept]
    pt = np.hypot(px, py)
    genpart = {
        "pt": pt, "eta": np.arcsinh(rec["pz"][kept] / np.maximum(pt, 1e-9)), "phi": np.arctan2(py, px),
        "mass": rec["m"][kept], "pdgId": rec["id"][kept],
        "status": np.where(final[kept], 1, np.where(np.abs(rec["status"][kept]) < 30, 22, 2)),
        "statusFlags": np.asarray(flags, dtype=np.int32), "genPartIdxMother": np.asarray(mother, dtype=np.int32),
    }
    f = np.flatnonzero(final)
    particles = {"px": rec["px"][f], "py": rec["py"][f], "pz": rec["pz"][f], "e": rec["e"][f],
                 "pdgId": rec["id"][f], "charge": rec["charge"][f].astype(np.float32),
                 "vx": rec["x"][f], "vy": rec["y"][f], "vz": rec["z"][f], "genPartIdx": new_index[f]}
    heavy_last = heavy & ~np.isin(np.arange(n), rec["m1"][heavy])  # roughly: last heavy hadrons
    hadrons = {"pt": np.hypot(rec["px"], rec["py"])[heavy_last],
               "eta": np.arcsinh(rec["pz"] / np.maximum(np.hypot(rec["px"], rec["py"]), 1e-9))[heavy_last],
               "phi": np.arctan2(rec["py"], rec["px"])[heavy_last],
               "flav": np.where(_is_heavy_hadron(aid, 5), 5, 4)[heavy_last]}
    return {"GenPart": genpart, "hadrons": hadrons}, particles


def _genjets(particles: ak.Array, hadrons: ak.Array) -> ak.Array:
    aid = np.abs(particles.pdgId)
    vis = particles[(aid != 12) & (aid != 14) & (aid != 16)]
    cs = fastjet.ClusterSequence(ak.zip({"px": vis.px, "py": vis.py, "pz": vis.pz, "E": vis.e}),
                                 fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4))
    jets = cs.inclusive_jets(10.0)
    pt = np.hypot(jets.px, jets.py)
    p = np.sqrt(jets.px**2 + jets.py**2 + jets.pz**2)
    eta = np.arctanh(jets.pz / p)
    phi = np.arctan2(jets.py, jets.px)
    mass = np.sqrt(np.maximum(jets.E**2 - p**2, 0))
    pair = ak.cartesian({"j": ak.zip({"eta": eta, "phi": phi}), "h": hadrons}, nested=True)
    dphi = (pair.j.phi - pair.h.phi + np.pi) % (2 * np.pi) - np.pi
    close = np.hypot(pair.j.eta - pair.h.eta, dphi) < 0.4
    flav = ak.max(ak.where(close, pair.h.flav, 0), axis=2)
    flav = ak.fill_none(flav, 0)
    out = ak.zip({"pt": pt, "eta": eta, "phi": phi, "mass": mass,
                  "hadronFlavour": flav, "partonFlavour": ak.where(flav > 0, flav, 21)})
    return out[ak.argsort(out.pt, ascending=False)]


def toy_batches(process: str, n_events: int, *, seed: int, pileup_mean: float = 30.0,
                batch_size: int = 200):
    """Yield ToyBatch objects following the GenBatch contract (slow Python-loop builder)."""
    try:
        from flashsim.generation import iter_batches
    except ImportError:
        iter_batches = None
    if iter_batches is not None:
        yield from iter_batches(process, n_events, seed=seed, pileup_mean=pileup_mean,
                                batch_size=batch_size)
        return
    pythia = _pythia(process, seed)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_events:
        n = min(batch_size, n_events - done)
        gens, parts, hads = [], [], []
        while len(gens) < n:
            if not pythia.next():
                continue
            gen, part = _gen_event(_record(pythia.event))
            gens.append(gen["GenPart"])
            hads.append(gen["hadrons"])
            parts.append(part)
        particles = _jagged(parts)
        genjet = _genjets(particles, _jagged(hads))
        genpart = _jagged(gens)
        npu = rng.poisson(pileup_mean, n).astype(np.int32)
        ids = np.arange(done, done + n, dtype=np.uint64) + 1
        nano = {
            "GenPart": genpart, "GenJet": genjet,
            "Pileup": ak.zip({"nPU": npu, "nTrueInt": np.full(n, pileup_mean, np.float32)}),
            "genWeight": np.ones(n, np.float32), "run": np.ones(n, np.uint32),
            "luminosityBlock": np.ones(n, np.uint32), "event": ids,
        }
        yield ToyBatch(nano=nano, particles=particles)
        done += n


def toy_minbias_pool(n_events: int, *, seed: int) -> ak.Array:
    """Minimum-bias particle records (contract of ``minbias_pool``)."""
    try:
        from flashsim.generation import minbias_pool
    except ImportError:
        minbias_pool = None
    if minbias_pool is not None:
        return minbias_pool(n_events, seed=seed)
    pythia = _pythia("minbias", seed)
    parts = []
    while len(parts) < n_events:
        if pythia.next():
            parts.append(_gen_event(_record(pythia.event))[1])
    return _jagged(parts)


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
    args = parser.parse_args()

    from flashsim.refdet import DetectorConfig, ReferenceDetector

    base = DetectorConfig()
    nbins = len(base.jec_offset)
    uncal = replace(base, jec_offset=(0.0,) * nbins, jec_resp_p0=(1.0,) * nbins,
                    jec_resp_p1=(0.0,) * nbins, btag_knots_x=(0.0, 1e3), btag_knots_y=(0.0, 1e3))
    detector = ReferenceDetector(toy_minbias_pool(400, seed=args.seed + 1000), config=uncal)
    rng = np.random.default_rng(args.seed)
    rows, light_scores = [], []
    t0 = time.time()
    for batch in toy_batches("ttbar", args.events, seed=args.seed, pileup_mean=args.pileup):
        chunk = detector.reconstruct(batch, rng)
        rows_and_scores(chunk, batch, rows, light_scores)
    print(f"# {args.events} ttbar events in {time.time() - t0:.0f} s")
    report(rows, light_scores, base)


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
