"""Write validation and benchmark results: ``summary.md`` (headline numbers first, and what
"good" looks like for each section) and ``metrics.json`` (every number)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from flashsim.validation.metrics import (
    ATTRIBUTION_MAX_ITER,
    ATTRIBUTION_MAX_PER_CLASS,
    ATTRIBUTION_TOP,
)

__all__ = ["auc_verdict", "jsonable", "write_benchmark_report", "write_json",
           "write_validation_report"]

GOOD_W1 = 0.05  # W1/σ below this: the flash distribution is within a few % of σ of full sim
GOOD_TVD = 0.02


def jsonable(value: Any) -> Any:
    """Nested metrics → JSON types: arrays to lists, NaN/inf to null, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` as indented, strict JSON."""
    path.write_text(json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _attribution(test: dict, ranking: str = "dropped", top: int = 3) -> str:
    """'branch (AUC), …' for the leading entries of one ranking (``alone`` or ``dropped``) of
    a classifier test's attribution."""
    entries = (test.get("attribution") or {}).get(ranking) or []
    return ", ".join(f"{name} ({_fmt(value)})" for name, value in entries[:top]) or "n/a"


def auc_verdict(test: dict) -> str:
    """'indistinguishable' if |AUC − 0.5| < 3 σ, 'close' if AUC < 0.6, else 'distinguishable'."""
    auc, sigma = test.get("auc", math.nan), test.get("auc_sigma", math.nan)
    if not math.isfinite(auc):
        return "too few objects"
    if math.isfinite(sigma) and abs(auc - 0.5) < 3 * sigma:
        return "indistinguishable"
    return "close" if auc < 0.6 else "distinguishable"


def _weighting(test: dict) -> str:
    """' (weighted, ESS 0.70)' after the AUC of the weighted flash sample, else nothing."""
    return f" (weighted, ESS {_fmt(test.get('ess_fraction'), 2)})" if test.get("weighted") else ""


def _weights_lines(result: dict) -> list[str]:
    """What the weighted AUCs are, when the flash files carry DCTR weights."""
    tests = [view.get("classifier", {}) for view in result["objects"].values()]
    if not any(test.get("weighted") for test in [*tests, result["events"]["classifier"]]):
        return []
    return ["", "The flash files carry DCTR weights (`flashsim simulate --weights`). An AUC "
            "marked *weighted* is that of the weighted flash sample against the full one "
            "(objects and PV weighted by `<Collection>_flashsimWeight`, MET and whole events by the "
            "event's `flashsimWeight`; the flash rows are drawn with probability proportional "
            "to their weight, with replacement, as many as before). ESS is the weights' "
            "effective sample size per row, (Σw)²/(N Σw²): the fraction of the flash "
            "statistics the weights keep. Everything else in this report (branch figures, "
            "W1/σ, KS, TVD, correlations, response, efficiency, tagging) is of the "
            "unweighted flash sample."]


def _object_summary(view: dict) -> dict:
    w1 = {f: b["w1_norm"] for f, b in view["branches"].items()
          if b.get("w1_norm") is not None and math.isfinite(b["w1_norm"])}
    tvd = {f: b["tvd"] for f, b in view["branches"].items()
           if b.get("tvd") is not None and math.isfinite(b["tvd"])}
    worst_w1 = max(w1, key=w1.get) if w1 else None
    worst_tvd = max(tvd, key=tvd.get) if tvd else None
    return {"median_w1_norm": float(np.median(list(w1.values()))) if w1 else math.nan,
            "worst_w1": (worst_w1, w1[worst_w1]) if worst_w1 else (None, math.nan),
            "worst_tvd": (worst_tvd, tvd[worst_tvd]) if worst_tvd else (None, math.nan)}


def _attribution_section(result: dict) -> list[str]:
    """Top :data:`ATTRIBUTION_TOP` branches per view: AUC alone (next to the GEN context) and
    AUC lost when dropped."""
    lines = ["## Which branches give flash away", "",
             f"Per view, the {ATTRIBUTION_TOP} branches with the highest AUC *alone* (a "
             "classifier on that branch next to the GEN partner's features; unmatched objects "
             "and events: the branch alone) and the most AUC *lost* when the classifier is "
             "retrained without them (a branch no other branch stands in for). Alone ≈ 0.5 and "
             "lost ≈ 0: the branch is right. One split by GEN event, at most "
             f"{ATTRIBUTION_MAX_PER_CLASS} objects per class, {ATTRIBUTION_MAX_ITER} boosting "
             "iterations per fit; each AUC has a statistical spread of about `auc_null_sigma`. "
             "`metrics.json` holds every branch (`classifier.attribution`).", "",
             "| view | AUC all (context alone) | top AUC alone | top AUC lost when dropped |",
             "|---|---|---|---|"]
    views = {**result["objects"], "events": result["events"]}
    for name, view in views.items():
        attribution = view.get("classifier", {}).get("attribution")
        if not attribution:
            continue
        context = (f" ({_fmt(attribution['auc_context'])})" if view["classifier"].get("context")
                   else "")
        lines.append(f"| {name} | {_fmt(attribution['auc_all'])}{context} | "
                     f"{_attribution(view['classifier'], 'alone', ATTRIBUTION_TOP)} | "
                     f"{_attribution(view['classifier'], 'dropped', ATTRIBUTION_TOP)} |")
    return [*lines, ""]


def _band_lines(band: dict | None) -> list[str]:
    """The model-band paragraph of a Bayesian flash sample (none for deterministic models)."""
    if band is None:
        return []
    return ["", f"Bayesian models, {band['draws']} weight draws (draw 0 is the flash sample "
            "below; figures show the band of all draws): the full simulation lies within the "
            "flash band (model ⊕ statistical) in "
            f"{_fmt(100 * band['coverage_1sigma'], 1)}% of {band['bins']} bins at 1σ and "
            f"{_fmt(100 * band['coverage_2sigma'], 1)}% at 2σ ({band['branches']} branches; "
            "well calibrated: 68% and 95%)."]


def write_validation_report(result: dict, outdir: Path) -> None:
    """summary.md + metrics.json of :func:`flashsim.validation.compare.run_validation`."""
    for view in result["objects"].values():
        view["summary"] = _object_summary(view)
    write_json(result, outdir / "metrics.json")
    inputs = result["inputs"]
    lines = [
        "# FlashSim validation: full simulation vs flash simulation of the same GEN events", "",
        f"Full: {', '.join(inputs['full'])} ({inputs['full_events_matched']} of "
        f"{inputs['full_events']} events have a flash twin). Flash: {', '.join(inputs['flash'])} "
        f"({inputs['flash_events']} events, {inputs['flash_replicas']} replica(s) per GEN event).",
        *_band_lines(result.get("model_band")),
        *_weights_lines(result),
        "", "## Headline", "",
        "| object | N full | N flash | classifier AUC ± σ | verdict | AUC lost without | median W1/σ "
        "| worst W1/σ | worst discrete TVD | max Δcorr |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, view in result["objects"].items():
        s, clf = view["summary"], view.get("classifier", {})
        lines.append(
            f"| {name} | {view['n_full']} | {view['n_flash']} | {_fmt(clf.get('auc'))} ± "
            f"{_fmt(clf.get('auc_sigma'))}{_weighting(clf)} | "
            f"{auc_verdict(clf) if clf else 'n/a'} | "
            f"{_attribution(clf)} | {_fmt(s['median_w1_norm'])} | {s['worst_w1'][0]}: {_fmt(s['worst_w1'][1])} | "
            f"{s['worst_tvd'][0]}: {_fmt(s['worst_tvd'][1])} | "
            f"{_fmt(view.get('correlation', {}).get('max_abs_diff'))} |")
    event_clf = result["events"]["classifier"]
    lines += ["", f"Whole events: classifier AUC {_fmt(event_clf['auc'])} ± "
              f"{_fmt(event_clf['auc_sigma'])}{_weighting(event_clf)} ({auc_verdict(event_clf)}); "
              "AUC lost without "
              f"{_attribution(event_clf)}.", "",
              "The classifier of a view with a GEN partner (muons, electrons, matched jets, "
              "MET; PV, the vertices and rho, given the true pileup) sees the GEN object's "
              "features beside the RECO branches: it tests the RECO values given their GEN "
              "object. Train and test halves are split by GEN event. "
              "*AUC lost without*: the three branches whose removal (retraining without them) "
              "costs the classifier most AUC; see below.", ""]
    lines += _attribution_section(result)
    tagging = result.get("tagging") or {}
    if tagging:
        eff = tagging["wp_efficiency"]
        lines += ["b-tag efficiency at the medium DeepJet WP (0.2770), full → flash: " + ", ".join(
            f"{flav} {_fmt(eff['full'][flav]['medium']['eff'])} → "
            f"{_fmt(eff['flash'][flav]['medium']['eff'])}" for flav in ("b", "c", "light")) + ".", ""]
    lines += [
        "**What good looks like.** Classifier AUC consistent with 0.5 (|AUC − 0.5| < 3σ, σ = the "
        "larger of the split-to-split spread and the Mann–Whitney null spread); AUC < 0.6 is "
        "close, above that a classifier tells flash from full. W1/σ is the earth mover's "
        f"distance in units of the full-sim standard deviation: < {GOOD_W1} is good (a shift of "
        "the mean by 5% of σ gives 0.05). TVD (total variation distance of a discrete branch) "
        f"< {GOOD_TVD} is good. max Δcorr (largest change of a correlation coefficient) < 0.05 "
        "is good. All are limited by statistics: a self-comparison gives 0, 0.5 and 0.", "",
        "## Branches", "",
        "Per object view and branch (`<view>_<branch>.png`: unit-normalised histograms with a "
        "flash/full ratio panel, over/underflow in the edge bins). Jets are split by "
        "`Jet_genJetIdx`: matched jets follow their GenJet, unmatched jets are pileup/fakes.", "",
        "| view | branch | kind | W1/σ | KS | TVD |", "|---|---|---|---|---|---|",
    ]
    for name, view in result["objects"].items():
        for field, b in view["branches"].items():
            lines.append(f"| {name} | {field} | {b['kind']} | {_fmt(b.get('w1_norm'))} | "
                         f"{_fmt(b.get('ks'))} | {_fmt(b.get('tvd'))} |")
    missing = {k: v for k, v in result["not_simulated"].items() if v}
    if missing:
        lines += ["", "Branches in the full files that the flash files lack (not simulated): " +
                  "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items()) + "."]
    lines += ["", "## Resolution, efficiency, pileup jets", "",
              "`<Obj>_median_vs_gen_{pt,eta}.png` and `<Obj>_resolution_vs_gen_{pt,eta}.png`: pT "
              "response (reco/GEN) of GEN-matched objects; `<Obj>_efficiency_vs_gen_*.png`: "
              "fraction of GEN objects reconstructed; `Jet_pileup_multiplicity_vs_nTrueInt.png`.",
              "**Good:** flash and full points agree within their error bars in every bin "
              "(median to ~0.5%, resolution and efficiency to a few %); the pileup-jet "
              "multiplicity grows with nTrueInt with the same slope.", ""]
    for reco, eff in result["efficiency"].items():
        lines.append(f"- {reco} reconstruction efficiency: full {_fmt(eff['full']['overall'])}, "
                     f"flash {_fmt(eff['flash']['overall'])}")
    pu = result.get("pileup_jets") or {}
    if pu:
        lines.append(f"- unmatched jets (pT > 15 GeV) per event: full "
                     f"{_fmt(pu['full']['overall'])}, flash {_fmt(pu['flash']['overall'])}")
    twins = result["events"]["twins"]
    lines += ["", "## Event by event (same GEN event, full vs flash replica 0)", "",
              "**Good:** multiplicities driven by GEN (nMuon) agree in most events; MET of twins "
              "correlates as strongly with GenMET in flash as in full.", ""]
    lines += [f"- {k}: {_fmt(v) if isinstance(v, float) else v}" for k, v in twins.items()]
    if tagging:
        lines += ["", "## b/c tagging", "",
                  "`tagging_roc_*.png`: ROC per GEN hadron flavour (matched jets, pT > 20 GeV, "
                  "|η| < 2.5). **Good:** flash/full WP efficiencies agree to ~5% for b and c, "
                  "~20% for light (mistag rates are small and steep); ROC AUCs within 0.01.", "",
                  "| ROC | AUC full | AUC flash |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v.get('full'))} | {_fmt(v.get('flash'))} |"
                  for k, v in tagging["roc_auc"].items()]
        lines += ["", "| flavour | WP | eff full | eff flash |", "|---|---|---|---|"]
        for flav in ("b", "c", "light"):
            for wp in tagging["wps"]:
                f, g = (tagging["wp_efficiency"][r][flav][wp] for r in ("full", "flash"))
                lines.append(f"| {flav} | {wp} | {_fmt(f['eff'])} ± {_fmt(f['err'])} | "
                             f"{_fmt(g['eff'])} ± {_fmt(g['err'])} |")
    lines += ["", "Every number is in `metrics.json`.", ""]
    (outdir / "summary.md").write_text("\n".join(lines), encoding="utf-8")


def write_benchmark_report(bench: dict, samples: dict[str, str], outdir: Path) -> None:
    """summary.md of the VBF H→μμ benchmark (:func:`flashsim.validation.hmumu.analyse`)."""
    clf = bench.get("classifier", {})
    lines = ["# VBF H→μμ benchmark: full vs flash simulation of the same GEN events", "",
             "## Headline", ""]
    if "asimov_Z_full" in clf:
        boot = clf.get("asimov_Z_bootstrap", {})
        lines += [f"- Expected significance (Asimov, classifier-score bins in the signal region): "
                  f"full {_fmt(clf['asimov_Z_full'], 2)} ± {_fmt(boot.get('err_full'), 2)} σ, "
                  f"flash {_fmt(clf['asimov_Z_flash'], 2)} ± {_fmt(boot.get('err_flash'), 2)} σ; "
                  f"flash − full {_fmt(clf['asimov_Z_flash'] - clf['asimov_Z_full'], 2)} ± "
                  f"{_fmt(boot.get('err_difference'), 2)} (bootstrap over GEN events)",
                  "- Classifier score shape full vs flash, χ²/ndf: " + ", ".join(
                      f"{p} {_fmt(v['chi2_ndf'], 2)} (ndf {v['ndf']})"
                      for p, v in clf["shape_chi2"].items())]
    else:
        lines.append(f"- Classifier: {clf.get('status', 'not run')}")
    for role, process in samples.items():
        full, flash = (bench["yields"].get(f"{process}_{r}") for r in ("full", "flash"))
        if full and flash:
            f, g = full["signal_region"], flash["signal_region"]
            lines.append(f"- {role} ({process}) signal-region yield: full {_fmt(f['yield'], 3)} ± "
                         f"{_fmt(f['err'], 3)}, flash {_fmt(g['yield'], 3)} ± {_fmt(g['err'], 3)}")
    lines += ["", "**What good looks like.** Flash yields within the combined statistical error "
              "of full (the same GEN events enter both, so the true difference is smaller than "
              "either error); χ²/ndf ≈ 1 for every shape; Asimov Z of flash minus full within about "
              "twice its bootstrap error (which is small when the samples are large: the paired "
              "bootstrap removes the GEN statistics both share), ideally within ~5%.", "",
              "## Cut flow", "",
              "Weighted yields (σ·L·genWeight/Σ genEventSumw) after each cut; errors per source "
              "GEN event. **Good:** flash/full ratio ≈ 1 after every cut; a drift appearing at one "
              "cut points at the object it uses.", ""]
    datasets = list(bench["cutflow"])
    lines += ["| cut | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for i, _ in enumerate(next(iter(bench["cutflow"].values()), [])):
        cut = bench["cutflow"][datasets[0]][i]["cut"]
        lines.append(f"| {cut} | " + " | ".join(
            f"{_fmt(bench['cutflow'][d][i]['yield'], 3)} ± {_fmt(bench['cutflow'][d][i]['err'], 3)}"
            f" ({bench['cutflow'][d][i]['entries']})" for d in datasets) + " |")
    lines += ["", "## Yields", "", "| dataset | signal region | sidebands |", "|---|---|---|"]
    for d, y in bench["yields"].items():
        lines.append(f"| {d} | {_fmt(y['signal_region']['yield'], 3)} ± "
                     f"{_fmt(y['signal_region']['err'], 3)} | {_fmt(y['sidebands']['yield'], 3)} ± "
                     f"{_fmt(y['sidebands']['err'], 3)} |")
    lines += ["", "## Observables", "",
              "`hmumu_<role>_<observable>.png` (selected events, 110–150 GeV). **Good:** "
              "χ²/ndf ≈ 1 and W1/σ < 0.05 for every observable.", "",
              "| role | observable | χ²/ndf | W1/σ | χ²/ndf, both jets with a GenJet |",
              "|---|---|---|---|---|"]
    for role, obs in bench["observables"].items():
        lines += [f"| {role} | {name} | {_fmt(v['chi2_ndf'], 2)} | {_fmt(v['w1_norm'])} | "
                  f"{_fmt(v.get('jets_with_genjet', {}).get('chi2_ndf'), 2)} |"
                  for name, v in obs.items()]
    if bench.get("jets_without_genjet"):
        lines += ["", "Selected events whose two jets are not both GEN-matched (a jet without "
                  "GenJet: pileup or noise), full / flash: " + ", ".join(
                      f"{role} {_fmt(100 * v['full'], 1)}% / {_fmt(100 * v['flash'], 1)}%"
                      for role, v in bench["jets_without_genjet"].items())
                  + ". An observable whose χ²/ndf falls on the events with both jets "
                  "GEN-matched owes its difference to those jets, not to the jet response."]
    if "roc_auc" in clf:
        lines += ["", "## Signal-vs-background classifier", "",
                  "HistGradientBoosting on " + ", ".join(clf["features"]) + "; trained on the "
                  "even-`event` half of the full-simulation events, evaluated on the odd half of "
                  "full and flash (flash replicas of training events are never scored). "
                  "`hmumu_score_<process>.png`. **Good:** same ROC AUC and score shapes, "
                  "hence the same expected significance.", "",
                  f"- ROC AUC: full {_fmt(clf['roc_auc']['full'])}, flash "
                  f"{_fmt(clf['roc_auc']['flash'])}",
                  f"- Asimov Z: full {_fmt(clf['asimov_Z_full'], 3)}, flash "
                  f"{_fmt(clf['asimov_Z_flash'], 3)}"]
    lines += ["", "## Oversampling", "",
              "Each GEN event simulated K times; errors per source event "
              "(σ² = Σ_source (Σ_replicas w)²). `effective_gain` = (error with replica 0 only / "
              "error with all replicas)²: the factor by which oversampling multiplied the "
              "effective sample size. **Good:** gain between 1 and K; it approaches K when "
              "the selection is limited by detector smearing, 1 when limited by GEN statistics. "
              "The naive error √Σw² ignores that replicas share their GEN event and is too small "
              "by up to √K.", "", "| dataset | K | SR yield (all) | err per source | "
              "err naive | err replica 0 only | gain |", "|---|---|---|---|---|---|---|"]
    for d, o in bench["oversampling"].items():
        a, one = o["all_replicas"], o["replica0_only"]
        lines.append(f"| {d} | {o['replicas']} | {_fmt(a['yield'], 3)} | {_fmt(a['err'], 3)} | "
                     f"{_fmt(a['err_naive'], 3)} | {_fmt(one['err'], 3)} | "
                     f"{_fmt(o['effective_gain'], 2)} |")
    lines += ["", "Every number is in `metrics.json`.", ""]
    (outdir / "summary.md").write_text("\n".join(lines), encoding="utf-8")
