"""Latent space refinement (LaSeR) and DCTR weights on a toy with a known answer.

The toy: :math:`x_1 = \\pm(1.5 + 0.5 c) + 0.2\\,\\epsilon_1`, :math:`x_2 = 0.5 x_1 c +
0.3\\,\\epsilon_2` given :math:`c \\sim U(-1, 1)`: two modes separated by a gap around
:math:`x_1 = 0` that a flow from a Gaussian cannot empty (a topological obstruction), the more so
when it is under-trained. Truth: :math:`E|x_1| = 1.5`, :math:`P(|x_1| < 0.8) = 1.6\\%`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flashsim.errors import FlashSimError
from flashsim.models.artifact import REFINERS, load_model_set, save_model, write_manifest
from flashsim.models.refinement import RefineConfig, refine_model, save_refiner
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.training import TrainConfig, train_model
from flashsim.models.transforms import ColumnSpec

SPEC = ModelSpec("toy_flow", "toy", "flow", (ColumnSpec("c"),),
                 (ColumnSpec("x1", spikes=False), ColumnSpec("x2", spikes=False)))
TRUE_MEAN_ABS_X1 = 1.5


def toy(n: int, seed: int) -> TrainingTable:
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, n)
    x1 = rng.choice([-1.0, 1.0], n) * (1.5 + 0.5 * c) + 0.2 * rng.standard_normal(n)
    x2 = 0.5 * x1 * c + 0.3 * rng.standard_normal(n)
    events = np.arange(n, dtype=np.uint64) + np.uint64(seed * 1_000_000)
    return TrainingTable({"c": c}, {"x1": x1, "x2": x2}, np.ones(n), events)


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    """An under-trained toy flow (10 epochs, one hidden layer of 32) and its refiner, fitted on
    events disjoint from the flow's, saved as a model directory."""
    import torch

    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("toy_models")
    arch = {"transforms": 2, "bins": 4, "hidden_features": [32], "passes": 2}
    flow = train_model(SPEC, toy(3000, 1), directory,
                       TrainConfig(epochs=10, batch_size=256, architecture=arch), progress=False)
    write_manifest(directory)
    full = toy(6000, 2)
    refiner = refine_model(flow, full.context, full.target, full.event, RefineConfig(epochs=20))
    save_refiner(refiner, directory)
    return directory, flow, refiner


def _samples(directory, refine: bool, backend: str = "torch", n: int = 20_000):
    models = load_model_set(directory, {"toy_flow": SPEC}, backend=backend, refine=refine)
    test = toy(n, 3)
    noise = np.random.default_rng(5).standard_normal((n, 2))
    return models, models["toy_flow"].sample(test.context, np.random.default_rng(6), noise)


@pytest.mark.slow
def test_refinement_lowers_held_out_auc_and_fixes_the_gap(refined):
    _, _, refiner = refined
    metrics = refiner.meta["metrics"]
    # held-out AUC of a gradient-boosting classifier, not the DCTR MLP, on unseen events
    assert metrics["auc_flash"] > 0.7
    assert metrics["auc_refined"] < metrics["auc_flash"] - 0.03
    # the gain is significant: more than three times the AUC's statistical spread
    assert 0 < 3 * metrics["auc_null_sigma"] < metrics["auc_flash"] - metrics["auc_refined"]
    assert metrics["auc_dctr_weighted"] < metrics["auc_flash"] - 0.03
    # E_flash[p_full/p_flash] = 1 for a calibrated classifier
    assert abs(metrics["weight_mean"] - 1) < 3 * metrics["weight_mean_error"]
    assert 0 < metrics["effective_sample_size"] < 1


@pytest.mark.slow
def test_refined_sampling_moves_moments_toward_truth(refined):
    directory, _, _ = refined
    _, flash = _samples(directory, refine=False)
    models, refined_sample = _samples(directory, refine=True)
    assert models.refined == ["toy_flow"]
    gap = {name: np.mean(np.abs(s["x1"]) < 0.8) for name, s in
           (("flash", flash), ("refined", refined_sample))}
    mean_abs = {name: np.mean(np.abs(s["x1"])) for name, s in
                (("flash", flash), ("refined", refined_sample))}
    assert gap["refined"] < 0.7 * gap["flash"]
    assert (abs(mean_abs["refined"] - TRUE_MEAN_ABS_X1)
            < 0.5 * abs(mean_abs["flash"] - TRUE_MEAN_ABS_X1))


