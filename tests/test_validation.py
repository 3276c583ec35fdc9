"""Validation metrics, `flashsim validate` and the VBF H→μμ selection (issue #7)."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from flashsim.errors import FlashSimError
from flashsim.validation import metrics

# --- metrics on synthetic data with known answers -------------------------------------------

def test_wasserstein_and_ks_known_values():
    rng = np.random.default_rng(1)
    a = rng.normal(size=20_000)
    assert metrics.normalised_wasserstein(a, a) == pytest.approx(0.0, abs=1e-12)
    assert metrics.ks_statistic(a, a)[0] == pytest.approx(0.0, abs=1e-12)
    # a pure shift by 0.5 σ moves every quantile by 0.5 σ: W1/σ = 0.5
    assert metrics.normalised_wasserstein(a, a + 0.5) == pytest.approx(0.5 / a.std(), rel=1e-9)
    assert metrics.ks_statistic(a, a + 0.5)[0] > 0.15


def test_frequency_table_and_bits():
    table = metrics.frequency_table(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert table["values"] == [0, 1]
    assert table["tvd"] == pytest.approx(0.25)
    bits = metrics.frequency_table(np.array([6, 2, 0, 6]), np.array([6, 6, 6, 6]),
                                   bits={1: "tight", 2: "tightLepVeto"})
    assert bits["full"] == [0.75, 0.5] and bits["flash"] == [1.0, 1.0]


def test_correlation_difference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 2))
    correlated = np.column_stack([x[:, 0], x[:, 0] + 0.1 * x[:, 1]])
    assert metrics.correlation_difference(x, x)["max_abs"] == pytest.approx(0.0, abs=1e-12)
    assert metrics.correlation_difference(x, correlated)["max_abs"] > 0.9


@pytest.mark.slow  # trains 11 classifiers
def test_classifier_two_sample_test():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    same = metrics.classifier_two_sample_test(a, b, repeats=4, seed=1)
    assert abs(same["auc"] - 0.5) < 3 * same["auc_sigma"] + 0.01
    shifted = metrics.classifier_two_sample_test(a, b + [1.0, 0, 0], repeats=4, seed=1)
    assert shifted["auc"] > 0.6
    # a column with no value anywhere (a muon feature in Z -> ee) is left out, not an error
    empty_column = np.full((1000, 1), np.nan)
    padded = metrics.classifier_two_sample_test(np.hstack([empty_column, a]),
                                                np.hstack([empty_column, b + [1.0, 0, 0]]),
                                                repeats=2, seed=1)
    assert padded["auc"] > 0.6
    # identical twins grouped by event: nothing to learn, exactly 0.5 expected
    twins = metrics.classifier_two_sample_test(a, a, groups_full=np.arange(1000),
                                               groups_flash=np.arange(1000), repeats=3)
    assert twins["auc"] == pytest.approx(0.5, abs=0.02)


def test_branch_attribution_names_the_wrong_branch():
    """Twins of 2000 GEN objects: column 0 has the wrong resolution around its GEN value
    (visible only next to the GEN context), column 1 is identical in both samples, column 2
    is resampled from the same conditional distribution, column 3 has no value anywhere."""
    rng = np.random.default_rng(4)
    n = 2000
    gen = rng.normal(size=(n, 1))
    full = np.column_stack([gen[:, 0] + 0.1 * rng.normal(size=n), rng.normal(size=n),
                            gen[:, 0] + rng.normal(size=n), np.full(n, np.nan)])
    flash = full.copy()
    flash[:, 0] = gen[:, 0] + 0.5 * rng.normal(size=n)
    flash[:, 2] = gen[:, 0] + rng.normal(size=n)
    events = {"groups_full": np.arange(n), "groups_flash": np.arange(n)}
    result = metrics.branch_attribution(full, flash, context_full=gen, context_flash=gen,
                                        seed=2, **events)
    alone, dropped = np.array(result["alone"]), np.array(result["dropped"])
    assert result["fits"] == 2 * 4 + 2 and result["n_full"] == n
    assert result["auc_context"] == pytest.approx(0.5, abs=1e-9)  # same GEN objects
    assert result["auc_all"] > 0.8
    sigma = result["auc_null_sigma"]
    assert alone[0] > 0.8 and dropped[0] > 0.2
    assert np.nanargmax(alone) == 0 and np.nanargmax(dropped) == 0
    # the retrained classifiers differ by their own fit noise too: a few 0.01 at this size
    assert alone[1] == pytest.approx(0.5, abs=3 * sigma) and abs(dropped[1]) < 0.03
    assert alone[2] == pytest.approx(0.5, abs=3 * sigma) and abs(dropped[2]) < 0.03
    assert np.isnan(alone[3]) and dropped[3] == 0.0  # nothing to drop: the same fit
    # without the GEN context the wrong resolution hides in an almost unchanged marginal
    blind = metrics.branch_attribution(full, flash, seed=2, **events)
    assert blind["alone"][0] == pytest.approx(0.5, abs=3 * sigma)
    assert blind["auc_context"] == 0.5 and blind["fits"] == 2 * 4 + 1
    # too few rows: NaN, no error
    tiny = metrics.branch_attribution(full[:5], flash[:5])
    assert np.isnan(tiny["auc_all"]) and all(np.isnan(tiny["dropped"]))


def test_roc_and_working_points():
    score = np.array([0.9, 0.8, 0.3, 0.1, 0.6, 0.2, 0.05, 0.01])
    flavour = np.array([5, 5, 5, 5, 0, 0, 0, 0])
    eff = metrics.wp_efficiencies(score, flavour, metrics.DEEPJET_2018_WPS, {"b": 5, "light": 0})
    assert [eff["b"][wp]["eff"] for wp in ("loose", "medium", "tight")] == [1.0, 0.75, 0.5]
    assert [eff["light"][wp]["eff"] for wp in ("loose", "medium", "tight")] == [0.75, 0.25, 0.0]
    assert eff["b"]["medium"]["err"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    roc = metrics.roc_points(score[flavour == 5], score[flavour == 0])
    assert roc["auc"] == pytest.approx(13 / 16)  # pairs (b, light) with b scored higher


# --- flashsim validate on the real reference sample ------------------------------------------

@pytest.fixture(scope="module")
def self_report(reference_nano, tmp_path_factory):
    from click.testing import CliRunner

    from flashsim.cli import cli

    out = tmp_path_factory.mktemp("validate")
    result = CliRunner().invoke(cli, ["validate", "--full", str(reference_nano), "--flash",
                                      str(reference_nano), "-o", str(out), "--plots", "key"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.mark.slow  # a full validation report with plots
def test_validate_self_comparison_is_perfect(self_report):
    assert (self_report / "summary.md").read_text().startswith("# FlashSim validation")
    assert len(list(self_report.glob("*.png"))) >= 10
    result = json.loads((self_report / "metrics.json").read_text())
    assert set(result["objects"]) == {"Muon", "Electron", "Jet_matched", "Jet_unmatched", "MET", "PV"}
    for view in result["objects"].values():
        for branch in view["branches"].values():
            assert branch.get("w1_norm") in (None, 0.0)
            assert branch.get("tvd") in (None, 0.0)
        assert view["classifier"]["auc"] == pytest.approx(0.5, abs=0.05)
        # twins in the same half: every branch alone gives exactly 0.5 and nothing is lost
        attribution = view["classifier"]["attribution"]
        assert {name for name, _ in attribution["alone"]} == set(view["classifier"]["features"])
        assert {name for name, _ in attribution["dropped"]} == set(view["classifier"]["features"])
        assert all(auc in (None, 0.5) for _, auc in attribution["alone"])
        assert all(lost in (None, 0.0) for _, lost in attribution["dropped"])
    # the conditional test: matched objects see their GEN partner, unmatched jets do not
    assert result["objects"]["Muon"]["classifier"]["context"] == ["pt", "eta", "phi", "pdgId"]
    assert result["objects"]["Jet_unmatched"]["classifier"]["context"] == []
    assert result["objects"]["PV"]["classifier"]["context"] == ["nTrueInt", "nPU"]
    assert {"npvs", "fixedGridRhoFastjetAll"} <= set(result["objects"]["PV"]["branches"])
    assert result["events"]["classifier"]["attribution"]["dropped"][0][1] == 0.0
    summary = (self_report / "summary.md").read_text()
    section = summary.split("## Which branches give flash away")[1].split("##")[0]
    for view in (*result["objects"], "events"):
        assert f"| {view} | 0.500" in section
    muon_row = next(line for line in section.splitlines() if line.startswith("| Muon |"))
    assert muon_row.count("(0.500)") == 1 + metrics.ATTRIBUTION_TOP  # context, top five alone
    assert muon_row.count("(0.000)") == metrics.ATTRIBUTION_TOP
    assert result["events"]["twins"]["nJet_equal_fraction"] == 1.0
    eff = result["tagging"]["wp_efficiency"]
    assert eff["full"] == eff["flash"]


def test_validate_progress_bar_counts_the_steps(reference_nano, tmp_path, capsys):
    from flashsim.validation import run_validation

    result = run_validation([reference_nano], [reference_nano], tmp_path / "report",
                            plots_mode="none", progress=True)
    steps = len(result["objects"]) + 5  # views, then response ... tagging
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith("validate: 100%") and f"{steps}/{steps}" in bar, bar


def test_validate_rejects_unmatched_events(reference_nano, tmp_path):
    import uproot

    from flashsim.validation.compare import run_validation

    shifted = tmp_path / "shifted.root"
    with uproot.open(reference_nano) as f:
        events = f["Events"].arrays(["run", "luminosityBlock", "event", "nMuon", "Muon_pt"],
                                    how=dict)
    with uproot.recreate(shifted) as out:
        out.mktree("Events", {"run": "u4", "luminosityBlock": "u4", "event": "u8",
                              "Muon": ak.zip({"pt": events["Muon_pt"]}).type.content})
        out["Events"].extend({"run": events["run"], "luminosityBlock": events["luminosityBlock"],
                              "event": events["event"] + 1_000_000,
                              "Muon": ak.zip({"pt": events["Muon_pt"]})})
    with pytest.raises(FlashSimError, match="no event with the same"):
        run_validation([reference_nano], [shifted], tmp_path / "report", plots_mode="none")


def test_validate_missing_file(tmp_path):
    from flashsim.validation.compare import run_validation

    with pytest.raises(FlashSimError, match="does not exist"):
        run_validation([tmp_path / "nope.root"], [tmp_path / "nope.root"], tmp_path / "r")
    (tmp_path / "text.root").write_text("not root")
    with pytest.raises(FlashSimError, match="not a readable ROOT file"):
        run_validation([tmp_path / "text.root"], [tmp_path / "text.root"], tmp_path / "r")


def _write_pileup_sample(path: Path, true_int: np.ndarray, npvs: np.ndarray) -> None:
    """Events 1..N with one muon and one jet (the same in every sample), the true pileup
    ``true_int`` and the vertex count ``npvs``; rho = 0.5 npvs."""
    from flashsim.nanoaod.writer import write_nanoaod

    n = len(npvs)
    one = ak.unflatten(ak.zip({"pt": np.full(n, 30.0), "eta": np.zeros(n)}), 1)
    write_nanoaod(path, {
        "run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64), "genWeight": np.ones(n, np.float32),
        "Muon": one, "Jet": one,
        "Pileup": ak.zip({"nTrueInt": true_int.astype(np.float32),
                          "nPU": true_int.astype(np.int32)}),
        "PV": ak.zip({"npvs": npvs.astype(np.int32), "npvsGood": npvs.astype(np.int32)}),
        "fixedGridRhoFastjetAll": 0.5 * npvs.astype(np.float32)})


def test_pileup_view_tests_the_vertices_given_the_true_pileup(tmp_path):
    """Flash vertex counts with the full simulation's distribution but blind to the event's
    pileup: no branch differs alone, the conditional test of the PV view sees it."""
    from flashsim.validation.compare import compare_view, load_sample

    rng = np.random.default_rng(3)
    n = 3000
    true_int = rng.integers(10, 50, n)
    npvs = rng.binomial(true_int, 0.7)
    _write_pileup_sample(tmp_path / "full.root", true_int, npvs)
    _write_pileup_sample(tmp_path / "flash.root", true_int, rng.permutation(npvs))
    full = load_sample([tmp_path / "full.root"], "full")
    view = compare_view("PV", full, load_sample([tmp_path / "flash.root"], "flash"))
    assert view["classifier"]["context"] == ["nTrueInt", "nPU"]
    assert view["branches"]["npvs"]["w1_norm"] == 0.0  # the same marginal
    assert view["classifier"]["auc"] > 0.8
    assert view["classifier"]["attribution"]["alone"][0][0] in ("npvs", "npvsGood",
                                                                "fixedGridRhoFastjetAll")
    itself = compare_view("PV", full, full)
    assert itself["classifier"]["auc"] == pytest.approx(0.5, abs=0.05)


# --- the VBF H→μμ selection on a hand-made NanoAOD -------------------------------------------

def _muons(*specs):
    """specs: (pt, eta, phi, charge, tight, iso)."""
    return [{"pt": p, "eta": e, "phi": f, "mass": 0.1057, "charge": q, "tightId": t,
             "pfRelIso04_all": i} for p, e, f, q, t, i in specs]


def _jets(*specs):
    """specs: (pt, eta, phi, jetId, puId, btag)."""
    return [{"pt": p, "eta": e, "phi": f, "mass": 5.0, "jetId": j, "puId": u,
             "btagDeepFlavB": b} for p, e, f, j, u, b in specs]


# m_mumu = 125 GeV for two 62.5 GeV back-to-back central muons; VBF jets at η = ±3 give
# m_jj ≈ 2 · 60 · cosh(3) ≈ 1200 GeV.
GOOD_MU = _muons((62.5, 0.0, 0.0, 1, True, 0.05), (62.5, 0.0, np.pi, -1, True, 0.05))
GOOD_JETS = _jets((60, 3.0, 1.5, 6, 7, 0.01), (60, -3.0, -1.5, 6, 7, 0.01))
EVENTS = [  # (muons, jets, selected?, region)
    (GOOD_MU, GOOD_JETS, True, 1),
    (_muons((62.5, 0.0, 0.0, 1, True, 0.05), (62.5, 0.0, np.pi, 1, True, 0.05)), GOOD_JETS,
     False, 0),  # same sign
    (_muons((62.5, 0.0, 0.0, 1, True, 0.05), (62.5, 0.0, np.pi, -1, False, 0.05)), GOOD_JETS,
     False, 0),  # subleading not tight
    (_muons((62.5, 0.0, 0.0, 1, True, 0.05), (62.5, 0.0, np.pi, -1, True, 0.4)), GOOD_JETS,
     False, 0),  # not isolated
    (GOOD_MU, GOOD_JETS + _jets((40, 1.0, 0.7, 6, 7, 0.5)), False, 1),  # b jet: vetoed
    (GOOD_MU, _jets((60, 3.0, 1.5, 6, 7, 0.01), (60, -3.0, -1.5, 6, 0, 0.01)), True, 1),
    # ↑ failing pileup ID does not matter at pT 60 > 50
    (GOOD_MU, _jets((60, 3.0, 1.5, 6, 7, 0.01), (40, -3.0, -1.5, 6, 0, 0.01)), False, 1),
    # ↑ pileup-ID failing 40 GeV jet removed: one jet left
    (GOOD_MU, _jets((60, 1.0, 1.5, 6, 7, 0.01), (60, -1.0, -1.5, 6, 7, 0.01)), False, 1),  # Δη
    (GOOD_MU, _jets((60, 0.0, 0.1, 6, 7, 0.01), (60, 3.0, 1.5, 6, 7, 0.01),
                    (60, -3.0, -1.5, 6, 7, 0.01)), True, 1),  # jet on the muon: ΔR-cleaned
    (_muons((55.0, 0.0, 0.0, 1, True, 0.05), (55.0, 0.0, np.pi, -1, True, 0.05)), GOOD_JETS,
     True, 2),  # m_mumu = 110.0+: sideband
    (GOOD_MU, _jets((60, 3.0, 1.5, 0, 7, 0.01), (60, -3.0, -1.5, 6, 7, 0.01)), False, 1),  # jetId
    ([], GOOD_JETS, False, 0),
]


def _write_tiny(path: Path, electrons: list | None = None,
                flashsim_weight: np.ndarray | None = None, events: list = EVENTS) -> None:
    from flashsim.nanoaod.writer import write_nanoaod

    n = len(events)
    chunk = {
        "run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64), "genWeight": np.ones(n, np.float32),
        "Muon": ak.Array([e[0] for e in events], with_name=None),
        "Jet": ak.Array([e[1] for e in events]),
    }
    if electrons is not None:
        chunk["Electron"] = ak.Array(electrons)
    if flashsim_weight is not None:
        chunk["flashsimWeight"] = flashsim_weight
    write_nanoaod(path, chunk)


def test_hmumu_selection_on_tiny_nanoaod(tmp_path):
    from flashsim.validation.hmumu import CUTS, ELECTRON_VETO, analyse, run_analysis

    path = tmp_path / "tiny.root"
    _write_tiny(path)
    results = run_analysis({"vbf_hmumu_full": [path], "vbf_hmumu_flash": [path]})
    columns = results["vbf_hmumu_full"]["columns"]
    order = np.argsort(columns["event"])
    selected = columns["stage"][order] == len(CUTS) - 1
    assert selected.tolist() == [e[2] for e in EVENTS]
    assert columns["region"][order][selected].tolist() == [e[3] for e in EVENTS if e[2]]
    assert columns["m_mumu"][order][0] == pytest.approx(125.0, rel=1e-3)
    assert results["vbf_hmumu_full"]["cutflow"][CUTS[-1]] == pytest.approx(4.0)
    bench = analyse(results, {"signal": "vbf_hmumu"}, tmp_path, plot=False)
    sr = bench["yields"]["vbf_hmumu_flash"]["signal_region"]
    assert sr["yield"] == pytest.approx(3.0) and sr["err"] == pytest.approx(np.sqrt(3.0))
    assert bench["observables"]["signal"]["m_mumu"]["chi2"] == pytest.approx(0.0)
    # without an Electron collection the electron-veto row is reported as unknown
    assert bench["cutflow"]["vbf_hmumu_full"][-1]["cut"] == ELECTRON_VETO
    assert np.isnan(bench["cutflow"]["vbf_hmumu_full"][-1]["yield"])
    # jets without genJetIdx: no split by GEN matching
    assert (columns["jets_with_genjet"] == -1).all() and bench["jets_without_genjet"] == {}
    assert "jets_with_genjet" not in bench["observables"]["signal"]["pt_balance"]


def test_hmumu_benchmark_compares_the_events_whose_jets_have_genjets(tmp_path):
    """An observable that differs only in events with a jet without GenJet is told apart:
    its χ² is zero on the events whose two jets are GEN-matched, and the share of the others
    is reported."""
    from flashsim.validation.hmumu import analyse, run_analysis

    def with_genjets(events, unmatched=5, pt=None):
        out = []
        for i, (muons, jets, *rest) in enumerate(events):
            jets = [{**jet, "genJetIdx": -1 if i == unmatched and j == 1 else j}
                    for j, jet in enumerate(jets)]
            if i == unmatched and pt is not None:
                jets[1]["pt"] = pt
            out.append((muons, jets, *rest))
        return out

    full, flash = tmp_path / "full.root", tmp_path / "flash.root"
    _write_tiny(full, events=with_genjets(EVENTS))
    _write_tiny(flash, events=with_genjets(EVENTS, pt=100.0))  # a harder unmatched jet
    results = run_analysis({"vbf_hmumu_full": [full], "vbf_hmumu_flash": [flash]})
    columns = results["vbf_hmumu_full"]["columns"]
    order = np.argsort(columns["event"])
    # event 0: both jets matched; 5: its second jet has no GenJet; 6: one jet left
    assert columns["jets_with_genjet"][order][[0, 5, 6]].tolist() == [1, 0, -1]
    bench = analyse(results, {"signal": "vbf_hmumu"}, tmp_path, plot=False)
    assert bench["jets_without_genjet"]["signal"] == {"full": 0.25, "flash": 0.25}
    balance = bench["observables"]["signal"]["pt_balance"]
    assert balance["chi2"] > 1.0
    assert balance["jets_with_genjet"]["chi2"] == pytest.approx(0.0)


def test_hmumu_analysis_applies_the_dctr_event_weight(tmp_path):
    """A flash file written with --weights is analysed as the reweighted sample: the event's
    flashsimWeight multiplies its weight, in the columns and in the cut flow."""
    from flashsim.validation.hmumu import CUTS, run_analysis

    dctr = np.linspace(0.5, 2.0, len(EVENTS)).astype(np.float32)
    plain, weighted = tmp_path / "plain.root", tmp_path / "weighted.root"
    _write_tiny(plain)
    _write_tiny(weighted, flashsim_weight=dctr)
    results = run_analysis({"plain": [plain], "weighted": [weighted]})
    columns = results["weighted"]["columns"]
    order = np.argsort(columns["event"])
    np.testing.assert_allclose(columns["weight"][order],
                               results["plain"]["columns"]["weight"][order] * dctr, rtol=1e-6)
    selected = np.array([e[2] for e in EVENTS])
    assert results["weighted"]["cutflow"][CUTS[-1]] == pytest.approx(float(dctr[selected].sum()),
                                                                     rel=1e-6)


def test_hmumu_electron_veto_is_reported_not_applied(tmp_path):
    from flashsim.validation.hmumu import CUTS, ELECTRON_VETO, analyse, run_analysis

    def electron(pt, eta, phi, wp90):
        return {"pt": pt, "eta": eta, "phi": phi, "mass": 0.0, "charge": 1,
                "mvaFall17V2Iso_WP90": wp90}

    # selected events 0, 5, 8, 9: an identified electron in 0; a soft, a non-identified
    # and an electron on a muon (ΔR < 0.4, an FSR-like overlap) do not veto
    electrons = [[] for _ in EVENTS]
    electrons[0] = [electron(30.0, 1.0, 2.0, True)]
    electrons[5] = [electron(15.0, 1.0, 2.0, True), electron(30.0, 1.0, 2.0, False)]
    electrons[8] = [electron(30.0, 0.1, 0.0, True)]
    path = tmp_path / "tiny.root"
    _write_tiny(path, electrons)
    results = run_analysis({"vbf_hmumu_full": [path], "vbf_hmumu_flash": [path]})
    columns = results["vbf_hmumu_full"]["columns"]
    order = np.argsort(columns["event"])
    assert columns["electron_veto"][order][[0, 5, 8, 9]].tolist() == [0, 1, 1, 1]
    bench = analyse(results, {"signal": "vbf_hmumu"}, tmp_path, plot=False)
    flow = bench["cutflow"]["vbf_hmumu_full"]
    assert [row["cut"] for row in flow] == [*CUTS, ELECTRON_VETO]
    assert flow[len(CUTS) - 1]["yield"] == pytest.approx(4.0)  # the selection is unchanged
    assert flow[-1]["yield"] == pytest.approx(3.0)


def test_asimov_significance():
    from flashsim.validation.hmumu import asimov_significance

    # s << b: Z → s/√b
    assert asimov_significance([1.0], [10_000.0]) == pytest.approx(0.01, rel=1e-3)
    assert asimov_significance([3.0, 4.0], [1e6, 1e6]) == pytest.approx(5e-3, rel=1e-3)


def test_benchmark_cross_sections_come_from_the_processes():
    from flashsim.generation import PROCESSES
    from flashsim.validation.hmumu.benchmark import BENCHMARK_PROCESSES, _cross_section

    for process in BENCHMARK_PROCESSES.values():
        assert _cross_section(process) == PROCESSES[process].cross_section_pb > 0
    assert _cross_section("vbf_hmumu") == pytest.approx(3.782 * 2.176e-4)  # YR4 sigma x BR
    with pytest.raises(FlashSimError, match="no reference cross section"):
        _cross_section("ttbar")


def test_analysis_missing_file(tmp_path):
    from flashsim.validation.hmumu import run_analysis

    with pytest.raises(FlashSimError, match="does not exist"):
        run_analysis({"x": [tmp_path / "missing.root"]})


@pytest.mark.slow
def test_benchmark_hmumu_end_to_end(tiny_models, tmp_path):
    """The whole benchmark on a few hundred events (tiny models: plumbing, not fidelity);
    a second run with another --oversample reuses the held-out samples, and with
    --no-validate leaves the validation reports alone."""
    from click.testing import CliRunner

    from flashsim.cli import cli

    out = tmp_path / "hmumu"
    args = ["benchmark-hmumu", "-n", "200", "--models", str(tiny_models), "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "--oversample", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    bench = json.loads((out / "metrics.json").read_text())
    assert bench["settings"]["n_events"] == 200 and bench["settings"]["oversample"] == 2
    for dataset in ("vbf_hmumu_full", "vbf_hmumu_flash", "dy_mumu_105_160_full",
                    "dy_mumu_105_160_flash"):
        cutflow = bench["cutflow"][dataset]
        yields = [row["yield"] for row in cutflow]
        assert yields[0] > 0 and all(a >= b for a, b in zip(yields, yields[1:], strict=False))
    assert bench["oversampling"]["dy_mumu_105_160_flash"]["replicas"] == 2
    summary = (out / "summary.md").read_text()
    for section in ("## Oversampling", "Good:"):
        assert section in summary
    assert (out / "validation_vbf_hmumu" / "metrics.json").is_file()

    samples = {p: p.stat().st_mtime_ns for p in (out / "samples").glob("*_full.root")}
    reports = {p: p.stat().st_mtime_ns for p in out.glob("validation_*/metrics.json")}
    result = CliRunner().invoke(cli, [*args, "--oversample", "3", "--no-validate"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert {p: p.stat().st_mtime_ns for p in samples} == samples
    assert {p: p.stat().st_mtime_ns for p in reports} == reports  # not rewritten
    oversampling = json.loads((out / "metrics.json").read_text())["oversampling"]
    assert oversampling["dy_mumu_105_160_flash"]["replicas"] == 3


def test_significance_bootstrap_is_paired_over_gen_events():
    from flashsim.validation.hmumu.statistics import _bootstrap_significance

    rng = np.random.default_rng(3)
    edges = np.linspace(0, 1, 6)
    scores, keys = {}, {}
    for process, n, shape in (("sig", 400, (3, 1)), ("bkg", 600, (1, 3))):
        values = rng.beta(*shape, n)
        ids = {"run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
               "event": np.arange(n, dtype=np.uint64)}
        scores[f"{process}_full"] = (values, np.full(n, 0.1 if process == "sig" else 5.0))
        keys[f"{process}_full"] = ids
        # flash: two copies of every GEN event, each with half the weight, identical scores
        scores[f"{process}_flash"] = (np.repeat(values, 2), np.repeat(scores[f"{process}_full"][1] / 2, 2))
        keys[f"{process}_flash"] = {k: np.repeat(v, 2) for k, v in ids.items()}
    boot = _bootstrap_significance(scores, keys, edges, ("sig", "bkg"), seed=1)
    assert boot["err_full"] > 0.01
    assert boot["err_flash"] == pytest.approx(boot["err_full"])
    assert boot["err_difference"] == pytest.approx(0.0, abs=1e-12)


# --- DCTR weights (flashsim simulate --weights) in flashsim validate -------------------------

WEIGHT_EVENTS = 2000
FULL_PT, FLASH_PT, PT_SIGMA = 50.0, 56.0, 10.0  # GeV: flash muons 0.6 σ too hard


def _write_muon_sample(path: Path, pt: np.ndarray, weight: np.ndarray | None = None) -> None:
    """One muon (and one jet) per event, events 1..N; ``weight``: the DCTR weight of each muon,
    written as ``Muon_flashsimWeight`` and as the event's ``flashsimWeight``."""
    from flashsim.nanoaod.writer import write_nanoaod

    n = len(pt)
    rng = np.random.default_rng(7)  # η, φ and the jets: the same in every sample
    muon = {"pt": pt, "eta": rng.uniform(-2.4, 2.4, n), "phi": rng.uniform(-np.pi, np.pi, n)}
    if weight is not None:
        muon["flashsimWeight"] = weight
    chunk = {"run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
             "event": np.arange(1, n + 1, dtype=np.uint64), "genWeight": np.ones(n, np.float32),
             "Muon": ak.unflatten(ak.zip(muon), 1),
             "Jet": ak.unflatten(ak.zip({"pt": rng.uniform(20, 80, n),
                                         "eta": rng.uniform(-4, 4, n)}), 1)}
    if weight is not None:
        chunk["flashsimWeight"] = weight
    write_nanoaod(path, chunk)


