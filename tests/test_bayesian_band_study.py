"""training/bayesian_band_study.py on the Bayesian points of a tiny model-size study: the band
of the flow trained on fewer rows is wider, every number is there, errors are one line."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import training_script


@pytest.fixture(scope="module")
def band_study():
    return training_script("bayesian_band_study")


@pytest.fixture(scope="module")
def bayesian_points(dy_refdet_sample, tmp_path_factory) -> list[Path]:
    """Bayesian muon flows trained on a tenth and on all of 300 reference-detector Drell-Yan
    events (a tiny run of ``model_size_study.py --bayesian``)."""
    out = tmp_path_factory.mktemp("bayesian_study")
    argv = ["--object", "muon_flow", "--bayesian", "--data", str(dy_refdet_sample),
            "--heldout", str(dy_refdet_sample),
            "--architecture", "transforms=1,hidden=16,bins=4,passes=2",
            "--fractions", "0.1", "1.0", "--epochs", "3", "--timing-repeats", "1",
            "--out", str(out), "--quiet"]
    assert training_script("model_size_study").main(argv) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["inputs"]["bayesian"] is True
    return sorted((out / "models").iterdir())


@pytest.mark.slow
def test_band_is_wider_with_fewer_training_rows(band_study, bayesian_points, dy_refdet_sample,
                                               tmp_path):
    # held out: the training file itself, as the band measures the spread of the weights
    small, large = bayesian_points  # ..._f0.1, ..._f1
    out = tmp_path / "bands"
    argv = ["--flow", "muon_flow", "--models", str(small), "--models", str(large),
            "--heldout", str(dy_refdet_sample), "--draws", "8", "--out", str(out)]
    assert band_study.main(argv) == 0
    result = json.loads((out / "bands.json").read_text())
    assert result["inputs"]["observables"] == ["pt_ratio", "pfRelIso04_all"]
    fewer, more = result["models"]
    assert fewer["rows_train"] < more["rows_train"]
    assert fewer["median_log_var"] > more["median_log_var"]  # the widths shrink with N
    for name in ("pt_ratio", "pfRelIso04_all"):
        a, b = fewer["observables"][name], more["observables"][name]
        assert a["edges"] == b["edges"]  # one binning for every model
        assert np.isclose(sum(a["full"]), 1.0) and np.isclose(sum(a["flash"]), 1.0)
        for band in (a, b):
            assert 0.0 <= band["coverage_1sigma"] <= band["coverage_2sigma"] <= 1.0
            assert band["median_relative_core"] > 0
        assert a["median_relative_core"] > b["median_relative_core"]
    iso = np.asarray(fewer["observables"]["pfRelIso04_all"]["edges"])
    assert iso[0] == 0.0 and np.all(np.diff(np.log(iso[1:]))
                                     == pytest.approx(np.log(iso[2] / iso[1])))
    assert "| pfRelIso04_all |" in (out / "bands.md").read_text()
    assert (out / "band_pt_ratio.png").stat().st_size > 0


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--flow", "muon_efficiency", "unknown --flow 'muon_efficiency'"),
    ("--draws", "1", "a band needs at least 2 weight draws"),
    ("--observable", "ptt", "give target columns of muon_flow"),
    ("--models", "PRETRAINED", "is not Bayesian"),
])
def test_user_errors_are_one_line(band_study, reference_nano, tmp_path, capsys, option, value,
                                  message):
    from flashsim.models.artifact import PRETRAINED

    options = {"--flow": "muon_flow", "--models": str(PRETRAINED), "--draws": "4",
               "--heldout": str(reference_nano), "--out": str(tmp_path / "bands"),
               option: str(PRETRAINED) if value == "PRETRAINED" else value}
    argv = [x for item in options.items() for x in item]
    assert band_study.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("bayesian_band_study.py: error: ") and message in err
    assert not (tmp_path / "bands").exists()


def test_edges(band_study):
    examples = doctest.testmod(band_study)
    assert examples.attempted > 0 and examples.failed == 0