@pytest.mark.slow
def test_dctr_weights_of_the_flow_samples_move_moments_toward_truth(refined):
    directory, _, _ = refined
    _, flash = _samples(directory, refine=False)
    models = load_model_set(directory, {"toy_flow": SPEC}, refine=False, weights=True)
    assert models.weighted and models["toy_flow"].dctr is not None
    test = toy(20_000, 3)
    noise = np.random.default_rng(5).standard_normal((20_000, 2))
    weighted = models["toy_flow"].sample(test.context, np.random.default_rng(6), noise)
    for name in ("x1", "x2"):  # the weights leave the samples alone
        assert np.array_equal(weighted[name], flash[name])
    w = weighted["flashsimWeight"]
    assert np.all((w > 0) & (w <= RefineConfig().weight_clip))
    # 20 000 samples resolve the classifier's calibration (mean 0.98 here): a few per cent
    assert abs(np.mean(w) - 1) < 0.05
    reweighted = np.average(np.abs(flash["x1"]), weights=w)
    assert (abs(reweighted - TRUE_MEAN_ABS_X1)
            < 0.5 * abs(np.mean(np.abs(flash["x1"])) - TRUE_MEAN_ABS_X1))
    with pytest.raises(FlashSimError, match="--weights.*--no-refine"):
        load_model_set(directory, {"toy_flow": SPEC}, refine=True, weights=True)


@pytest.mark.slow
def test_refiner_without_information_stays_the_identity():
    """Unit weights on Gaussian latent points carry nothing to learn: the refiner starts as
    the identity and keeps it, so it passes the noise through unchanged (a refiner started at
    random moved it by 0.07 on average after its best epoch)."""
    import torch

    from flashsim.models.refinement import fit_refiner

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((3000, 8)).astype(np.float32)
    context = rng.standard_normal((3000, 2)).astype(np.float32)
    train = np.arange(3000) < 2000
    refiner, summary = fit_refiner(latent, context, np.ones(3000), train, ~train,
                                   RefineConfig(seed=3))
    assert summary["best_epoch"] == 0
    noise = torch.randn(5000, 8)
    with torch.no_grad():
        moved = refiner(torch.randn(5000, 2), noise)
    assert float((moved - noise).abs().max()) < 1e-5


def test_no_refine_is_the_flow_alone_bit_for_bit(refined, tmp_path):
    directory, _, _ = refined
    bare = tmp_path / "bare"
    flow = load_model_set(directory, {"toy_flow": SPEC}, refine=False)["toy_flow"]
    save_model(flow, bare)
    write_manifest(bare)
    without_refiners = _samples(bare, refine=True)[1]
    no_refine = _samples(directory, refine=False)[1]
    for name in ("x1", "x2"):
        assert np.array_equal(no_refine[name], without_refiners[name])


@pytest.mark.slow
def test_refiner_round_trips_through_save_load_and_onnx(refined, tmp_path):
    from flashsim.models.onnx_export import export_onnx

    directory, flow, refiner = refined
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(manifest["refiners"]) == {"toy_flow"}
    assert manifest["refiners"]["toy_flow"]["metrics"] == refiner.meta["metrics"]
    test = toy(500, 4)
    noise = np.random.default_rng(7).standard_normal((500, 2))
    flow.refiner = refiner  # the in-memory refiner, before saving
    try:
        in_memory = flow.sample(test.context, np.random.default_rng(0), noise)
    finally:
        flow.refiner = None
    loaded = load_model_set(directory, {"toy_flow": SPEC})["toy_flow"]
    assert loaded.refiner is not None
    reloaded = loaded.sample(test.context, np.random.default_rng(0), noise)
    for name in ("x1", "x2"):
        assert np.array_equal(in_memory[name], reloaded[name])

    parity = export_onnx(directory, tmp_path / "onnx_models")
    assert set(parity) == {"toy_flow", f"{REFINERS}/toy_flow"}
    assert (tmp_path / "onnx_models" / REFINERS / "onnx" / "toy_flow.onnx").is_file()
    onnx = load_model_set(tmp_path / "onnx_models", {"toy_flow": SPEC}, backend="onnx")["toy_flow"]
    assert onnx.refiner is not None and onnx.refiner.session is not None
    from_onnx = onnx.sample(test.context, np.random.default_rng(0), noise)
    for name in ("x1", "x2"):
        np.testing.assert_allclose(from_onnx[name], reloaded[name], atol=1e-3)


