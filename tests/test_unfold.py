"""``flashsim unfold`` end to end on a small reference-detector sample, and its errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from flashsim.cli import main
from flashsim.nanoaod import read_chunk, write_nanoaod
from flashsim.unfold import TASKS, get_task, kinematics
from flashsim.unfold.output import read_unfolded
from flashsim.unfold.task import read_events

SAMPLES = 16


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["flashsim", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dy_sample(dy_refdet_sample):
    """300 dy_mumu events with the reference detector (GEN + RECO)."""
    return dy_refdet_sample


@pytest.fixture(scope="module")
def trained(dy_sample, tmp_path_factory):
    import torch

    from flashsim.unfold.run import train_unfolding

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("unfold_models")
    train_unfolding("dimuon", [dy_sample], out, epochs=1, progress=False,
                    architecture={"transforms": 1, "bins": 4, "hidden_features": [16],
                                  "summary_hidden": [16], "summary_features": 4})
    for method in ("ibu", "omnifold"):
        train_unfolding("dimuon", [dy_sample], out, method=method)
    return out


def test_decay_chain_coordinates_round_trip():
    rng = np.random.default_rng(np.random.SeedSequence([18, 10]))
    n = 50
    parent = kinematics.from_resonance_coordinates(rng.uniform(60, 120, n),
                                                   rng.exponential(30, n),
                                                   rng.normal(0, 2, n), rng.uniform(-3, 3, n))
    cos, phi = rng.uniform(-1, 1, n), rng.uniform(-3, 3, n)
    a, b = kinematics.decay(parent, np.zeros(n), cos, phi)
    np.testing.assert_allclose(kinematics.mass(a), 0, atol=1e-4)
    np.testing.assert_allclose(kinematics.mass(a + b), kinematics.mass(parent), rtol=1e-9)
    angles = kinematics.decay_angles(parent, a)
    np.testing.assert_allclose(angles["cos"], cos, atol=1e-9)
    np.testing.assert_allclose(angles["phi"], phi, atol=1e-9)


@pytest.mark.slow  # generates 300 events with Pythia and the reference detector
def test_dimuon_truth_is_the_hard_process(dy_sample):
    task = get_task("dimuon")
    events = read_events(task, dy_sample)
    assert 0.2 < len(events) / 300 < 0.6  # two tight muons in the acceptance
    assert np.all(events.gen_ok)
    truth = events.truth_targets
    # the Z/gamma* of dy_mumu has m > 50 GeV and peaks at the Z mass
    assert np.all(truth["Z_m"] > 49.9) and abs(np.median(truth["Z_m"]) - 91.2) < 2
    # encode/decode of the latent coordinates reproduces every target
    back = task.samples_from_latent(events.truth, events.frame)
    for name in task.target_names:
        difference = back[name] - truth[name]
        if name.endswith("_phi"):
            difference = (difference + np.pi) % (2 * np.pi) - np.pi
        assert np.all(np.abs(difference) < 1e-6 * (1 + np.abs(truth[name]))), name
    # RECO muons sit close to the GEN ones
    assert np.median(np.abs(events.reco_targets["Z_m"] - truth["Z_m"])) < 3


@pytest.mark.slow
def test_train_apply_keeps_event_ids(dy_sample, trained, tmp_path, monkeypatch, capsys):
    output = tmp_path / "unfolded.root"
    code, out, err = _cli(monkeypatch, capsys, "unfold", "apply", "dimuon", dy_sample,
                          "--models", trained, "-o", output, "--samples", SAMPLES, "--seed", 3)
    assert code == 0, err
    assert "unfolded events" in out
    result = read_unfolded(output)
    chunk = read_chunk(dy_sample, ["run", "luminosityBlock", "event", *get_task("dimuon")
                                   .reco_branches])
    selected = get_task("dimuon").select(chunk)
    for name in ("run", "luminosityBlock", "event"):
        np.testing.assert_array_equal(result[name], np.asarray(chunk[name])[selected])
    for target in TASKS["dimuon"].target_names:
        assert result[target].shape == (selected.sum(), SAMPLES)
        assert np.all(np.isfinite(result[target]))
        assert result[f"{target}_true"].shape == (selected.sum(),)
    assert np.all(result["Z_m"] > 0) and np.all(result["mu1_pt"] >= result["mu2_pt"])
    tree = uproot.open(output)["Unfolded"]
    assert "GeV" in tree["Z_pt"].title and tree["Z_pt"].typename == f"float[{SAMPLES}]"
    # the same seed gives the same samples
    again = tmp_path / "again.root"
    assert _cli(monkeypatch, capsys, "unfold", "apply", "dimuon", dy_sample, "--models",
                trained, "-o", again, "--samples", SAMPLES, "--seed", 3)[0] == 0
    np.testing.assert_array_equal(read_unfolded(again)["Z_pt"], result["Z_pt"])


def _error(monkeypatch, capsys, *args) -> str:
    code, _, err = _cli(monkeypatch, capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashsim: error:"), err
    return lines[0]


@pytest.mark.slow
def test_bad_inputs_give_one_clear_error(dy_sample, trained, tmp_path, monkeypatch, capsys):
    reco_only = tmp_path / "reco_only.root"
    write_nanoaod(reco_only, read_chunk(dy_sample, ["run", "luminosityBlock", "event", "Muon",
                                                    "Jet", "MET"]))
    gen_only = tmp_path / "gen_only.root"
    write_nanoaod(gen_only, read_chunk(dy_sample, ["run", "luminosityBlock", "event",
                                                   "GenPart"]))
    output = tmp_path / "out.root"

    message = _error(monkeypatch, capsys, "unfold", "train", "dimuon", "--data", reco_only,
                     "-o", tmp_path / "models")
    assert "no GEN" in message and "--refsim" in message
    message = _error(monkeypatch, capsys, "unfold", "apply", "ttbar_dilepton", dy_sample,
                     "-o", output)
    assert "unknown unfolding task 'ttbar_dilepton'" in message and "dimuon" in message
    message = _error(monkeypatch, capsys, "unfold", "apply", "dimuon", gen_only, "--models",
                     trained, "-o", output)
    assert "lacks the RECO branch(es) Muon_pt" in message
    message = _error(monkeypatch, capsys, "unfold", "apply", "dimuon", dy_sample, "--models",
                     tmp_path, "-o", output)
    assert "no cINN for task dimuon" in message
    assert not output.exists() and not list(tmp_path.glob("out.root.tmp-*"))


@pytest.mark.slow
def test_ibu_and_omnifold_outputs(dy_sample, trained, tmp_path, monkeypatch, capsys):
    task = get_task("dimuon")
    n_selected = len(read_events(task, dy_sample))
    ibu_out, omnifold_out = tmp_path / "ibu.root", tmp_path / "omnifold.root"
    for method, output in (("ibu", ibu_out), ("omnifold", omnifold_out)):
        code, _, err = _cli(monkeypatch, capsys, "unfold", "apply", "dimuon", dy_sample,
                            "--method", method, "--models", trained, "-o", output)
        assert code == 0, err
    with uproot.open(ibu_out) as file:
        unfolded, true = file["Z_m"].values(), file["Z_m_true"].values()
        # unfolding the training sample with its own response: the prior is the truth
        assert unfolded.sum() == pytest.approx(n_selected, rel=1e-6)
        assert np.abs(unfolded - true).sum() < 0.05 * n_selected
    weights = read_unfolded(omnifold_out)
    assert weights["weight"].sum() == pytest.approx(n_selected, rel=1e-4)
    assert np.all(weights["weight"] > 0) and weights["Z_m"].shape == (n_selected,)


@pytest.mark.slow
def test_validate_writes_the_report(dy_sample, trained, tmp_path, monkeypatch, capsys):
    report = tmp_path / "report"
    code, _, err = _cli(monkeypatch, capsys, "unfold", "validate", "dimuon", "--data",
                        dy_sample, "--models", trained, "-o", report, "--samples", 20)
    assert code == 0, err
    metrics = json.loads((report / "metrics.json").read_text())
    targets = TASKS["dimuon"].target_names
    assert set(metrics["cinn"]["max_calibration_deviation"]) == set(targets)
    for method in ("cinn", "omnifold", "ibu"):
        assert set(metrics[method]["sum"]) == {"W1", "energy", "KS", "KL64", "KL128", "KL256"}
    assert metrics["model_dependence"]["true_mean"][1] > metrics["model_dependence"]["true_mean"][0]
    summary = (report / "summary.md").read_text()
    assert "| cINN | 10 |" in summary and "OmniFold (weighted)" in summary
    assert (report / "calibration.png").is_file() and (report / "posterior_event0.png").is_file()


@pytest.mark.slow  # generates 200 semi-leptonic ttbar events with the reference detector
def test_ttbar_mujets_partons_and_selection(tmp_path):
    from flashsim.production import generate_file

    path = tmp_path / "tt.root"
    generate_file("ttbar_mujets", 200, path, seed=1_800_019, refsim=True)
    task = get_task("ttbar_mujets")
    events = read_events(task, path)
    # the muon channel with >= 4 jets and 2 b tags keeps ~15% of the events
    assert 0.05 < len(events) / 200 < 0.35
    assert np.all(events.gen_ok)  # every event has exactly one W -> mu nu and one W -> q q'
    truth = events.truth_targets
    assert abs(np.median(truth["t_had_m"]) - 172.5) < 3
    assert abs(np.median(truth["W_lep_m"]) - 80.4) < 2
    assert len(task.targets) == 6 * 4 + 5 * 5
    back = task.samples_from_latent(events.truth, events.frame)
    for name in task.target_names:
        assert np.all(np.abs(back[name] - truth[name]) < 1e-6 * (1 + np.abs(truth[name]))), name
    # the RECO muon is the hard-process muon, MET follows the neutrino
    assert np.corrcoef(events.reco_targets["mu_px"], truth["mu_px"])[0, 1] > 0.99
    assert np.corrcoef(events.reco_targets["nu_px"], truth["nu_px"])[0, 1] > 0.5


def test_distances_of_a_shift():
    from flashsim.unfold.metrics import distances

    rng = np.random.default_rng(np.random.SeedSequence([18, 11]))
    truth = rng.standard_normal(20_000)
    same = distances(rng.standard_normal(20_000), truth)
    shifted = distances(rng.standard_normal(20_000) + 0.5, truth)
    assert same["W1"] < 0.03 and abs(shifted["W1"] - 0.5) < 0.03
    assert same["KS"] < 0.02 and abs(shifted["KS"] - 0.197) < 0.02  # 2 Phi(0.25) - 1
    assert same["KL64"] < 0.01 < 0.1 < shifted["KL64"]
    # weights that turn one sample into the other: a weighted sample matches
    x = rng.uniform(-4, 4, 40_000)
    weighted = distances(x, truth, weights=np.exp(-0.5 * x**2))
    assert weighted["W1"] < 0.03 and weighted["KS"] < 0.02


def test_ibu_recovers_a_smeared_spectrum():
    from flashsim.unfold.ibu import unfold_histogram

    rng = np.random.default_rng(np.random.SeedSequence([18, 12]))
    edges = np.linspace(-4, 4, 33)

    def histograms(truth):
        reco = truth + 0.6 * rng.standard_normal(len(truth))
        return [np.histogram(np.clip(v, -3.999, 3.999), edges)[0] for v in (truth, reco)]

    sim_truth = rng.standard_normal(200_000)
    sim_reco = sim_truth + 0.6 * rng.standard_normal(len(sim_truth))
    counts = np.histogram2d(np.clip(sim_reco, -3.999, 3.999), np.clip(sim_truth, -3.999, 3.999),
                            (edges, edges))[0]
    true, measured = histograms(0.8 + 0.9 * rng.standard_normal(50_000))  # another spectrum
    result = unfold_histogram(measured.astype(float), counts)
    assert np.abs(result["unfolded"] - true).sum() < 0.5 * np.abs(measured - true).sum()
    assert result["unfolded"].sum() == pytest.approx(measured.sum(), rel=1e-6)


SHIPPED = Path(__file__).parents[1] / "flashsim" / "pretrained" / "unfold"


@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="no shipped unfolding models")
def test_shipped_unfolding_models_load_within_budget():
    from flashsim.unfold import cinn
    from flashsim.unfold.run import DEFAULT_MODELS

    assert DEFAULT_MODELS.resolve() == SHIPPED.resolve()
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 2 * 1024**2
    for task in TASKS.values():
        model = cinn.load(task, SHIPPED)
        files = [f["path"] for f in model.meta["training"]["files"]]
        # trained on the training seeds only, never on a held-out (1000000 + seed) sample
        assert files and not any("seed1000" in f for f in files)
        assert np.isfinite(model.meta["metrics"]["validation_loss"])


@pytest.mark.slow
def test_mirror_image_is_the_reflected_event(dy_sample):
    from flashsim.unfold.task import mirrored

    task = get_task("dimuon")
    events = read_events(task, dy_sample, need_gen=True)
    both = mirrored(task, events)
    n = len(events)
    image = task.samples_from_latent({k: v[n:] for k, v in both.truth.items()}, events.frame)
    for name, value in events.truth_targets.items():
        sign = -1 if name.endswith("_eta") else 1
        np.testing.assert_allclose(image[name], sign * value, atol=1e-6 * (1 + np.abs(value).max()))
    np.testing.assert_array_equal(both.features["mu1_eta"][n:], -events.features["mu1_eta"])
    np.testing.assert_array_equal(both.key[n:], events.key)