@pytest.fixture(scope="module")
def weighted_samples(tmp_path_factory):
    """Full muons with pT ~ N(50, 10) GeV, flash muons ~ N(56, 10) GeV, and the analytic DCTR
    weight p_full/p_flash of every flash muon; files ``full``, ``flash`` (unweighted),
    ``weighted`` (the same flash muons with their weights), ``constant`` (weights all 1) and
    ``full_small``, ``weighted_small`` (their first 300 events, for a quick report)."""
    from scipy import stats

    out = tmp_path_factory.mktemp("weights")
    rng = np.random.default_rng(11)
    full_pt = rng.normal(FULL_PT, PT_SIGMA, WEIGHT_EVENTS)
    flash_pt = rng.normal(FLASH_PT, PT_SIGMA, WEIGHT_EVENTS)
    weight = (stats.norm.pdf(flash_pt, FULL_PT, PT_SIGMA)
              / stats.norm.pdf(flash_pt, FLASH_PT, PT_SIGMA))
    paths = {name: out / f"{name}.root" for name in ("full", "flash", "weighted", "constant")}
    _write_muon_sample(paths["full"], full_pt)
    _write_muon_sample(paths["flash"], flash_pt)
    _write_muon_sample(paths["weighted"], flash_pt, weight)
    _write_muon_sample(paths["constant"], flash_pt, np.ones(WEIGHT_EVENTS))
    for name, pt, w in (("full_small", full_pt, None), ("weighted_small", flash_pt, weight)):
        paths[name] = out / f"{name}.root"
        _write_muon_sample(paths[name], pt[:300], None if w is None else w[:300])
    return paths, weight


