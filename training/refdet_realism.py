"""Realism table of a NANOAODSIM sample (reference detector or real CMS) vs CMS publications.

Usage::

    python training/refdet_realism.py sample1.root [sample2.root ...] [--direction-events 3000]

Reads GEN + RECO with uproot and prints a markdown table: muon pT resolution
(barrel/endcap, matched prompt muons, 20-100 GeV), tight-ID efficiency of prompt GEN muons,
jet response and resolution at 30/100/300 GeV (|eta| < 1.3), fraction of reco jets without
GenJet at pT > 15 and > 30 GeV, mean MET, b/c/light efficiencies at the DeepJet 2018 WPs;
for files with electrons: the pT resolution of prompt electrons (20-100 GeV, barrel
|eta| < 1.4442 / endcap 1.566-2.5), the tight and medium cut-based ID efficiency of
reconstructed prompt electrons in GEN pT bins, and electrons not from a W/Z/tau (genPartFlav
not 1 or 15) with pT > 10 GeV per event and per jet (pT > 30 GeV), all and passing the veto
and tight IDs.

Muon direction resolution, sigma(Delta eta) and sigma(Delta phi) of matched prompt muons at
10-20, 20-50 and 50-100 GeV, barrel (|eta| < 0.9) and endcap (1.2-2.4), is measured on
``--direction-events`` Drell-Yan events reconstructed in memory, not on the files: a file's
GenPart eta/phi keep 8 mantissa bits as in CMS NanoAOD, a rounding of up to 4e-3 (sigma up to
2e-3 at |phi| > 2) that would hide a 1e-4..5e-4 resolution.

CMS reference values (rounded, read off the cited figures/twikis):
- muons: JINST 13 (2018) P06015 -- resolution 1-2% barrel, 2-6% endcaps (20-100 GeV);
  tight ID efficiency 95-99%;
- jets: JINST 12 (2017) P02014 -- response 1.00 +- 0.02 after JEC; resolution (|eta|<1.3,
  PU~20) ~ 15-20% at 30 GeV, ~ 9-10% at 100 GeV, ~ 6-7% at 300 GeV;
- pileup jets: CMS-PAS-JME-16-003 -- at PU ~ 30, a large fraction of 20-30 GeV jets are from
  pileup; the real CMS DY file (40 events, tests/data/nano_dy.root) has 49% unmatched above 15 GeV;
- b tagging: JINST 13 (2018) P05011 and BTV DeepJet 2018 WPs (twiki BtagRecommendation102X):
  loose 0.0494 (b 90%, c 40%, light 10%), medium 0.2770 (b 75-80%, c 15%, light 1%),
  tight 0.7264 (b 55-65%, c 3%, light 0.1%) on ttbar jets pT > 20 GeV;
- MET: JINST 14 (2019) P07004 -- no single mean; the reference DY sample has MET mean 31 GeV;
- muon direction: the inner track's, JINST 9 (2014) P10009 Fig. 15 (isolated muons; sigma(eta)
  = sigma(cot theta) sin theta): barrel sigma(eta) 4e-4 / 3.6e-4 / 2.7e-4 and sigma(phi)
  2-3e-4 / 1-2e-4 / 1e-4 at 10-20 / 20-50 / 50-100 GeV; endcaps (1.4-2.5) sigma(eta) 5-6e-4 /
  4-4.5e-4 / 4e-4, sigma(phi) 4-5e-4 / 2-3e-4 / 2e-4;
- electrons: JINST 10 (2015) P06005 -- momentum resolution of Z electrons 1.7-4.5% depending
  on eta and bremsstrahlung (about 2% barrel, 3-4.5% endcap); Fall17 V2 cut-based WPs tuned
  for about 70% (tight) / 80% (medium) efficiency on Z electrons (EGM, twiki
  CutBasedElectronIdentificationRun2), lower below 20 GeV (JINST 16 (2021) P05032);
  electrons from jets: the 40-event CMS DY file (run this script on it) has 0.125 per event
  with pT > 10 GeV (5 electrons), 0.05 passing the veto ID.
"""

from __future__ import annotations

import argparse

import awkward as ak
import numpy as np

__all__ = ["direction_resolution", "measure", "measure_electrons", "muon_direction_residuals", "table"]

