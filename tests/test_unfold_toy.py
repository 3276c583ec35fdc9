"""The cINN on a toy with an analytic posterior: Gaussian smearing of a Gaussian truth.

Truth :math:`y \\sim \\mathcal N(\\mu_0, \\sigma_0^2)` per component, observation
:math:`x = y + \\epsilon`, :math:`\\epsilon \\sim \\mathcal N(0, \\sigma^2)`. The posterior is
Gaussian with variance :math:`s^2 = (\\sigma_0^{-2} + \\sigma^{-2})^{-1}` and mean
:math:`s^2(\\mu_0/\\sigma_0^2 + x/\\sigma^2)`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.training import TrainConfig, train_model
from flashsim.models.transforms import ColumnSpec
from flashsim.unfold.metrics import rank_calibration

PRIOR_MEAN = np.array([1.0, -2.0])
PRIOR_WIDTH = np.array([1.0, 2.0])
SMEARING = np.array([0.5, 1.0])


def _toy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = PRIOR_MEAN + PRIOR_WIDTH * rng.standard_normal((n, 2))
    return y, y + SMEARING * rng.standard_normal((n, 2))


def _posterior(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    var = 1.0 / (1.0 / PRIOR_WIDTH**2 + 1.0 / SMEARING**2)
    return var * (PRIOR_MEAN / PRIOR_WIDTH**2 + x / SMEARING**2), np.sqrt(var) * np.ones_like(x)


@pytest.fixture(scope="module")
def toy_cinn(tmp_path_factory):
    torch.set_num_threads(1)
    rng = np.random.default_rng(np.random.SeedSequence([18, 1]))
    y, x = _toy(20_000, rng)
    spec = ModelSpec("toy_cinn", "unfold:toy", "cinn",
                     (ColumnSpec("x0"), ColumnSpec("x1")),
                     (ColumnSpec("y0", spikes=False), ColumnSpec("y1", spikes=False)))
    table = TrainingTable({"x0": x[:, 0], "x1": x[:, 1]}, {"y0": y[:, 0], "y1": y[:, 1]},
                          np.ones(len(y)), np.arange(len(y), dtype=np.uint64))
    config = TrainConfig(epochs=12, batch_size=512, lr=3e-3, patience=12, architecture={
        "transforms": 2, "bins": 8, "hidden_features": [32, 32], "summary_hidden": [32],
        "summary_features": 8})
    return train_model(spec, table, tmp_path_factory.mktemp("toy"), config, progress=False)


def _draw(model, x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.repeat(x, k, axis=0)
    out = model.sample({"x0": rows[:, 0], "x1": rows[:, 1]}, rng)
    return np.stack([out["y0"], out["y1"]], axis=1).reshape(len(x), k, 2)


@pytest.mark.slow  # trains a small cINN: ~15 s of CPU
def test_cinn_posterior_matches_the_analytic_one(toy_cinn):
    rng = np.random.default_rng(np.random.SeedSequence([18, 2]))
    _, x = _toy(40, rng)
    samples = _draw(toy_cinn, x, 2000, rng)
    mean, width = _posterior(x)
    # per event: the mean within 15% and the width within 15% of the analytic width
    assert np.all(np.abs(samples.mean(axis=1) - mean) < 0.15 * width)
    assert np.all(np.abs(samples.std(axis=1) / width - 1) < 0.15)


@pytest.mark.slow
def test_cinn_rank_histogram_is_flat(toy_cinn):
    rng = np.random.default_rng(np.random.SeedSequence([18, 3]))
    y, x = _toy(4000, rng)
    samples = _draw(toy_cinn, x, 19, rng)
    for i in range(2):
        calibration = rank_calibration(samples[:, :, i], y[:, i])
        # a calibrated posterior deviates by ~1/sqrt(n) = 0.016; a 20% too wide or too
        # narrow one by ~0.05
        assert calibration["max_deviation"] < 0.04, calibration
        assert sum(calibration["histogram"]) == 4000


def test_rank_calibration_detects_an_overconfident_posterior():
    rng = np.random.default_rng(np.random.SeedSequence([18, 4]))
    y, x = _toy(4000, rng)
    mean, width = _posterior(x)
    narrow = mean[:, :1] + 0.5 * width[:, :1] * rng.standard_normal((4000, 19))
    good = mean[:, :1] + width[:, :1] * rng.standard_normal((4000, 19))
    assert rank_calibration(narrow, y[:, 0])["max_deviation"] > 0.1
    assert rank_calibration(good, y[:, 0])["max_deviation"] < 0.04