@pytest.fixture(scope="module")
def muon_tests(weighted_samples) -> dict[str, dict]:
    """The muon view's classifier test of each flash file of ``weighted_samples``."""
    from flashsim.validation.compare import compare_view, load_sample

    paths, _ = weighted_samples
    full = load_sample([paths["full"]], "full")
    return {flash: compare_view("Muon", full, load_sample([paths[flash]], "flash"))["classifier"]
            for flash in ("flash", "weighted", "constant")}


def test_weighted_auc_of_exact_weights_is_one_half(muon_tests):
    unweighted, weighted = muon_tests["flash"], muon_tests["weighted"]
    assert unweighted["weighted"] is False
    # a 0.6 σ shift: AUC Φ(0.6/√2) = 0.66 for the ideal classifier
    assert unweighted["auc"] > 0.6 and unweighted["auc"] - 0.5 > 6 * unweighted["auc_sigma"]
    # the weights p_full/p_flash make the flash muons full-simulation muons
    assert weighted["weighted"] is True
    assert abs(weighted["auc"] - 0.5) < max(3 * weighted["auc_sigma"], 0.03), weighted
    # copies of a row are not independent rows: the null spread counts distinct rows
    assert weighted["auc_null_sigma"] > unweighted["auc_null_sigma"]
    assert weighted["attribution"]["auc_all"] < unweighted["attribution"]["auc_all"] - 0.08