@pytest.mark.slow
def test_a_refiner_no_better_than_its_flow_does_not_sample(refined, tmp_path):
    """latent_refiner false (the held-out gain was within MIN_GAIN_SIGMAS): --refine samples
    the flow alone, bit for bit, and --weights still has the refiner's DCTR weights."""
    directory, flow, refiner = refined
    assert refiner.meta["metrics"]["latent_refiner"] and "latent_refiner" not in refiner.meta
    copy = tmp_path / "models"
    shutil.copytree(directory, copy)
    meta_path = copy / REFINERS / "toy_flow.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["latent_refiner"] = False
    meta_path.write_text(json.dumps(meta))
    write_manifest(copy)
    test = toy(500, 4)
    noise = np.random.default_rng(7).standard_normal((500, 2))
    alone = load_model_set(copy, {"toy_flow": SPEC})
    assert alone.refined == [] and alone["toy_flow"].refiner is None
    sampled = alone["toy_flow"].sample(test.context, np.random.default_rng(0), noise)
    unrefined = flow.sample(test.context, np.random.default_rng(0), noise)
    for name in ("x1", "x2"):
        assert np.array_equal(sampled[name], unrefined[name])
    weighted = load_model_set(copy, {"toy_flow": SPEC}, refine=False, weights=True)
    assert weighted["toy_flow"].dctr is not None


