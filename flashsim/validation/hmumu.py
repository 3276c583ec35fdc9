"""The VBF H→μμ benchmark: one coffea analysis run on full and flash simulation.

Selection (CMS HIG-19-006, VBF category, 2018 conventions):

1. two muons with ``tightId``, ``pfRelIso04_all < 0.25``, pT > 20 GeV, |η| < 2.4 (the two
   leading ones form the pair);
2. opposite charge, leading muon pT > 26 GeV;
3. 110 < m_μμ < 150 GeV;
4. no b jet: no selected jet with |η| < 2.4 and ``btagDeepFlavB`` > 0.2770 (medium DeepJet);
5. two selected jets, leading pT > 35 GeV. Selected jets: pT > 25 GeV, |η| < 4.7, tight ID
   (``jetId & 2``), loose pileup ID (``puId & 4``, 2018 NanoAODv6 bits) for pT < 50 GeV,
   ΔR > 0.4 from both muons;
6. m_jj > 400 GeV and |Δη_jj| > 2.5.

Regions: signal 115 < m_μμ < 135 GeV, sidebands 110–115 and 135–150 GeV.

Event weight: ``genWeight · σ · L / Σ genEventSumw`` (Runs tree). Flash files with K
replicas per GEN event carry ``genEventSumw`` scaled by K, so each replica weighs 1/K.
Statistical errors of flash yields are computed per *source* GEN event,
:math:`\\sigma^2 = \\sum_\\text{source} (\\sum_\\text{replicas} w)^2`, because replicas share
their GEN event and are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from coffea import processor

from flashsim.errors import FlashSimError
from flashsim.runtime import QuietNanoAODSchema, quiet_coffea
from flashsim.validation import metrics, plots
from flashsim.validation.report import write_json

__all__ = [
    "BENCHMARK_PROCESSES",
    "CROSS_SECTIONS_PB",
    "CUTS",
    "FEATURES",
    "HELD_OUT_SEED_OFFSET",
    "OBSERVABLES",
    "HmumuProcessor",
    "analyse",
    "asimov_significance",
    "event_scales",
    "run_analysis",
    "run_hmumu_benchmark",
    "select_vbf_hmumu",
]

#: Held-out samples use seed HELD_OUT_SEED_OFFSET + seed, so they never repeat training seeds.
HELD_OUT_SEED_OFFSET = 1_000_000
#: The background is Drell-Yan inside the H→μμ fit window: only 0.5% of inclusive
#: (m > 50 GeV) DY events pass the dimuon selection within 110-150 GeV, which left a
#: 50k-event inclusive sample with 7 events after the VBF cuts (the window sample: 156).
BENCHMARK_PROCESSES = {"signal": "vbf_hmumu", "background": "dy_mumu_105_160"}
#: σ·BR in pb when the process does not define ``cross_section_pb``: VBF H (125 GeV, 13 TeV,
#: LHC HXSWG YR4) 3.782 pb × BR(H→μμ) 2.176e-4; DY→μμ (m > 50 GeV, NNLO) 6077.2 pb / 3; the
#: 105-160 GeV window is that times the window's share of the m > 50 GeV line shape,
#: 0.02209 ± 0.00008 (Pythia 8 hard process with these settings, 40k events each).
_DY_MUMU_PB = 6077.22 / 3
CROSS_SECTIONS_PB = {"vbf_hmumu": 3.782 * 2.176e-4, "dy_mumu": _DY_MUMU_PB,
                     "dy_mumu_105_160": _DY_MUMU_PB * 0.02209}
DEFAULT_LUMI_FB = 137.0  # CMS Run 2
BTAG_MEDIUM = metrics.DEEPJET_2018_WPS["medium"]
CUTS = ("all events", "2 tight isolated muons", "opposite sign, leading pT > 26",
        "110 < m_mumu < 150", "b-jet veto", "2 jets, leading pT > 35", "m_jj > 400, |deta_jj| > 2.5")
SIGNAL_REGION = (115.0, 135.0)
MASS_WINDOW = (110.0, 150.0)
#: name -> (axis label, bin edges) of the analysis observables.
OBSERVABLES = {
    "m_mumu": ("$m_{\\mu\\mu}$ [GeV]", np.linspace(110, 150, 21)),
    "pt_mumu": ("$p_T^{\\mu\\mu}$ [GeV]", np.linspace(0, 300, 16)),
    "eta_mumu": ("$\\eta_{\\mu\\mu}$", np.linspace(-5, 5, 21)),
    "m_jj": ("$m_{jj}$ [GeV]", np.linspace(400, 3000, 14)),
    "deta_jj": ("$|\\Delta\\eta_{jj}|$", np.linspace(2.5, 9, 14)),
    "zstar": ("Zeppenfeld $z^*$", np.linspace(-3, 3, 13)),
    "j1_pt": ("leading jet $p_T$ [GeV]", np.linspace(35, 435, 17)),
    "j1_eta": ("leading jet $\\eta$", np.linspace(-4.7, 4.7, 19)),
    "j2_pt": ("subleading jet $p_T$ [GeV]", np.linspace(25, 225, 17)),
    "j2_eta": ("subleading jet $\\eta$", np.linspace(-4.7, 4.7, 19)),
    "pt_balance": ("$p_T$ balance", np.linspace(0, 1, 11)),
}
#: Inputs of the signal-vs-background classifier (m_mumu left out: the score stays
#: decorrelated from the mass, as in the CMS analysis' categorisation).
FEATURES = ("pt_mumu", "eta_mumu", "m_jj", "deta_jj", "zstar", "j1_pt", "j1_eta", "j2_pt",
            "j2_eta", "pt_balance")


def _leading(collection: ak.Array, field: str, i: int) -> np.ndarray:
    padded = ak.pad_none(collection[field], i + 1, axis=1)[:, i]
    return ak.to_numpy(ak.fill_none(padded, np.nan)).astype(np.float64)


def _p4(pt, eta, phi, mass) -> np.ndarray:
    """(px, py, pz, E) of numpy kinematics, shape (4, n)."""
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                     np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)])


def _kinematics(p4: np.ndarray) -> dict[str, np.ndarray]:
    px, py, pz, e = p4
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"pt": pt, "eta": np.arcsinh(pz / pt),
                "mass": np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0)),
                "y": 0.5 * np.log((e + pz) / (e - pz))}


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.sqrt((eta1 - eta2) ** 2 + dphi**2)


def select_vbf_hmumu(events: ak.Array) -> dict[str, np.ndarray]:
    """Apply the selection to NanoEvents (or any array with Muon and Jet records).

    Returns numpy columns, one entry per event: ``stage`` (number of :data:`CUTS` after the
    first passed in sequence; ``len(CUTS) - 1`` = fully selected), ``region`` (1 signal
    region, 2 sideband, 0 outside 110–150 GeV) and the :data:`OBSERVABLES` (NaN where not
    defined).
    """
    mu = events.Muon
    good = mu[mu.tightId & (mu.pfRelIso04_all < 0.25) & (abs(mu.eta) < 2.4) & (mu.pt > 20)]
    m1 = {f: _leading(good, f, 0) for f in ("pt", "eta", "phi", "mass", "charge")}
    m2 = {f: _leading(good, f, 1) for f in ("pt", "eta", "phi", "mass", "charge")}
    two_muons = ak.to_numpy(ak.num(good)) >= 2
    opposite = two_muons & (m1["charge"] * m2["charge"] < 0) & (m1["pt"] > 26)
    dimuon_p4 = _p4(m1["pt"], m1["eta"], m1["phi"], m1["mass"]) + \
        _p4(m2["pt"], m2["eta"], m2["phi"], m2["mass"])
    dimuon = _kinematics(dimuon_p4)
    in_window = opposite & (dimuon["mass"] > MASS_WINDOW[0]) & (dimuon["mass"] < MASS_WINDOW[1])

    jet = events.Jet
    # NaN muon coordinates (no muon) give a NaN ΔR, which must not remove jets.
    clean = ((_delta_r(jet.eta, jet.phi, m1["eta"], m1["phi"]) > 0.4) | np.isnan(m1["eta"])) & \
        ((_delta_r(jet.eta, jet.phi, m2["eta"], m2["phi"]) > 0.4) | np.isnan(m2["eta"]))
    jets = jet[(jet.pt > 25) & (abs(jet.eta) < 4.7) & ((jet.jetId & 2) > 0)
               & ((jet.pt >= 50) | ((jet.puId & 4) > 0)) & clean]
    b_veto = ~ak.to_numpy(ak.any((abs(jets.eta) < 2.4) & (jets.btagDeepFlavB > BTAG_MEDIUM),
                                 axis=1))
    j1 = {f: _leading(jets, f, 0) for f in ("pt", "eta", "phi", "mass")}
    j2 = {f: _leading(jets, f, 1) for f in ("pt", "eta", "phi", "mass")}
    two_jets = (ak.to_numpy(ak.num(jets)) >= 2) & (j1["pt"] > 35)
    p4_j1 = _p4(j1["pt"], j1["eta"], j1["phi"], j1["mass"])
    p4_j2 = _p4(j2["pt"], j2["eta"], j2["phi"], j2["mass"])
    dijet = _kinematics(p4_j1 + p4_j2)
    deta = np.abs(j1["eta"] - j2["eta"])
    vbf = two_jets & (dijet["mass"] > 400) & (deta > 2.5)

    cuts = np.stack([two_muons, opposite, in_window, b_veto, two_jets, vbf])
    stage = np.cumprod(cuts, axis=0).sum(axis=0).astype(np.int8)
    y1, y2 = _kinematics(p4_j1)["y"], _kinematics(p4_j2)["y"]
    total_pt = np.hypot(dimuon_p4[0] + p4_j1[0] + p4_j2[0], dimuon_p4[1] + p4_j1[1] + p4_j2[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        zstar = (dimuon["y"] - 0.5 * (y1 + y2)) / np.abs(y1 - y2)
        balance = total_pt / (dimuon["pt"] + j1["pt"] + j2["pt"])
    mass = np.where(opposite, dimuon["mass"], np.nan)
    region = np.where((mass > SIGNAL_REGION[0]) & (mass < SIGNAL_REGION[1]), 1,
                      np.where((mass > MASS_WINDOW[0]) & (mass < MASS_WINDOW[1]), 2, 0))
    return {"stage": stage, "region": region.astype(np.int8), "m_mumu": mass,
            "pt_mumu": np.where(opposite, dimuon["pt"], np.nan),
            "eta_mumu": np.where(opposite, dimuon["eta"], np.nan),
            "m_jj": dijet["mass"], "deta_jj": deta, "zstar": zstar,
            "j1_pt": j1["pt"], "j1_eta": j1["eta"], "j2_pt": j2["pt"], "j2_eta": j2["eta"],
            "pt_balance": balance}


class HmumuProcessor(processor.ProcessorABC):
    """coffea processor: per dataset, the event ids, weights and :func:`select_vbf_hmumu`
    columns (accumulated as lists of per-chunk dicts) and the weighted cut flow.

    ``scales`` maps dataset → factor that turns ``genWeight`` into an expected yield
    (see :func:`event_scales`); datasets not in it get weight ``genWeight``.
    """

    def __init__(self, scales: dict[str, float] | None = None) -> None:
        self.scales = dict(scales or {})

    def process(self, events: ak.Array) -> dict:
        """Select one chunk of NanoEvents."""
        dataset = events.metadata["dataset"]
        columns = select_vbf_hmumu(events)
        n = len(events)
        weight = (ak.to_numpy(events.genWeight).astype(np.float64) if "genWeight" in events.fields
                  else np.ones(n)) * self.scales.get(dataset, 1.0)
        columns["weight"] = weight
        columns["run"] = ak.to_numpy(events.run).astype(np.uint32)
        columns["luminosityBlock"] = ak.to_numpy(events.luminosityBlock).astype(np.uint32)
        columns["event"] = ak.to_numpy(events.event).astype(np.uint64)
        columns["replica"] = (ak.to_numpy(events.flashsimReplica).astype(np.uint32)
                              if "flashsimReplica" in events.fields else np.zeros(n, np.uint32))
        stage = columns["stage"]
        cutflow = {cut: float(weight[stage >= i].sum()) for i, cut in enumerate(CUTS)}
        return {dataset: {"columns": [columns], "cutflow": cutflow, "entries": n}}

    def postprocess(self, accumulator: dict) -> dict:
        """Nothing to do: columns are concatenated by :func:`run_analysis`."""
        return accumulator


def _runs_sumw(path: Path) -> float | None:
    with uproot.open(path) as file:
        if "Runs" not in file:
            return None
        runs = file["Runs"]
        for name in ("genEventSumw", "genEventSumw_"):  # NanoAOD <= v6 has the underscore
            if name in runs:
                return float(np.sum(runs[name].array(library="np")))
    return None


def event_scales(fileset: dict[str, Sequence[str | Path]], cross_sections_pb: dict[str, float],
                 lumi_fb: float) -> dict[str, float]:
    """Per dataset σ[pb] · 1000 · L[fb⁻¹] / Σ genEventSumw (Runs trees of its files).

    Raises :class:`FlashSimError` for missing files or files without a Runs tree.
    """
    scales = {}
    for dataset, paths in fileset.items():
        total = 0.0
        for path in map(Path, paths):
            if not path.is_file():
                raise FlashSimError(f"{path} does not exist: check the sample paths of {dataset}")
            sumw = _runs_sumw(path)
            if sumw is None:
                raise FlashSimError(f"{path} has no Runs tree with genEventSumw: pass NanoAOD files "
                                    "written by flashsim or CMSSW")
            total += sumw
        if total == 0:
            raise FlashSimError(f"the files of {dataset} have genEventSumw = 0: they hold no events")
        scales[dataset] = cross_sections_pb[dataset] * 1000.0 * lumi_fb / total
    return scales


def run_analysis(fileset: dict[str, Sequence[str | Path]], scales: dict[str, float] | None = None,
                 *, chunksize: int = 100_000) -> dict[str, dict]:
    """Run :class:`HmumuProcessor` over ``fileset`` (dataset → files) with coffea's
    ``Runner`` and iterative executor; return dataset → {"columns": {name: array},
    "cutflow": {cut: sumw}}."""
    for dataset, paths in fileset.items():
        for path in map(Path, paths):
            if not path.is_file():
                raise FlashSimError(f"{path} does not exist: check the sample paths of {dataset}")
    runner = processor.Runner(executor=processor.IterativeExecutor(),
                              schema=QuietNanoAODSchema, chunksize=chunksize)
    with quiet_coffea():
        output = runner({d: [str(p) for p in paths] for d, paths in fileset.items()},
                        processor_instance=HmumuProcessor(scales), treename="Events")
    result = {}
    for dataset in fileset:
        if dataset not in output:  # only empty files: no chunk was processed
            empty = {k: np.empty(0) for k in ("stage", "region", "weight", *OBSERVABLES)}
            result[dataset] = {"columns": empty, "cutflow": dict.fromkeys(CUTS, 0.0)}
            continue
        parts = output[dataset]["columns"]
        result[dataset] = {"columns": {k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
                           "cutflow": output[dataset]["cutflow"]}
    return result


def _source_index(columns: dict) -> np.ndarray:
    ids = np.empty(len(columns["event"]), dtype=[("r", "u4"), ("l", "u4"), ("e", "u8")])
    ids["r"], ids["l"], ids["e"] = columns["run"], columns["luminosityBlock"], columns["event"]
    return np.unique(ids, return_inverse=True)[1].ravel()


def _binned_yield(values: np.ndarray, weight: np.ndarray, source: np.ndarray, edges: np.ndarray):
    """Sum of weights per bin and its variance per source event, Σ_s (Σ_{replicas in bin} w)²."""
    which = np.digitize(values, edges) - 1
    inside = (which >= 0) & (which < len(edges) - 1)
    nb = len(edges) - 1
    compact = np.unique(source[inside], return_inverse=True)[1].ravel()
    grid = np.bincount(compact * nb + which[inside], weight[inside],
                       minlength=(compact.max() + 1 if compact.size else 0) * nb).reshape(-1, nb)
    return grid.sum(axis=0), (grid**2).sum(axis=0)


def _yield(weight: np.ndarray, source: np.ndarray, mask: np.ndarray) -> dict:
    per_source = np.bincount(source[mask], weight[mask])
    return {"yield": float(weight[mask].sum()), "err": float(np.sqrt((per_source**2).sum())),
            "err_naive": float(np.sqrt((weight[mask] ** 2).sum())),
            "entries": int(mask.sum())}


def asimov_significance(s: np.ndarray, b: np.ndarray) -> float:
    """Combined Asimov significance :math:`\\sqrt{\\sum_i 2((s_i+b_i)\\ln(1+s_i/b_i) - s_i)}`
    over bins with b > 0 and s ≥ 0 (NaN if none)."""
    s, b = np.asarray(s, float), np.asarray(b, float)
    use = (b > 0) & (s >= 0)
    if not use.any():
        return math.nan
    s, b = s[use], b[use]
    return float(math.sqrt(max(np.sum(2 * ((s + b) * np.log1p(s / b) - s)), 0.0)))


def _shape_chi2(h1: tuple, h2: tuple) -> dict:
    """χ²/ndf between two unit-normalised histograms (sum, variance), ndf = bins used − 1."""
    (v1, e1), (v2, e2) = h1, h2
    n1, n2 = v1.sum(), v2.sum()
    if n1 <= 0 or n2 <= 0:
        return {"chi2": math.nan, "ndf": 0, "chi2_ndf": math.nan}
    var = e1 / n1**2 + e2 / n2**2
    use = var > 0
    chi2 = float(np.sum((v1[use] / n1 - v2[use] / n2) ** 2 / var[use]))
    ndf = int(use.sum()) - 1
    return {"chi2": chi2, "ndf": ndf, "chi2_ndf": chi2 / ndf if ndf > 0 else math.nan}


def analyse(
    results: dict[str, dict],
    samples: dict[str, str],
    outdir: Path,
    *,
    plot: bool = True,
    seed: int = 0,
) -> dict:
    """Benchmark metrics from :func:`run_analysis` output.

    ``results`` has datasets named ``<process>_full`` and ``<process>_flash``; ``samples`` maps
    role ('signal', 'background') → process. Computes cut flows with per-source-event errors,
    yields in the signal region and sidebands, observable shapes (χ²/ndf, W1/σ), the
    signal-vs-background classifier (trained on the even-``event`` half of the full-simulation
    events, evaluated on the odd half of full and flash) with the Asimov significance, and
    the effect of oversampling on the flash errors. Figures go to ``outdir``.
    """
    out: dict = {"cutflow": {}, "yields": {}, "observables": {}, "oversampling": {}}
    final = len(CUTS) - 1
    prepared = {}
    for dataset, res in results.items():
        c = res["columns"]
        source = _source_index(c) if len(c["stage"]) else np.empty(0, np.int64)
        replicas = int(c["replica"].max()) + 1 if len(c["stage"]) else 1
        prepared[dataset] = (c, source, replicas)
        out["cutflow"][dataset] = [dict(cut=cut, **_yield(c["weight"], source, c["stage"] >= i))
                                   for i, cut in enumerate(CUTS)]
        selected = c["stage"] >= final
        out["yields"][dataset] = {
            "signal_region": _yield(c["weight"], source, selected & (c["region"] == 1)),
            "sidebands": _yield(c["weight"], source, selected & (c["region"] == 2))}
        if dataset.endswith("_flash"):
            sr = selected & (c["region"] == 1)
            first = sr & (c["replica"] == 0)
            out["oversampling"][dataset] = {
                "replicas": replicas,
                "all_replicas": _yield(c["weight"], source, sr),
                "replica0_only": _yield(c["weight"] * replicas, source, first)}
            o = out["oversampling"][dataset]
            e_all, e_one = o["all_replicas"]["err"], o["replica0_only"]["err"]
            o["effective_gain"] = (e_one / e_all) ** 2 if e_all > 0 else math.nan

    for role, process in samples.items():
        full, flash = f"{process}_full", f"{process}_flash"
        if full not in prepared or flash not in prepared:
            continue
        (cf, sf, _), (cg, sg, _) = prepared[full], prepared[flash]
        mf = (cf["stage"] >= final) & (cf["region"] > 0)
        mg = (cg["stage"] >= final) & (cg["region"] > 0)
        out["observables"][role] = {}
        for name, (label, edges) in OBSERVABLES.items():
            hf = _binned_yield(cf[name][mf], cf["weight"][mf], sf[mf], edges)
            hg = _binned_yield(cg[name][mg], cg["weight"][mg], sg[mg], edges)
            out["observables"][role][name] = {
                **_shape_chi2(hf, hg),
                "w1_norm": metrics.normalised_wasserstein(cf[name][mf], cg[name][mg])}
            if plot and mf.any() and mg.any():
                plots.plot_comparison(cf[name][mf], cg[name][mg], edges, label,
                                      outdir / f"hmumu_{role}_{name}.png",
                                      full_weights=cf["weight"][mf],
                                      flash_weights=cg["weight"][mg], note=f"{role} ({process})")
    out["classifier"] = _classifier(prepared, samples, outdir if plot else None, seed)
    return out


def _features(c: dict, mask: np.ndarray) -> np.ndarray:
    return np.column_stack([c[f][mask] for f in FEATURES])


def _classifier(prepared: dict, samples: dict[str, str], outdir: Path | None, seed: int) -> dict:
    """Signal-vs-background HistGradientBoosting trained on full simulation only."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    sig, bkg = samples.get("signal"), samples.get("background")
    names = [f"{p}_{r}" for p in (sig, bkg) for r in ("full", "flash")]
    if sig is None or bkg is None or any(n not in prepared for n in names):
        return {"status": "needs signal and background, full and flash"}
    final = len(CUTS) - 1

    def selected(dataset: str, parity: int) -> np.ndarray:
        c = prepared[dataset][0]
        return (c["stage"] >= final) & (c["region"] > 0) & (c["event"] % 2 == parity)

    train = {p: selected(f"{p}_full", 0) for p in (sig, bkg)}
    if min(train[p].sum() for p in train) < 20:
        return {"status": f"too few selected full-simulation events to train (signal "
                          f"{int(train[sig].sum())}, background {int(train[bkg].sum())}; need 20 "
                          "each): generate more events with -n"}
    x = np.concatenate([_features(prepared[f"{p}_full"][0], train[p]) for p in (sig, bkg)])
    y = np.concatenate([np.full(train[p].sum(), p == sig, dtype=np.int8) for p in (sig, bkg)])
    w = np.concatenate([np.abs(prepared[f"{p}_full"][0]["weight"][train[p]]) for p in (sig, bkg)])
    for label in (0, 1):  # balance the classes: σ ratios of 10⁶ would teach nothing
        w[y == label] /= w[y == label].sum()
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    model.fit(x, y, sample_weight=w * len(w))

    out: dict = {"features": list(FEATURES), "train_events": {sig: int(train[sig].sum()),
                                                                bkg: int(train[bkg].sum())}}
    scores, sources, keys = {}, {}, {}
    for process in (sig, bkg):
        for role in ("full", "flash"):
            dataset = f"{process}_{role}"
            c, source, _ = prepared[dataset]
            mask = selected(dataset, 1) & (c["region"] == 1)
            # Test half = odd event numbers: scale its yield up to the whole sample.
            odd = np.mean(c["event"] % 2 == 1) if len(c["event"]) else 1.0
            scores[dataset] = (model.predict_proba(_features(c, mask))[:, 1] if mask.any()
                               else np.empty(0), c["weight"][mask] / max(odd, 1e-12))
            sources[dataset] = source[mask]
            keys[dataset] = {k: c[k][mask] for k in ("run", "luminosityBlock", "event")}
    edges = np.unique(np.concatenate([[0.0], np.quantile(scores[f"{sig}_full"][0], np.linspace(
        0, 1, 11)[1:-1]) if scores[f"{sig}_full"][0].size else [], [1.0 + 1e-9]]))
    hists = {d: _binned_yield(v, w, sources[d], edges) for d, (v, w) in scores.items()}
    out["score_edges"] = edges
    out["roc_auc"] = {}
    for role in ("full", "flash"):
        s, b = hists[f"{sig}_{role}"][0], hists[f"{bkg}_{role}"][0]
        out[f"asimov_Z_{role}"] = asimov_significance(s, b)
        out[f"yields_{role}"] = {"signal": s, "background": b}
        out["roc_auc"][role] = metrics.roc_points(scores[f"{sig}_{role}"][0],
                                                  scores[f"{bkg}_{role}"][0])["auc"]
    out["shape_chi2"] = {p: _shape_chi2(hists[f"{p}_full"], hists[f"{p}_flash"]) for p in (sig, bkg)}
    out["asimov_Z_bootstrap"] = _bootstrap_significance(scores, keys, edges, (sig, bkg), seed)
    if outdir is not None:
        for process in (sig, bkg):
            (vf, wf), (vg, wg) = scores[f"{process}_full"], scores[f"{process}_flash"]
            if vf.size and vg.size:
                plots.plot_comparison(vf, vg, edges.clip(max=1.0), "classifier score (SR)",
                                      outdir / f"hmumu_score_{process}.png", full_weights=wf,
                                      flash_weights=wg, note=process)
    return out