def _float32_ess(weight: np.ndarray) -> float:
    stored = weight.astype(np.float32).astype(np.float64)  # the file keeps float32
    return stored.sum() ** 2 / (len(stored) * np.sum(stored**2))


def test_weighted_test_reports_the_effective_sample_size(weighted_samples, muon_tests):
    _, weight = weighted_samples
    muon = muon_tests["weighted"]
    assert muon["ess_fraction"] == pytest.approx(_float32_ess(weight), rel=1e-12)
    # a Gaussian shift by δ = 0.6 σ: ESS/N = 1 / E_flash[w²] = exp(−δ²/σ²) = 0.70
    assert muon["ess_fraction"] == pytest.approx(np.exp(-0.36), rel=0.05)
    # the weight is no RECO branch: never compared
    assert "flashsimWeight" not in muon["features"]


def test_weighted_validation_report(weighted_samples, tmp_path):
    from flashsim.validation import run_validation

    paths, weight = weighted_samples
    result = run_validation([paths["full_small"]], [paths["weighted_small"]],
                            tmp_path / "report", plots_mode="none")
    expected = _float32_ess(weight[:300])
    assert result["objects"]["Muon"]["classifier"]["ess_fraction"] == pytest.approx(expected)
    events = result["events"]["classifier"]  # the event weight: one muon per event
    assert events["weighted"] is True and events["ess_fraction"] == pytest.approx(expected)
    assert abs(events["auc"] - 0.5) < 3 * events["auc_sigma"], events
    assert "flashsimWeight" not in result["objects"]["Muon"]["branches"]
    assert result["not_in_full"]["Muon"] == []
    stored_json = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert stored_json["objects"]["Muon"]["classifier"]["weighted"] is True
    assert stored_json["objects"]["Jet"]["classifier"]["weighted"] is False  # no jet weights
    summary = (tmp_path / "report" / "summary.md").read_text()
    muon_row = next(line for line in summary.splitlines() if line.startswith("| Muon |"))
    jet_row = next(line for line in summary.splitlines() if line.startswith("| Jet |"))
    assert f"(weighted, ESS {expected:.2f})" in muon_row and "weighted" not in jet_row
    assert f"(weighted, ESS {expected:.2f})" in summary.split("Whole events:")[1].split("\n")[0]
    assert "unweighted flash sample" in summary