CMS = {
    "muon_res_barrel": "0.010-0.020 (P06015)",
    "muon_res_endcap": "0.020-0.060 (P06015)",
    "muon_tight_eff": "0.95-0.99 (P06015)",
    "jet_resp_30": "1.00 +- 0.02 (P02014)", "jet_resp_100": "1.00 +- 0.02 (P02014)",
    "jet_resp_300": "1.00 +- 0.02 (P02014)",
    "jet_res_30": "0.15-0.20 (P02014)", "jet_res_100": "0.09-0.10 (P02014)", "jet_res_300": "0.06-0.07 (P02014)",
    "unmatched_15": "~0.49 (reference DY, PU~30)", "unmatched_30": "~0.1-0.2 (JME-16-003)",
    "met_mean": "31 GeV (reference DY)",
    "b_loose": "~0.90", "c_loose": "~0.40", "l_loose": "~0.10",
    "b_medium": "~0.75-0.80", "c_medium": "~0.15", "l_medium": "~0.01",
    "b_tight": "~0.55-0.65", "c_tight": "~0.03", "l_tight": "~0.001",
    "muon_deta_barrel_10_20": "~4e-4 (P10009)", "muon_deta_barrel_20_50": "~3.6e-4 (P10009)",
    "muon_deta_barrel_50_100": "~2.7e-4 (P10009)", "muon_dphi_barrel_10_20": "2-3e-4 (P10009)",
    "muon_dphi_barrel_20_50": "1-2e-4 (P10009)", "muon_dphi_barrel_50_100": "~1e-4 (P10009)",
    "muon_deta_endcap_10_20": "5-6e-4 (P10009)", "muon_deta_endcap_20_50": "4-4.5e-4 (P10009)",
    "muon_deta_endcap_50_100": "~4e-4 (P10009)", "muon_dphi_endcap_10_20": "4-5e-4 (P10009)",
    "muon_dphi_endcap_20_50": "2-3e-4 (P10009)", "muon_dphi_endcap_50_100": "~2e-4 (P10009)",
    "ele_res_barrel": "~0.017-0.025 (P06005)", "ele_res_endcap": "~0.03-0.045 (P06005)",
    "ele_tight_eff": "~0.70 (EGM Fall17 V2 design)", "ele_medium_eff": "~0.80 (EGM Fall17 V2 design)",
    "ele_nonprompt_per_event": "0.125 (CMS DY file, 40 events)",
    "ele_nonprompt_veto_per_event": "0.05 (CMS DY file, 40 events)",
}
DIRECTION_PT_BINS = ((10, 20), (20, 50), (50, 100))
REGIONS = {"barrel": (0.0, 0.9), "endcap": (1.2, 2.4)}
ELECTRON_PT_BINS = (10, 20, 35, 50, 100)
WPS = {"loose": 0.0494, "medium": 0.2770, "tight": 0.7264}


def _robust_sigma(x: np.ndarray) -> float:
    q16, q84 = np.quantile(x, [0.16, 0.84])
    return float((q84 - q16) / 2)