def _bootstrap_significance(scores: dict, keys: dict, edges: np.ndarray,
                            processes: tuple[str, str], seed: int, n: int = 300) -> dict:
    """Statistical spread of the Asimov significance: a Poisson(1) bootstrap over GEN events.

    Each replica gives every source GEN event one weight, shared by its full-simulation
    event and all its flash copies, so the spread of ``flash - full`` counts only what the
    two simulations do differently, not the GEN sample they share.
    """
    rng = np.random.default_rng(seed)
    nb = len(edges) - 1
    binned: dict[str, np.ndarray] = {}
    for process in processes:
        datasets = [f"{process}_{role}" for role in ("full", "flash")]
        source = _source_index({k: np.concatenate([keys[d][k] for d in datasets])
                                for k in keys[datasets[0]]})
        poisson = rng.poisson(1.0, size=(n, int(source.max(initial=-1)) + 1))
        rows_of = np.split(source, [len(scores[datasets[0]][0])])
        for d, rows in zip(datasets, rows_of, strict=True):
            values, weight = scores[d]
            which = np.clip(np.digitize(values, edges) - 1, 0, nb - 1)
            one_hot = np.zeros((len(values), nb))
            one_hot[np.arange(len(values)), which] = weight
            binned[d] = poisson[:, rows] @ one_hot  # (replicas, bins)
    sig, bkg = processes
    z = {role: np.array([asimov_significance(binned[f"{sig}_{role}"][i], binned[f"{bkg}_{role}"][i])
                         for i in range(n)]) for role in ("full", "flash")}
    return {"replicas": n, "err_full": float(np.nanstd(z["full"])),
            "err_flash": float(np.nanstd(z["flash"])),
            "err_difference": float(np.nanstd(z["flash"] - z["full"]))}


