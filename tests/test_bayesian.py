"""Bayesian flows: ELBO training, weight draws, their bands on a toy with a known density,
artifact and ONNX round trips, and ``flashsim simulate --model-draws``."""

from __future__ import annotations

import sys

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
from scipy.stats import norm

from flashsim.cli import main
from flashsim.models.artifact import load_model, write_manifest
from flashsim.models.bayesian import bayesian_layers, kl_divergence, solve_widths
from flashsim.models.flows import build_flow
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.training import TrainConfig, load_config, train_model
from flashsim.models.transforms import ColumnSpec
from flashsim.simulation import simulate

torch.set_num_threads(1)
TOY_ARCH = {"transforms": 2, "bins": 6, "hidden_features": [16, 16], "passes": 2}
TOY_SPEC = ModelSpec("toy_bayes", "toy", "flow", (ColumnSpec("c"),),
                     (ColumnSpec("y"), ColumnSpec("z")))
EDGES = np.linspace(-3.0, 3.0, 13)
TRUTH = np.diff(norm.cdf(EDGES))
"""Bin probabilities of the toy's target ``y ~ N(0, 1)`` whatever the context."""
BULK, SPARSE = 0.25, 0.75
"""Context values in the densely and the sparsely populated half of the training sample."""


def _toy_table(n: int, seed: int) -> TrainingTable:
    """``y, z ~ N(0, 1)`` independent of ``c``; 95% of the rows have ``c < 0.5``, 5% ``c > 0.5``."""
    rng = np.random.default_rng(seed)
    sparse = rng.uniform(size=n) < 0.05
    c = np.where(sparse, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
    return TrainingTable({"c": c}, {"y": rng.normal(size=n), "z": rng.normal(size=n)},
                         np.ones(n), np.arange(n, dtype=np.uint64))


def _train(n: int, out, epochs: int, **config):
    settings = {"epochs": epochs, "batch_size": 128, "lr": 1e-2, "val_fraction": 0.0,
                "patience": 1000, "bayesian": True, "architecture": TOY_ARCH, **config}
    return train_model(TOY_SPEC, _toy_table(n, 0), out, TrainConfig(**settings), progress=False)


def _draw_histograms(model, context: np.ndarray, draws: int = 30) -> np.ndarray:
    """Bin fractions of ``y`` for weight draws 0..draws-1, all on the same noise."""
    noise = np.random.default_rng(1).standard_normal((len(context), 2))
    rows = []
    for draw in range(draws):
        model.use_weight_draw(draw)
        rows.append(np.histogram(model.sample({"c": context}, None, noise)["y"], EDGES)[0])
    model.use_weight_draw(None)
    return np.asarray(rows) / len(context)


def _relative_band(model, c: float, rows: int = 5_000) -> float:
    """Mean over bins of (spread over draws) / truth at context ``c``."""
    return float(np.mean(_draw_histograms(model, np.full(rows, c)).std(axis=0) / TRUTH))


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory):
    """The toy flow trained on 1000 and on 4000 rows, with the same number of steps."""
    out = tmp_path_factory.mktemp("bayes_toy")
    return {1000: _train(1000, out / "n1000", epochs=60), 4000: _train(4000, out / "n4000", epochs=15)}


@pytest.mark.slow  # two trainings of ~15 s
def test_band_covers_the_truth_in_most_bins(toy_models):
    model = toy_models[4000]
    rows = 20_000
    context = _toy_table(rows, 5).context["c"]
    histograms = _draw_histograms(model, context)
    sigma = np.hypot(histograms.std(axis=0), np.sqrt(TRUTH * (1 - TRUTH) / rows))
    pull = (histograms.mean(axis=0) - TRUTH) / sigma
    assert np.mean(np.abs(pull) < 2) >= 0.75, pull
    assert np.all(histograms.std(axis=0) > 0)  # the draws differ


@pytest.mark.slow
def test_band_is_wider_where_training_rows_are_few(toy_models):
    for model in toy_models.values():
        assert _relative_band(model, SPARSE) > 1.3 * _relative_band(model, BULK)


@pytest.mark.slow
def test_band_shrinks_when_the_training_set_grows(toy_models):
    assert _relative_band(toy_models[4000], BULK) < 0.7 * _relative_band(toy_models[1000], BULK)


