"""Statistics of the VBF H→μμ benchmark: yields with errors, shape comparisons, the
signal-vs-background classifier and its significance.

Flash files can hold K replicas of every GEN event. Replicas share their GEN event and are
not independent, so every statistical error is computed per *source* GEN event
(identified by ``run``, ``luminosityBlock``, ``event``):
:math:`\\sigma^2 = \\sum_\\text{source} (\\sum_\\text{replicas} w)^2`. The significance is
the Asimov significance of the classifier-score bins (Cowan, Cranmer, Gross, Vitells,
Eur. Phys. J. C 71 (2011) 1554), its spread a Poisson bootstrap over GEN events.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from flashsim.validation import metrics, plots
from flashsim.validation.hmumu.selection import CUTS, ELECTRON_VETO, OBSERVABLES

__all__ = ["FEATURES", "analyse", "asimov_significance"]

#: Inputs of the signal-vs-background classifier (m_mumu left out: the score stays
#: decorrelated from the mass, as in the CMS analysis' categorisation).
FEATURES = ("pt_mumu", "eta_mumu", "m_jj", "deta_jj", "zstar", "j1_pt", "j1_eta", "j2_pt",
            "j2_eta", "pt_balance")


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
    yields in the signal region and sidebands, observable shapes (χ²/ndf, W1/σ; for simulated
    files also the χ²/ndf of the events whose two jets have GenJets, and the weighted share of
    the others, ``jets_without_genjet``), the
    signal-vs-background classifier (trained on the even-``event`` half of the full-simulation
    events, evaluated on the odd half of full and flash) with the Asimov significance, and
    the effect of oversampling on the flash errors. Figures go to ``outdir``.
    """
    out: dict = {"cutflow": {}, "yields": {}, "observables": {}, "jets_without_genjet": {},
                 "oversampling": {}}
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
        known = bool(np.all(c["electron_veto"] >= 0))
        veto = (_yield(c["weight"], source, selected & (c["electron_veto"] == 1)) if known
                else {"yield": math.nan, "err": math.nan, "err_naive": math.nan, "entries": 0})
        out["cutflow"][dataset].append(dict(cut=ELECTRON_VETO, **veto))
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
        # the same comparison on the events whose two jets both have a GenJet, where files
        # know it: what is left there is the response of real jets, not jets no GEN jet made
        split = bool(mf.any() and mg.any() and np.all(cf["jets_with_genjet"][mf] >= 0)
                     and np.all(cg["jets_with_genjet"][mg] >= 0))
        if split:
            gf, gg = mf & (cf["jets_with_genjet"] == 1), mg & (cg["jets_with_genjet"] == 1)
            out["jets_without_genjet"][role] = {
                kind: 1.0 - float(c["weight"][g].sum() / c["weight"][m].sum())
                for kind, c, m, g in (("full", cf, mf, gf), ("flash", cg, mg, gg))}
        out["observables"][role] = {}
        for name, (label, edges) in OBSERVABLES.items():
            hf = _binned_yield(cf[name][mf], cf["weight"][mf], sf[mf], edges)
            hg = _binned_yield(cg[name][mg], cg["weight"][mg], sg[mg], edges)
            out["observables"][role][name] = {
                **_shape_chi2(hf, hg),
                "w1_norm": metrics.normalised_wasserstein(cf[name][mf], cg[name][mg])}
            if split:
                out["observables"][role][name]["jets_with_genjet"] = _shape_chi2(
                    _binned_yield(cf[name][gf], cf["weight"][gf], sf[gf], edges),
                    _binned_yield(cg[name][gg], cg["weight"][gg], sg[gg], edges))
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