def test_effective_sample_size_of_known_weights():
    assert metrics.effective_sample_size(np.ones(5)) == 1.0
    assert metrics.effective_sample_size([1.0, 0.0, 0.0, 0.0]) == 0.25
    assert metrics.effective_sample_size([2.0, 1.0]) == pytest.approx(9 / 10)


def test_importance_resample_follows_the_weights():
    rng = np.random.default_rng(3)
    rows = metrics.importance_resample(np.array([0.0, 1.0, 3.0]), 40_000, rng)
    assert np.bincount(rows, minlength=3)[0] == 0
    assert np.mean(rows == 2) == pytest.approx(0.75, abs=0.01)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.importance_resample(np.array([1.0, -1.0]), 2, rng)


@pytest.mark.parametrize("bad", [-0.5, np.nan])
def test_validate_rejects_bad_weights(weighted_samples, tmp_path, bad):
    paths, weight = weighted_samples
    broken = weight.copy()
    broken[10] = bad
    _write_muon_sample(tmp_path / "bad.root", np.full(WEIGHT_EVENTS, FLASH_PT), broken)
    from flashsim.validation import run_validation

    with pytest.raises(FlashSimError, match=r"1 values of Muon_flashsimWeight are negative or "
                       r"not finite.*flashsim simulate --weights"):
        run_validation([paths["full"]], [tmp_path / "bad.root"], tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_constant_weights_give_the_unweighted_metrics(weighted_samples, muon_tests):
    paths, _ = weighted_samples
    unweighted, constant = muon_tests["flash"], muon_tests["constant"]
    assert (unweighted["weighted"], constant["weighted"]) == (False, True)
    assert constant["ess_fraction"] == 1.0 and np.isnan(unweighted["ess_fraction"])
    # equal weights: the weighted sample is the sample, bit for bit
    drop = ("weighted", "ess_fraction")
    assert ({k: v for k, v in constant.items() if k not in drop}
            == {k: v for k, v in unweighted.items() if k not in drop})
    # and the unweighted path is the test of the bare matrices, as before weights existed
    from flashsim.validation.compare import load_sample, object_views, paired_events

    full, flash, _, _ = paired_events(load_sample([paths["full"]], "full"),
                                      load_sample([paths["flash"]], "flash"))
    views = [object_views(events, False)["Muon"] for events in (full, flash)]
    matrices = [np.column_stack([ak.to_numpy(v[f]).astype(np.float64)
                                 for f in unweighted["features"]]) for v in views]
    bare = metrics.classifier_two_sample_test(
        *matrices, groups_full=ak.to_numpy(views[0]._group),
        groups_flash=ak.to_numpy(views[1]._group))
    assert bare["aucs"] == unweighted["aucs"] and bare["auc_sigma"] == unweighted["auc_sigma"]
