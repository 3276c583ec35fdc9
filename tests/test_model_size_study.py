"""training/model_size_study.py: the model-size study of one flow, end to end on tiny inputs,
and its one-line errors."""

from __future__ import annotations

import doctest
import json

import pytest
from conftest import training_script


@pytest.fixture(scope="module")
def study():
    return training_script("model_size_study")


@pytest.mark.slow
def test_study_measures_every_grid_point(study, dy_refdet_sample, reference_nano, tmp_path, capsys):
    # the real CMS file trains, the reference-detector sample is held out: a tiny flow after
    # one epoch, so the AUC is far from 0.5, but every number must be there and sane
    out = tmp_path / "study"
    argv = ["--object", "muon_flow", "--data", str(reference_nano), "--heldout", str(dy_refdet_sample),
            "--architecture", "transforms=1,hidden=16,bins=4,passes=2",
            "--fractions", "0.5", "1.0", "--epochs", "1", "--timing-repeats", "1",
            "--out", str(out), "--quiet"]
    assert study.main(argv) == 0
    result = json.loads((out / "study.json").read_text())
    points = {p["fraction"]: p for p in result["points"]}
    assert set(points) == {0.5, 1.0}
    for point in points.values():
        assert point["architecture"] == "transforms=1,hidden=16,bins=4,passes=2"
        assert 0.0 <= point["auc"] <= 1.0
        assert point["objects_per_s"] > 0
        assert point["epochs_run"] == 1 and point["parameters"] > 0
        assert point["classifier_rows"][0] > 100  # the held-out muons, not the training ones
        assert (out / "models" / f"transforms1_hidden16_bins4_passes2_f{point['fraction']:g}"
                / "muon_flow.json").is_file()
    assert points[0.5]["events"] == 20 and points[1.0]["events"] == 40
    assert (points[0.5]["rows_train"] + points[0.5]["rows_validation"]
            < points[1.0]["rows_train"] + points[1.0]["rows_validation"])
    table = (out / "study.md").read_text().splitlines()
    assert sum(line.startswith("| transforms=1,") for line in table) == 2
    assert not list(out.glob("simulation_*"))  # the scratch model sets and flash files are gone

    # a rerun with the same inputs resumes: nothing is trained again
    capsys.readouterr()
    assert study.main(argv) == 0
    assert capsys.readouterr().out == ""
    assert json.loads((out / "study.json").read_text()) == result
    # other inputs never overwrite the study
    assert study.main([*argv, "--seed", "2"]) == 2
    assert "holds a study of other inputs" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--object", "pv_flow", "unknown --object 'pv_flow'"),
    ("--architecture", "transforms=5,hidden=96-96", "hidden=96-96 is not a positive integer"),
    ("--architecture", "transforms=5,width=96", "unknown key 'width'"),
    ("--architecture", "transforms", "'transforms' is not KEY=VALUE"),
])
def test_user_errors_are_one_line(study, reference_nano, tmp_path, capsys, option, value,
                                  message):
    options = {"--object": "muon_flow", "--architecture": "transforms=1",
               "--data": str(reference_nano), "--heldout": str(reference_nano),
               "--out": str(tmp_path / "study"), option: value}
    argv = [x for item in options.items() for x in item]
    assert study.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("model_size_study.py: error: ") and message in err
    assert not (tmp_path / "study").exists()


def test_architecture_strings(study):
    assert study.parse_architecture("transforms=8,hidden=256x256,bins=16,passes=null") == {
        "transforms": 8, "hidden_features": [256, 256], "bins": 16, "passes": None}
    text = "transforms=5,hidden=96x96,bins=8,passes=2"
    assert study.architecture_label(study.parse_architecture(text)) == text
    examples = doctest.testmod(study)
    assert examples.attempted > 0 and examples.failed == 0