def _cross_section(process: str) -> float:
    from flashsim import generation

    spec = generation.PROCESSES.get(process)
    return float(getattr(spec, "cross_section_pb", None) or CROSS_SECTIONS_PB[process])


def _is_sample(path: Path, process: str, n_events: int, seed: int) -> bool:
    """Whether ``path`` already holds this held-out sample (an earlier run's, e.g. with
    another ``--oversample``): same process, events and seed, with the reference detector.
    Generation is most of the benchmark's time, so it is not repeated."""
    from flashsim.nanoaod.reader import read_provenance

    if not path.is_file():
        return False
    made = read_provenance(path) or {}
    return (made.get("process"), made.get("events"), made.get("seed"), made.get("refsim")) == (
        process, n_events, seed, True)


def run_hmumu_benchmark(
    outdir: str | Path,
    *,
    n_events: int = 20_000,
    jobs: int = 1,
    oversample: int = 1,
    seed: int = 1,
    lumi_fb: float = DEFAULT_LUMI_FB,
    models: str | Path | None = None,
    validate: bool = True,
) -> dict:
    """``flashsim benchmark-hmumu``: generate held-out :data:`BENCHMARK_PROCESSES` events
    with the reference detector (seed :data:`HELD_OUT_SEED_OFFSET` + ``seed``), flash-simulate
    the same GEN events with the shipped (or ``models``) models, run the analysis on both,
    write ``summary.md``, ``metrics.json`` and PNGs to ``outdir``; return the metrics.
    With ``validate`` also write a ``flashsim validate`` report per process."""
    from flashsim.generation import generate_file
    from flashsim.simulation import simulate
    from flashsim.validation.compare import run_validation
    from flashsim.validation.report import write_benchmark_report

    if n_events < 1 or jobs < 1 or oversample < 1:
        raise FlashSimError("-n, --jobs and --oversample must be positive integers")
    outdir = Path(outdir)
    sample_dir = outdir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    held_out_seed = HELD_OUT_SEED_OFFSET + seed
    fileset, cross_sections = {}, {}
    for process in BENCHMARK_PROCESSES.values():
        full = sample_dir / f"{process}_full.root"
        flash = sample_dir / f"{process}_flash.root"
        if not _is_sample(full, process, n_events, held_out_seed):
            generate_file(process, n_events, full, seed=held_out_seed, jobs=jobs, refsim=True)
        simulate([full], flash, models=models, seed=held_out_seed, oversample=oversample,
                 executor="futures" if jobs > 1 else "iterative", workers=jobs)
        fileset[f"{process}_full"], fileset[f"{process}_flash"] = [full], [flash]
        cross_sections[f"{process}_full"] = cross_sections[f"{process}_flash"] = \
            _cross_section(process)
        if validate:
            run_validation([full], [flash], outdir / f"validation_{process}", plots_mode="key",
                           seed=seed)
    results = run_analysis(fileset, event_scales(fileset, cross_sections, lumi_fb))
    bench = analyse(results, BENCHMARK_PROCESSES, outdir, seed=seed)
    bench["settings"] = {"n_events": n_events, "oversample": oversample, "seed": seed,
                         "held_out_seed": held_out_seed, "lumi_fb": lumi_fb,
                         "cross_sections_pb": cross_sections,
                         "samples": {k: [str(p) for p in v] for k, v in fileset.items()}}
    write_benchmark_report(bench, BENCHMARK_PROCESSES, outdir)
    write_json(bench, outdir / "metrics.json")
    return bench