def measure(chunks: list[dict]) -> dict[str, float]:
    """Realism numbers from chunks holding GenPart, GenJet, Muon, Jet, MET."""
    res = {"barrel": [], "endcap": []}
    tight_num = tight_den = 0
    resp = {30: [], 100: [], 300: []}
    n15 = u15 = n30 = u30 = 0
    met = []
    tags = {f: {wp: [0, 0] for wp in WPS} for f in (5, 4, 0)}
    for c in chunks:
        mu, gp, jet, gj = c["Muon"], c["GenPart"], c["Jet"], c["GenJet"]
        m = mu[(mu.genPartIdx >= 0) & (mu.genPartFlav == 1)]
        g = gp[m.genPartIdx]
        ok = (g.pt > 20) & (g.pt < 100)
        r = ak.to_numpy(ak.flatten((m.pt / g.pt)[ok]))
        eta = np.abs(ak.to_numpy(ak.flatten(g.eta[ok])))
        res["barrel"].append(r[eta < 0.9])
        res["endcap"].append(r[(eta > 1.2) & (eta < 2.4)])
        prompt = gp[(np.abs(gp.pdgId) == 13) & (gp.status == 1) & ((gp.statusFlags & 1) == 1)
                    & (gp.pt > 20) & (np.abs(gp.eta) < 2.4)]
        tight_den += int(ak.sum(ak.num(prompt, axis=1)))
        tm = m[m.tightId & (g.pt > 20) & (np.abs(g.eta) < 2.4)]
        tight_num += int(ak.sum(ak.num(tm, axis=1)))
        # real NanoAOD can point past the stored GenJets (pT < 10 GeV, not kept)
        matched = jet[(jet.genJetIdx >= 0) & (jet.genJetIdx < ak.num(gj))]
        mg = gj[matched.genJetIdx]
        central = np.abs(mg.eta) < 1.3
        for pt0 in resp:
            sel = central & (mg.pt > pt0 * 0.8) & (mg.pt < pt0 * 1.25)
            resp[pt0].append(ak.to_numpy(ak.flatten((matched.pt / mg.pt)[sel])))
        n15 += int(ak.sum(jet.pt > 15))
        u15 += int(ak.sum((jet.pt > 15) & (jet.genJetIdx < 0)))
        n30 += int(ak.sum(jet.pt > 30))
        u30 += int(ak.sum((jet.pt > 30) & (jet.genJetIdx < 0)))
        met.append(ak.to_numpy(c["MET"].pt))
        tj = jet[(jet.pt > 20) & (np.abs(jet.eta) < 2.5) & (jet.genJetIdx >= 0)]
        for f in tags:
            sel = tj.btagDeepFlavB[tj.hadronFlavour == f]
            for wp, cut in WPS.items():
                tags[f][wp][0] += int(ak.sum(sel > cut))
                tags[f][wp][1] += int(ak.sum(ak.num(sel, axis=1)))
    out = {}
    for reg in res:
        r = np.concatenate(res[reg])
        out[f"muon_res_{reg}"] = _robust_sigma(r) if len(r) > 10 else float("nan")
    out["muon_tight_eff"] = tight_num / max(tight_den, 1)
    for pt0, rs in resp.items():
        r = np.concatenate(rs)
        out[f"jet_resp_{pt0}"] = float(np.median(r)) if len(r) > 10 else float("nan")
        out[f"jet_res_{pt0}"] = _robust_sigma(r) / max(float(np.median(r)), 1e-9) if len(r) > 10 else float("nan")
    out["unmatched_15"] = u15 / max(n15, 1)
    out["unmatched_30"] = u30 / max(n30, 1)
    out["met_mean"] = float(np.mean(np.concatenate(met)))
    if all("Electron" in c for c in chunks):
        out.update(measure_electrons(chunks))
    for f, name in ((5, "b"), (4, "c"), (0, "l")):
        for wp, (k, n) in tags[f].items():
            out[f"{name}_{wp}"] = k / max(n, 1)
    return out


def muon_direction_residuals(muons: ak.Array, genpart: ak.Array) -> dict[str, np.ndarray]:
    """GEN pT, |eta| and the residuals Delta eta, Delta phi of matched prompt muons."""
    m = muons[(muons.genPartIdx >= 0) & (muons.genPartFlav == 1)]
    g = genpart[m.genPartIdx]

    def flat(values):
        return ak.to_numpy(ak.flatten(values)).astype(np.float64)

    return {"pt": flat(g.pt), "abseta": np.abs(flat(g.eta)), "deta": flat(m.eta) - flat(g.eta),
            "dphi": np.angle(np.exp(1j * (flat(m.phi) - flat(g.phi))))}


def direction_resolution(residuals: dict[str, np.ndarray]) -> dict[str, float]:
    """Robust sigma (half the central 68% width) of Delta eta and Delta phi per region and
    GEN pT bin."""
    out = {}
    for coordinate in ("deta", "dphi"):
        for region, (lo, hi) in REGIONS.items():
            for pt_lo, pt_hi in DIRECTION_PT_BINS:
                sel = ((residuals["abseta"] >= lo) & (residuals["abseta"] < hi)
                       & (residuals["pt"] > pt_lo) & (residuals["pt"] < pt_hi))
                values = residuals[coordinate][sel]
                out[f"muon_{coordinate}_{region}_{pt_lo}_{pt_hi}"] = (
                    _robust_sigma(values) if len(values) > 10 else float("nan"))
    return out


