"""Model building blocks: transforms, flows, training, artifacts, ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashsim.errors import FlashSimError
from flashsim.models.artifact import load_model, load_models, save_model, write_manifest
from flashsim.models.flows import FlowSampler, build_flow
from flashsim.models.training import TrainConfig, train_model, validation_mask
from flashsim.models.transforms import ColumnSpec, ColumnTransform, Preprocessor
from flashsim.objects.common import ModelSpec, TrainingTable

torch.set_num_threads(1)
TINY = {"transforms": 2, "bins": 6, "hidden_features": [16, 16], "passes": 2}


@pytest.mark.parametrize("values,probs", [
    ((0, 1), (0.7, 0.3)),                    # boolean
    ((0, 2, 6), (0.1, 0.2, 0.7)),            # jetId bit flags
    ((0, 4, 6, 7), (0.5, 0.1, 0.1, 0.3)),    # puId bit flags
    (tuple(range(5, 19)), None),             # nTrackerLayers-like integers
])
def test_discrete_roundtrip_exact_and_frequencies(values, probs):
    rng = np.random.default_rng(1)
    x = rng.choice(np.asarray(values, dtype=float), size=5000, p=probs)
    column = ColumnTransform(ColumnSpec("c", "discrete", values=tuple(map(float, values)))).fit(x)
    y = column.forward(x, rng)
    assert np.all(np.abs(y) <= 3.0)
    back = column.inverse(y)
    np.testing.assert_array_equal(back, x)
    # values anywhere in the standardised line snap to the allowed set
    assert set(np.unique(column.inverse(rng.uniform(-6, 6, 1000)))) <= set(map(float, values))


def test_spikes_and_continuous_roundtrip():
    rng = np.random.default_rng(2)
    x = np.exp(rng.normal(-2, 1, 6000))
    x[:1800] = 0.0     # isolation exactly zero
    x[1800:2100] = -1  # default value
    rng.shuffle(x)
    column = ColumnTransform(ColumnSpec("iso", transform="log")).fit(x)
    assert sorted(column.params["spikes"]) == [-1.0, 0.0]
    y = column.forward(x, rng)
    assert np.all(np.abs(y) < 5.0)
    back = column.inverse(y)
    spike = np.isin(x, [0.0, -1.0])
    np.testing.assert_array_equal(back[spike], x[spike])
    inside = ~spike & (np.abs(column.forward(x)) < 3.9)
    np.testing.assert_allclose(back[inside], x[inside], rtol=1e-9)
    assert np.mean(back == 0.0) == pytest.approx(0.3)


def test_preprocessor_json_roundtrip():
    rng = np.random.default_rng(3)
    data = {"a": rng.normal(size=100), "b": rng.integers(0, 3, 100).astype(float)}
    pre = Preprocessor.fit([ColumnSpec("a", transform="symlog"), ColumnSpec("b", "discrete")], data)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    y = pre.forward(data, np.random.default_rng(0))
    np.testing.assert_array_equal(again.forward(data, np.random.default_rng(0)), y)
    assert again.inverse(y)["b"].dtype == np.int64


def test_explicit_noise_sampling_matches_zuko_sample():
    torch.manual_seed(0)
    flow = build_flow(3, 2, TINY)
    c = torch.randn(1, 2).expand(20000, 2)
    with torch.no_grad():
        ours = FlowSampler(flow)(c, torch.randn(20000, 3))
        theirs = flow(c).sample()
    np.testing.assert_allclose(ours.mean(0), theirs.mean(0), atol=0.05)
    np.testing.assert_allclose(ours.std(0), theirs.std(0), rtol=0.05)


def _synthetic_flow_table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=n)
    a = 2 * c + 0.3 * rng.normal(size=n)
    flag = (rng.uniform(size=n) < 0.3 + 0.4 * (c > 0)).astype(float)
    return TrainingTable({"c": c}, {"a": a, "flag": flag}, np.ones(n), np.arange(n, dtype=np.uint64))


FLOW_SPEC = ModelSpec("toy_flow", "toy", "flow", (ColumnSpec("c"),),
                      (ColumnSpec("a"), ColumnSpec("flag", "discrete", values=(0.0, 1.0))))
CONFIG = TrainConfig(epochs=2, batch_size=128, lr=3e-3, architecture=TINY)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    model = train_model(FLOW_SPEC, _synthetic_flow_table(), out, CONFIG, {"files": []},
                        progress=False)
    rng = np.random.default_rng(0)
    n = 3000
    c = rng.normal(size=n)
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * c))).astype(float)
    table = TrainingTable({"c": c}, {"reconstructed": label}, np.ones(n), np.arange(n, dtype=np.uint64))
    spec = ModelSpec("toy_eff", "toy", "classifier", (ColumnSpec("c"),))
    classifier = train_model(spec, table, out, CONFIG, progress=False)
    counts = TrainingTable({"c": c}, {"n": rng.poisson(np.exp(0.5 * c))}, np.ones(n),
                           np.arange(n, dtype=np.uint64))
    spec = ModelSpec("toy_mult", "toy", "multiplicity", (ColumnSpec("c"),), max_count=6)
    multiplicity = train_model(spec, counts, out, CONFIG, progress=False)
    write_manifest(out)
    return out, {"toy_flow": model, "toy_eff": classifier, "toy_mult": multiplicity}


def test_training_decreases_validation_loss(toy_dir):
    _, models = toy_dir
    for model in models.values():
        history = model.meta["training"]["history"]
        assert len(history) == 2
        assert history[1]["val"] < history[0]["val"], model.name
        assert (toy_dir[0] / f"{model.name}_loss.png").is_file()
    assert not (toy_dir[0] / "checkpoint" / "toy_flow.pt").exists()


def test_validation_split_is_by_event():
    keys = np.repeat(np.arange(1000, dtype=np.uint64), 3)
    mask = validation_mask(keys, 0.2)
    assert 0.15 < mask.mean() < 0.25
    assert np.all(mask.reshape(-1, 3).all(axis=1) | ~mask.reshape(-1, 3).any(axis=1))


def test_artifact_roundtrip_bit_for_bit(toy_dir):
    out, models = toy_dir
    model = models["toy_flow"]
    loaded = load_model(out, "toy_flow")
    assert loaded.state_bytes() == model.state_bytes() or all(
        torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(),
                                          model.module.state_dict().values(), strict=True))
    columns = {"c": np.linspace(-2, 2, 500)}
    noise = np.random.default_rng(5).standard_normal((500, 2))
    a = model.sample(columns, None, noise)
    b = loaded.sample(columns, None, noise)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert set(np.unique(a["flag"])) <= {0, 1}
    # the re-saved artifact is identical too
    save_model(loaded, out / "again")
    assert (out / "again" / "toy_flow.json").read_text() == (out / "toy_flow.json").read_text()


def test_onnx_parity(toy_dir):
    import onnxruntime as ort

    from flashsim.models.onnx_export import export_model, onnx_parity

    out, _ = toy_dir
    for name in ("toy_flow", "toy_eff", "toy_mult"):
        model = load_model(out, name)
        session = ort.InferenceSession(export_model(model))
        assert onnx_parity(model, session) < 1e-4, name


def test_load_models_errors(tmp_path, toy_dir):
    with pytest.raises(FlashSimError, match="does not exist"):
        load_models(tmp_path / "nowhere")
    with pytest.raises(FlashSimError, match="manifest"):
        load_models(tmp_path)
    with pytest.raises(FlashSimError, match="lacks the models"):
        load_models(toy_dir[0])  # toy directory has none of the flashsim models