@pytest.fixture(scope="module")
def quick_bayes(tmp_path_factory):
    """A Bayesian toy flow after two epochs, saved with a manifest."""
    out = tmp_path_factory.mktemp("bayes_quick")
    model = _train(500, out, epochs=2)
    write_manifest(out)
    return out, model


def test_elbo_is_recorded_and_kl_is_scaled_by_the_training_rows(quick_bayes):
    out, model = quick_bayes
    assert model.meta["architecture"]["bayesian"] is True
    assert model.meta["architecture"]["prior_sigma"] == 1.0
    assert model.meta["metrics"]["loss"] == "nll+kl/n"
    assert model.meta["training"]["rows_train"] == 500
    with torch.no_grad():
        kl = float(kl_divergence(model.module))
        c = torch.from_numpy(model.context.forward(_toy_table(500, 0).context))
        y = torch.from_numpy(model.target.forward(_toy_table(500, 0).target))
        nll = float(-model.module.flow(c).log_prob(y).mean())
    assert kl > 0
    # validation loss of the best epoch = mean-weights NLL + KL / N_train (validated on train)
    assert model.meta["metrics"]["validation_loss"] == pytest.approx(nll + kl / 500, rel=1e-3)


def test_the_width_phases_are_recorded(quick_bayes):
    _, model = quick_bayes
    widths = model.meta["training"]["bayesian"]
    assert widths["solve_rows"] == 500
    assert widths["width_passes"] == 12 and len(widths["solved_median_log_var"]) == 12
    assert widths["elbo_epochs"] == 3
    history = model.meta["training"]["history"]
    assert [h.get("phase") for h in history] == [None, None, "elbo", "elbo", "elbo"]
    # the recorded summary is the artifact's widths, far from their narrow start at -9
    log_var = np.concatenate([t.detach().numpy().ravel() for layer in
                              bayesian_layers(model.module) for t in
                              (layer.weight_log_var[layer.mask.bool()], layer.bias_log_var)])
    assert widths["median_log_var"] == pytest.approx(np.median(log_var), abs=1e-3)
    assert widths["median_log_var"] > -7 and widths["log_var_95"] <= 1e-6


def _linear_gaussian_widths(n_train: int, rows: int = 20_000, passes: int = 24):
    """Solved widths of ``out = x W^T + b`` with zero means and the loss ``|out|^2 / 2`` per
    row, whose curvature is exactly quadratic: ``x_j^2`` for ``W_oj``, 1 for ``b_o``."""
    from flashsim.models.bayesian import BayesianMaskedLinear

    torch.manual_seed(1)
    layer = BayesianMaskedLinear(torch.nn.Linear(3, 2), prior_sigma=0.5).train()
    with torch.no_grad():
        layer.weight_mean.zero_()
        layer.bias_mean.zero_()
    x = torch.randn(rows, 3) * torch.tensor([1.0, 0.1, 0.0])  # input 2 is zero in every row
    w = torch.rand(rows) + 0.5
    summaries = solve_widths(layer, lambda: ((0.5 * (layer(x[s:s + 5000]) ** 2).sum(1),
                                              w[s:s + 5000]) for s in range(0, rows, 5000)),
                             n_train, passes)
    curvature = (w @ x ** 2) / w.sum()
    return layer, summaries, curvature


def test_solved_widths_are_the_elbo_optimum_of_a_linear_gaussian_model():
    layer, summaries, curvature = _linear_gaussian_widths(n_train=1000)
    assert len(summaries) == 24 and summaries[0]["rows"] == 20_000
    # 1/sigma^2 = N <d2l/dtheta2> + 1/sigma_p^2, the ELBO's stationary point, in closed form
    expected = -torch.log(1000 * curvature + 0.5 ** -2)
    np.testing.assert_allclose(layer.weight_log_var.detach(), expected.expand(2, 3), atol=0.05)
    np.testing.assert_allclose(layer.bias_log_var.detach(), -np.log(1000 + 4.0), atol=0.05)
    # the weight that no row touches keeps the prior width
    np.testing.assert_allclose(layer.weight_log_var.detach()[:, 2], np.log(0.25), atol=1e-6)
    # ten times the rows: a data-dominated width shrinks by log 10, a prior-dominated one less
    more, _, _ = _linear_gaussian_widths(n_train=10_000)
    shrink = (layer.weight_log_var - more.weight_log_var).detach()
    np.testing.assert_allclose(shrink[:, 0], np.log(10), atol=0.06)
    assert torch.all((shrink[:, 1] > 0.5) & (shrink[:, 1] < np.log(10) - 0.2))
    np.testing.assert_allclose(shrink[:, 2], 0, atol=1e-6)