def reconstructed_in_memory(n_events: int, seed: int) -> dict[str, np.ndarray]:
    """Muon direction residuals of ``n_events`` Drell-Yan events (default pileup) put through
    the reference detector in memory, against the unrounded GEN muons."""
    from flashsim.generation import iter_batches, minbias_pool
    from flashsim.production import pileup_pool_size
    from flashsim.refdet import ReferenceDetector
    from flashsim.seeds import seeded_rng

    detector = ReferenceDetector(minbias_pool(pileup_pool_size(30.0), seed=seed))
    parts = []
    for index, batch in enumerate(iter_batches("dy_mumu", n_events, seed=seed)):
        reco = detector.reconstruct(batch, seeded_rng(seed, "detector", 0, index))
        parts.append(muon_direction_residuals(reco["Muon"], batch.nano["GenPart"]))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def measure_electrons(chunks: list[dict]) -> dict[str, float]:
    """Electron rows (module doc) from chunks holding GenPart, Electron, Jet."""
    ratio, abseta, level, gen_pt, n_events = [], [], [], [], 0
    fakes = {"all": 0, "veto": 0, "tight": 0}
    jets = jets_with_fake = 0
    for c in chunks:
        e, gp, jet = c["Electron"], c["GenPart"], c["Jet"]
        n_events += len(e)
        m = e[(e.genPartIdx >= 0) & (e.genPartFlav == 1)]
        g = gp[m.genPartIdx]
        ratio.append(ak.to_numpy(ak.flatten(m.pt / g.pt)))
        abseta.append(np.abs(ak.to_numpy(ak.flatten(g.eta))))
        gen_pt.append(ak.to_numpy(ak.flatten(g.pt)))
        level.append(ak.to_numpy(ak.flatten(m.cutBased)))
        other = e[(e.genPartFlav != 1) & (e.genPartFlav != 15) & (e.pt > 10)]
        fakes["all"] += int(ak.sum(ak.num(other)))
        fakes["veto"] += int(ak.sum(other.cutBased >= 1))
        fakes["tight"] += int(ak.sum(other.cutBased >= 4))
        hard_jets = ak.local_index(jet)[jet.pt > 30]
        jets += int(ak.sum(ak.num(hard_jets)))
        owned = ak.any(other.jetIdx[:, None, :] == hard_jets[:, :, None], axis=2)
        jets_with_fake += int(ak.sum(owned))
    ratio, abseta, gen_pt, level = map(np.concatenate, (ratio, abseta, gen_pt, level))
    window = (gen_pt > 20) & (gen_pt < 100)
    out = {}
    for name, sel in (("barrel", abseta < 1.4442), ("endcap", (abseta > 1.566) & (abseta < 2.5))):
        r = ratio[window & sel]
        out[f"ele_res_{name}"] = _robust_sigma(r) if len(r) > 10 else float("nan")
    inside = abseta < 2.5
    out["ele_tight_eff"] = float(np.mean(level[inside & (gen_pt > 20)] >= 4))
    out["ele_medium_eff"] = float(np.mean(level[inside & (gen_pt > 20)] >= 3))
    for lo, hi in zip(ELECTRON_PT_BINS[:-1], ELECTRON_PT_BINS[1:], strict=True):
        sel = inside & (gen_pt > lo) & (gen_pt < hi)
        for wp, cut in (("tight", 4), ("medium", 3)):
            out[f"ele_{wp}_eff_{lo}_{hi}"] = float(np.mean(level[sel] >= cut)) if sel.any() else float("nan")
    out["ele_nonprompt_per_event"] = fakes["all"] / max(n_events, 1)
    out["ele_nonprompt_veto_per_event"] = fakes["veto"] / max(n_events, 1)
    out["ele_nonprompt_tight_per_event"] = fakes["tight"] / max(n_events, 1)
    out["ele_nonprompt_per_jet30"] = jets_with_fake / max(jets, 1)
    return out


def table(values: dict[str, float]) -> str:
    """Markdown table of measured values next to CMS's."""
    lines = ["| quantity | this sample | CMS |", "|---|---|---|"]
    for key, value in values.items():
        lines.append(f"| {key} | {value:.4g} | {CMS.get(key, '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--direction-events", type=int, default=3000,
                        help="Drell-Yan events reconstructed in memory for the muon direction rows")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from flashsim.nanoaod.reader import open_tree, read_chunk

    chunks = []
    for path in args.files:
        names = ["GenPart", "GenJet", "Muon", "Jet", "MET"]
        if "nElectron" in open_tree(path).keys():
            names.append("Electron")
        chunks.append(read_chunk(path, names))
    values = measure(chunks)
    if args.direction_events > 0:
        values |= direction_resolution(reconstructed_in_memory(args.direction_events, args.seed))
    print(table(values))


if __name__ == "__main__":
    main()