@pytest.mark.slow
def test_a_refiner_of_other_flow_weights_is_refused(refined, tmp_path):
    directory, _, _ = refined
    copy = tmp_path / "models"
    shutil.copytree(directory, copy)
    meta_path = copy / REFINERS / "toy_flow.json"
    meta = json.loads(meta_path.read_text())
    meta["flow_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FlashSimError, match="fitted to other weights.*--no-refine"):
        load_model_set(copy, {"toy_flow": SPEC})
    assert load_model_set(copy, {"toy_flow": SPEC}, refine=False).refined == []


@pytest.fixture(scope="module")
def refined_tiny_models(tiny_models, tmp_path_factory):
    """``flashsim refine`` of the tiny models on 150 reference-detector Drell-Yan events."""
    import subprocess
    import sys

    from flashsim.production import generate_file

    work = tmp_path_factory.mktemp("refine")
    full = work / "dy_refsim.root"
    generate_file("dy_mumu", 150, full, seed=23, refsim=True, progress=False)
    done = subprocess.run([sys.executable, "-m", "flashsim.cli", "refine", "--models",
                           str(tiny_models), "--full", str(full), "-o", str(work / "refined"),
                           "--epochs", "2", "--quiet"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return work / "refined", done.stdout


@pytest.mark.slow
def test_refine_command_writes_refiners_and_no_refine_is_the_flows(refined_tiny_models,
                                                                   tiny_models, reference_nano,
                                                                   tmp_path):
    import awkward as ak
    import uproot

    from flashsim.simulation import simulate

    refined, printed = refined_tiny_models
    manifest = json.loads((refined / "manifest.json").read_text())
    assert {"muon_flow", "jet_flow", "met_flow", "event"} <= set(manifest["refiners"])
    event = manifest["refiners"].pop("event")["metrics"]
    for key in ("effective_sample_size", "product_effective_sample_size"):
        assert 0 < event[key] <= 1, key
    assert 0 <= event["auc_product_weighted"] <= 1
    assert (f"event            held-out event AUC (± {event['auc_null_sigma']:.3f}) flash "
            f"{event['auc_flash']:.3f}") in printed
    for name, entry in manifest["refiners"].items():
        assert 0 <= entry["metrics"]["auc_flash"] <= 1, name
        assert entry["flow_sha256"] == manifest["models"][name]["sha256"]
        sigma = entry["metrics"]["auc_null_sigma"]
        assert f"{name:16s} held-out AUC (± {sigma:.3f}) flash" in printed
    runs = {}
    for label, models, refine in (("flows", tiny_models, True), ("no_refine", refined, False),
                                  ("refine", refined, True)):
        out = tmp_path / f"{label}.root"
        runs[label] = simulate([reference_nano], out, models=models, seed=3, refine=refine)
        runs[label]["events"] = uproot.open(out)["Events"].arrays(library="ak", how=dict)
    assert runs["flows"]["refined"] == runs["no_refine"]["refined"] == []
    # only refiners that beat their flow on held-out rows sample (the toy tests that path)
    sampling = {name for name, entry in manifest["refiners"].items()
                if entry["metrics"]["latent_refiner"]}
    assert set(runs["refine"]["refined"]) == sampling
    flows, no_refine, refine = (runs[k]["events"] for k in ("flows", "no_refine", "refine"))
    assert flows.keys() == no_refine.keys()
    for branch in flows:
        assert ak.array_equal(flows[branch], no_refine[branch]), branch
        if not sampling:
            assert ak.array_equal(flows[branch], refine[branch]), branch
    assert ak.array_equal(refine["GenPart_pt"], flows["GenPart_pt"])

    out = tmp_path / "weights.root"
    assert simulate([reference_nano], out, models=refined, seed=3, refine=False,
                    weights=True)["weights"]
    weighted = uproot.open(out)["Events"].arrays(library="ak", how=dict)
    added = {"Muon_flashsimWeight", "Electron_flashsimWeight", "Jet_flashsimWeight",
             "MET_flashsimWeight", "PV_flashsimWeight", "flashsimWeight"}
    assert set(weighted) - set(flows) == added
    for branch in flows:  # the weights leave the sample alone
        assert ak.array_equal(flows[branch], weighted[branch]), branch
    for branch in added:
        values = ak.flatten(weighted[branch], axis=None)
        assert ak.all(values > 0), branch
    assert ak.any(weighted["Muon_flashsimWeight"] != 1)  # muon_flow has a refiner
    # the event weight is the event classifier's, recomputed here from the written events
    from flashsim.nanoaod.reader import read_chunk
    from flashsim.objects import load_models
    from flashsim.objects.event import event_dctr_weights

    classifier = load_models(refined, refine=False, weights=True).event_classifier
    written = read_chunk(out, ["Muon", "Jet", "Electron", "MET", "PV", "fixedGridRhoFastjetAll",
                               "GenPart", "GenJet", "GenMET", "Pileup", "event"])
    event_weight = np.asarray(weighted["flashsimWeight"], dtype=np.float64)
    assert np.allclose(event_dctr_weights(classifier, written), event_weight, rtol=1e-3)
    assert np.all(event_weight <= classifier.meta["weight_scale"] * classifier.meta["weight_clip"])
    # without it, the product of the objects' weights
    bare = tmp_path / "no_event_classifier"
    shutil.copytree(refined, bare)
    for suffix in (".pt", ".json"):
        (bare / REFINERS / f"event{suffix}").unlink()
    write_manifest(bare)
    out = tmp_path / "product.root"
    simulate([reference_nano], out, models=bare, seed=3, refine=False, weights=True)
    product = uproot.open(out)["Events"].arrays(library="ak", how=dict)
    expected = np.ones(len(product["flashsimWeight"]))
    for branch in added - {"flashsimWeight"}:
        factor = product[branch]
        expected *= np.asarray(ak.prod(factor, axis=1) if factor.ndim > 1 else factor)
    assert np.allclose(product["flashsimWeight"], np.minimum(expected, 100), rtol=1e-5)
    # an event classifier fitted to other models is refused
    meta_path = refined / REFINERS / "event.json"
    meta = json.loads(meta_path.read_text())
    meta["models_sha256"] = "0" * 64
    stale = tmp_path / "stale"
    shutil.copytree(refined, stale)
    (stale / REFINERS / "event.json").write_text(json.dumps(meta))
    write_manifest(stale)
    with pytest.raises(FlashSimError, match="event classifier .* fitted to other models"):
        load_models(stale, refine=False, weights=True)
    with pytest.raises(FlashSimError, match="--no-refine"):
        simulate([reference_nano], tmp_path / "both.root", models=refined, weights=True)


def test_refine_bad_input_is_one_message_and_no_output(reference_nano, tmp_path):
    from flashsim.objects.refinement import refine_directory

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file.txt").write_text("x")
    with pytest.raises(FlashSimError, match="not empty"):
        refine_directory(None, [reference_nano], taken, progress=False)
    with pytest.raises(FlashSimError, match="does not exist"):
        refine_directory(tmp_path / "no_models", [reference_nano], tmp_path / "out",
                         progress=False)
    with pytest.raises(FlashSimError, match="--full"):
        refine_directory(None, [], tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