def test_flow_widths_of_an_input_no_row_uses_stay_at_the_prior():
    torch.manual_seed(0)
    flow = build_flow(2, 2, {"transforms": 2, "bins": 4, "hidden_features": [8], "passes": 2,
                             "bayesian": True, "prior_sigma": 0.5})
    c, y, w = torch.randn(64, 2), torch.randn(64, 2), torch.rand(64) + 0.5
    c[:, 1] = 0.0

    def batches():
        return ((-flow(c[s:s + 16]).log_prob(y[s:s + 16]), w[s:s + 16]) for s in range(0, 64, 16))

    with pytest.raises(ValueError, match="training mode"):
        solve_widths(flow.eval(), batches, 1000, passes=1)
    solve_widths(flow.train(), batches, 1000, passes=30)
    first = bayesian_layers(flow)[0]  # its input is (y, c): column 3 is c[:, 1]
    np.testing.assert_allclose(first.weight_log_var.detach()[:, 3], np.log(0.25), atol=1e-6)
    informative = first.weight_log_var.detach()[:, 2][first.mask[:, 2].bool()]
    assert float(informative.median()) < np.log(0.25) - 1


def _regression_widths(n: int, epochs: int, out) -> dict:
    """Width summary of a one-target Bayesian flow of ``a = 2c + 0.3 N(0, 1)`` on ``n`` rows."""
    rng = np.random.default_rng(0)
    c = rng.normal(size=n)
    table = TrainingTable({"c": c}, {"a": 2 * c + 0.3 * rng.normal(size=n)}, np.ones(n),
                          np.arange(n, dtype=np.uint64))
    spec = ModelSpec("toy_regression", "toy", "flow", (ColumnSpec("c"),), (ColumnSpec("a"),))
    config = TrainConfig(epochs=epochs, batch_size=256, lr=2e-3, val_fraction=0.0,
                         patience=1000, bayesian=True,
                         architecture={"transforms": 2, "hidden_features": [32, 32]})
    return train_model(spec, table, out, config, progress=False).meta["training"]["bayesian"]


@pytest.mark.slow  # three trainings, ~35 s
def test_widths_settle_with_training_length_and_shrink_with_the_rows(tmp_path):
    short, long = _regression_widths(2000, 40, tmp_path), _regression_widths(2000, 80, tmp_path)
    for key in ("median_log_var", "log_var_5", "log_var_95"):
        assert abs(short[key] - long[key]) < 0.3, (key, short, long)
    # far from both the narrow start (-9) and the prior (0): the data set the widths
    assert -7 < short["median_log_var"] < -2
    # ten times the rows, as many optimizer steps as the long run: narrower, the most
    # constrained weights by nearly log 10
    more = _regression_widths(20_000, 8, tmp_path)
    assert more["median_log_var"] < long["median_log_var"] - 0.8
    assert more["log_var_5"] < long["log_var_5"] - 1.5


def test_bayesian_key_comes_from_the_config_file(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("defaults: {epochs: 3}\nmodels:\n  muon_flow: {bayesian: true}\n")
    assert load_config(config, "muon_flow").bayesian is True
    assert load_config(config, "jet_flow").bayesian is False


@pytest.mark.slow  # reads the CMS file and trains a flow
def test_train_command_makes_bayesian_flows(reference_nano, tmp_path, monkeypatch, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("defaults: {architecture: {transforms: 1, bins: 4, hidden_features: [16]}}\n")
    monkeypatch.setattr(sys, "argv", ["flashsim", "train", "muon", "--data", str(reference_nano),
                                      "-o", str(tmp_path / "models"), "--bayesian", "--epochs",
                                      "1", "--model", "muon_flow", "--config", str(config),
                                      "--quiet"])
    main()
    assert "validation nll+kl/n" in capsys.readouterr().out
    assert load_model(tmp_path / "models", "muon_flow").bayesian


def test_weight_draws_survive_save_and_load(quick_bayes):
    out, model = quick_bayes
    loaded = load_model(out, "toy_bayes")
    context = {"c": np.linspace(0, 1, 300)}
    noise = np.random.default_rng(3).standard_normal((300, 2))
    mean = loaded.sample(context, None, noise)
    np.testing.assert_array_equal(mean["y"], model.sample(context, None, noise)["y"])
    loaded.use_weight_draw(2)
    model.use_weight_draw(2)
    draw = loaded.sample(context, None, noise)
    np.testing.assert_array_equal(draw["y"], model.sample(context, None, noise)["y"])
    assert not np.array_equal(draw["y"], mean["y"])
    loaded.use_weight_draw(3)
    assert not np.array_equal(loaded.sample(context, None, noise)["y"], draw["y"])
    loaded.use_weight_draw(None)
    model.use_weight_draw(None)
    np.testing.assert_array_equal(loaded.sample(context, None, noise)["y"], mean["y"])


def test_onnx_exports_the_mean_weights(quick_bayes):
    import onnxruntime as ort

    from flashsim.models.onnx_export import export_model, onnx_parity

    out, _ = quick_bayes
    model = load_model(out, "toy_bayes")
    session = ort.InferenceSession(export_model(model))
    assert onnx_parity(model, session) < 1e-4
    model.use_weight_draw(0)
    assert onnx_parity(model, session) > 1e-3  # a draw is not what the graph holds
    onnx_model = load_model(out, "toy_bayes", backend="onnx")
    with pytest.raises(Exception, match="need the torch backend"):
        onnx_model.use_weight_draw(0)


# -- flashsim simulate --model-draws ------------------------------------------------------


@pytest.fixture(scope="session")
def bayesian_tiny_models(reference_nano, tmp_path_factory):
    """A complete model directory whose flows are Bayesian (one epoch, tiny networks)."""
    from conftest import TINY_ARCHITECTURE

    from flashsim.objects.training import train_object

    out = tmp_path_factory.mktemp("bayesian_tiny_models")
    train_object("all", [reference_nano], out, epochs=1, architecture=TINY_ARCHITECTURE,
                 bayesian=True, progress=False)
    return out


def _events(path) -> dict[str, ak.Array]:
    return uproot.open(path)["Events"].arrays(library="ak", how=dict)


def _gen_chunk(path) -> dict:
    from flashsim.nanoaod.reader import read_chunk
    from flashsim.runtime import gen_names

    keys = set(uproot.open(path)["Events"].keys())
    return read_chunk(path, [n for n in gen_names()
                             if n in keys or any(k.startswith(f"{n}_") for k in keys)])


def _simulated(gen, directory, **options) -> list[dict]:
    from flashsim.runtime import chunk_seed, simulate_batches, worker_models

    return list(simulate_batches(gen, worker_models(directory, "torch"),
                                 chunk_seed(4, "test", 0, 40), **options))


@pytest.mark.slow  # six simulations of a chunk
def test_model_draws_are_copies_of_the_gen_events_with_their_own_weights(
        reference_nano, bayesian_tiny_models):
    gen = _gen_chunk(reference_nano)
    batches = _simulated(gen, bayesian_tiny_models, model_draws=3)
    # draw-major: the chunk (one batch) once per draw
    assert [len(b["event"]) for b in batches] == [40] * 3
    for k, batch in enumerate(batches):
        draw = batch["flashsimModelDraw"]
        assert draw.dtype == np.uint32 and np.all(draw == k)
    per_draw = batches
    for k in (1, 2):  # the same GEN events, simulated with another model
        assert ak.array_equal(per_draw[k]["event"], gen["event"])
        assert ak.array_equal(per_draw[k]["GenPart"].pt, per_draw[0]["GenPart"].pt)
        assert not ak.array_equal(per_draw[k]["MET"].pt, per_draw[0]["MET"].pt)
    again = _simulated(gen, bayesian_tiny_models, model_draws=3)
    for a, b in zip(batches, again, strict=True):
        assert ak.array_equal(a["Jet"].pt, b["Jet"].pt) and ak.array_equal(a["MET"].pt, b["MET"].pt)


@pytest.mark.slow  # five simulations of a chunk
def test_one_model_draw_is_the_mean_weights_and_the_deterministic_interface(
        reference_nano, bayesian_tiny_models, tiny_models):
    gen = _gen_chunk(reference_nano)
    mean = _simulated(gen, bayesian_tiny_models)
    assert mean[0].keys() == _simulated(gen, tiny_models)[0].keys()
    assert "flashsimModelDraw" not in mean[0]
    # weight draws leave the (process-cached) models at their mean weights afterwards
    _simulated(gen, bayesian_tiny_models, model_draws=2)
    for a, b in zip(mean, _simulated(gen, bayesian_tiny_models, model_draws=1), strict=True):
        assert ak.array_equal(a["Jet"].pt, b["Jet"].pt) and ak.array_equal(a["MET"].pt, b["MET"].pt)


@pytest.mark.slow  # a coffea run and a validation
def test_simulate_and_validate_model_draws(reference_nano, bayesian_tiny_models, tmp_path):
    out = tmp_path / "draws.root"
    manifest = simulate([reference_nano], out, models=bayesian_tiny_models, model_draws=3,
                        chunksize=20, seed=4)
    assert manifest["events_in"] == 40 and manifest["events_out"] == 120
    assert manifest["model_draws"] == 3
    events = _events(out)
    # chunk by chunk (two chunks of 20), draw-major inside a chunk
    np.testing.assert_array_equal(events["flashsimModelDraw"], np.tile(np.repeat([0, 1, 2], 20), 2))
    from flashsim.nanoaod import read_runs

    np.testing.assert_array_equal(read_runs(out)["genEventCount"],  # the Runs count one draw
                                  read_runs(reference_nano)["genEventCount"])
    # validate: draw 0 is the flash sample, every draw enters the band
    from flashsim.validation import run_validation

    result = run_validation([reference_nano], [out], tmp_path / "report", plots_mode="key")
    assert result["inputs"]["flash_model_draws"] == 3 and result["inputs"]["flash_events"] == 40
    pt = result["objects"]["MET"]["branches"]["pt"]["model_band"]
    assert pt["bins"] > 0 and 0 <= pt["coverage_1sigma"] <= pt["coverage_2sigma"] <= 1
    band = result["model_band"]
    assert band["draws"] == 3 and band["bins"] > 0
    assert 0 <= band["coverage_1sigma"] <= band["coverage_2sigma"] <= 1
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "3 weight draws" in summary and "at 2σ" in summary
    assert (tmp_path / "report" / "MET_pt.png").is_file()
    jet_median = result["response"]["Jet"]["flash_model_sigma"]["pt"]["median"]
    assert np.nanmax(jet_median) > 0  # the draws move the jet response


def test_model_band_coverage_of_a_known_truth():
    from flashsim.validation.metrics import model_band

    rng = np.random.default_rng(7)
    edges = np.linspace(-3, 3, 25)
    # K models whose means scatter by 0.05 around the truth: the truth is inside their band
    draws = [rng.normal(rng.normal(0, 0.05), 1, 50_000) for _ in range(20)]
    covered = model_band(rng.normal(0, 1, 50_000), draws, edges)
    assert covered["coverage_2sigma"] >= 0.85 and covered["coverage_1sigma"] >= 0.5
    assert np.all(covered["model_sigma"] > 0) and covered["bins"] == 24
    # a truth shifted by 0.3 (six times the models' scatter) is not
    missed = model_band(rng.normal(0.3, 1, 50_000), draws, edges)
    assert missed["coverage_2sigma"] < 0.5
    # identical draws: no model uncertainty, only the statistical one
    same = model_band(rng.normal(0, 1, 1000), [draws[0]] * 3, edges)
    np.testing.assert_allclose(same["model_sigma"], 0, atol=1e-15)


def test_model_draws_of_deterministic_models_is_one_message(reference_nano, tiny_models,
                                                            tmp_path, monkeypatch, capsys):
    output = tmp_path / "out" / "flash.root"
    monkeypatch.setattr(sys, "argv", ["flashsim", "simulate", str(reference_nano), "-o",
                                      str(output), "--models", str(tiny_models),
                                      "--model-draws", "3"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("flashsim: error: --model-draws 3 needs Bayesian models"), err
    assert "--bayesian" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not output.exists() and not any(tmp_path.rglob("*.root"))
