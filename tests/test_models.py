"""Model building blocks: transforms, flows, training, artifacts, ONNX parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flashsim.errors import FlashSimError
from flashsim.models.artifact import load_model, save_model, write_manifest
from flashsim.models.flows import FlowSampler, build_flow
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.training import TrainConfig, train_model, validation_mask
from flashsim.models.transforms import ColumnSpec, ColumnTransform, Preprocessor
from flashsim.objects import load_models

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


def test_discrete_allowed_subset_snaps_to_the_nearest_allowed_bin():
    # a value grid 0..6 fitted wider than the schema's jetId values {0, 2, 6}
    column = ColumnTransform(ColumnSpec("jetId", "discrete"),
                             {"values": [0.0, 1, 2, 3, 4, 5, 6], "allowed": [0.0, 2, 6]})
    out = column.inverse(np.random.default_rng(0).uniform(-6, 6, 5000))
    assert set(np.unique(out)) == {0.0, 2.0, 6.0}
    width = 6.0 / 7
    centre = lambda k: -3.0 + (k + 0.5) * width  # noqa: E731
    # bin 1: lower half goes to 0, upper half to 2; bin 3 goes to 2, bin 5 to 6
    y = np.array([centre(0), centre(1) - 0.1, centre(1) + 0.1, centre(3), centre(5)])
    np.testing.assert_array_equal(column.inverse(y), [0, 0, 2, 2, 6])


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


def test_spikes_sit_at_the_end_they_belong_to():
    # a b-tag discriminant: light jets pile up at exactly 0, b jets saturate at exactly 1
    rng = np.random.default_rng(4)
    x = rng.beta(0.5, 3.0, 8000)
    x[:1500] = 0.0
    x[1500:3500] = 1.0
    column = ColumnTransform(ColumnSpec("btag", transform="logit")).fit(x)
    y = column.forward(x, rng)
    p = column.params
    assert np.all(y[x == 1.0] > p["hi"] + 0.1) and np.all(y[x == 0.0] < p["lo"] - 0.1)
    assert np.all(np.abs(y) < 5.0)
    back = column.inverse(y)
    np.testing.assert_array_equal(back[(x == 0) | (x == 1)], x[(x == 0) | (x == 1)])
    assert np.mean(back == 1.0) == pytest.approx(0.25)
    # the encoding of artifacts fitted before spikes could go above, declared explicitly
    old = ColumnTransform(column.spec, {**p, "spike_high": [False] * len(p["spikes"])})
    assert np.all(old.forward(np.ones(10), rng) < p["lo"])
    assert np.all(old.inverse(old.forward(x, rng))[(x == 0) | (x == 1)] == x[(x == 0) | (x == 1)])
    # without the declaration an artifact is refused, not guessed
    undeclared = {"spec": column.to_dict()["spec"],
                  "params": {k: v for k, v in p.items() if k != "spike_high"}}
    with pytest.raises(FlashSimError, match="btag.*spike_high"):
        ColumnTransform.from_dict(undeclared)


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


def test_artifact_records_how_it_was_made(toy_dir):
    import json
    import subprocess

    training = json.loads((toy_dir[0] / "toy_flow.json").read_text())["training"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent, check=True).stdout.strip()
    assert training["code"]["commit"] == head and isinstance(training["code"]["dirty"], bool)
    assert training["epochs_run"] == CONFIG.epochs == len(training["history"])
    assert training["device"] == f"cpu ({torch.get_num_threads()} torch threads)"
    assert training["seconds"] > 0 and training["finished"].endswith("+00:00")
    assert training["samples"] == []


def test_code_version_outside_git(monkeypatch):
    from flashsim.models.artifact import code_version

    monkeypatch.setenv("PATH", "")  # no git executable: the commit cannot be known
    assert code_version() == {"commit": "unknown", "dirty": None}


def test_training_samples_from_provenance():
    from flashsim.models.artifact import training_samples

    provenance = {"files": [
        {"path": "training/samples/dy_mumu_60000_seed101.root", "events": 60000,
         "provenance": {"process": "dy_mumu", "seed": 101, "events": 60000}},
        {"path": "/data/cms/nano_dy.root", "events": 40, "provenance": None}]}
    assert training_samples(provenance) == [
        {"name": "dy_mumu_60000_seed101.root", "process": "dy_mumu", "seed": 101, "events": 60000},
        {"name": "nano_dy.root", "process": None, "seed": None, "events": 40}]


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


def test_train_only_the_named_models(reference_nano, tmp_path, monkeypatch, capsys):
    import sys

    from flashsim.cli import main
    from flashsim.objects.training import train_object

    metrics = train_object("jet", [reference_nano], tmp_path, only=["jet_efficiency"], epochs=1,
                           architecture=TINY, progress=False)
    assert list(metrics) == ["jet_efficiency"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["jet_efficiency.json",
                                                               "manifest.json"]
    training = json.loads((tmp_path / "jet_efficiency.json").read_text())["training"]
    assert training["samples"] == [{"name": "nano_dy.root", "process": None, "seed": None,
                                    "events": 40}]  # a real CMS file: no flashsim provenance
    monkeypatch.setattr(sys, "argv", ["flashsim", "train", "jet", "--model", "muon_flow",
                                      "--data", str(reference_nano), "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--model muon_flow is not a model of jet" in error and "jet_flow" in error
    assert not (tmp_path / "x").exists()


def test_required_target_is_enforced_in_training_and_loading(tmp_path):
    """pv_flow must generate rho: no silent rho = 0 from a model trained without it."""
    from flashsim.objects import MODEL_SPECS

    spec = MODEL_SPECS["pv_flow"]
    assert spec.required == ("fixedGridRhoFastjetAll",)
    rng = np.random.default_rng(5)
    n = 200
    context = {c.name: rng.uniform(1, 50, n) for c in spec.context}
    targets = {"npvs": rng.integers(1, 40, n).astype(float), "z": rng.normal(0, 3, n)}
    table = TrainingTable(context, targets, np.ones(n), np.arange(n, dtype=np.uint64))
    config = TrainConfig(epochs=1, batch_size=128, architecture=TINY)
    with pytest.raises(FlashSimError, match="lack fixedGridRhoFastjetAll"):
        train_model(spec, table, tmp_path, config, progress=False)
    assert not list(tmp_path.iterdir())
    # an artifact made without the requirement (e.g. by an older flashsim) is refused on load
    unchecked = ModelSpec(spec.name, spec.object, spec.kind, spec.context, spec.targets)
    train_model(unchecked, table, tmp_path, config, progress=False)
    write_manifest(tmp_path)
    with pytest.raises(FlashSimError, match="pv_flow .* does not generate fixedGridRhoFastjetAll"):
        load_models(tmp_path, required=["pv_flow"])


def test_constant_target_is_returned_not_sampled(tmp_path):
    """A target with one value in every training row (a flag no training object sets) is
    stored in the artifact and returned exactly; the flow learns the others."""
    import onnxruntime as ort

    from flashsim.models.onnx_export import export_model, onnx_parity

    table = _synthetic_flow_table(n=500)
    table.target["flag"] = np.ones(500)
    model = train_model(FLOW_SPEC, table, tmp_path, TrainConfig(epochs=1, architecture=TINY),
                        progress=False)
    assert model.meta["target_constants"] == {"flag": 1.0}
    assert model.target.names == ["a"]
    write_manifest(tmp_path)
    loaded = load_model(tmp_path, "toy_flow")
    out = loaded.sample({"c": np.linspace(-2, 2, 50)}, np.random.default_rng(1))
    np.testing.assert_array_equal(out["flag"], np.ones(50))
    assert np.unique(out["a"]).size == 50
    assert onnx_parity(loaded, ort.InferenceSession(export_model(loaded))) < 1e-4


def test_targets_a_region_fixes_are_recorded_and_set(tmp_path):
    """A target one value fills in 99.8% of a region's rows (a jet tagger's default outside
    the tracker) is recorded with its value; one the region leaves free is not; the jet
    module sets the recorded one exactly where the region is, and nothing elsewhere."""
    from flashsim.models.artifact import load_model
    from flashsim.objects.jet import TRACKER_ETA, with_region_constants

    rng = np.random.default_rng(4)
    n = 3000
    eta = rng.uniform(-4.7, 4.7, n)
    forward = np.abs(eta) >= TRACKER_ETA
    qgl = np.where(forward & (rng.uniform(size=n) > 0.002), -1.0, rng.uniform(0, 1, n))
    free = rng.normal(size=n)
    table = TrainingTable({"c": eta}, {"a": qgl, "b": free}, np.ones(n),
                          np.arange(n, dtype=np.uint64), regions={"outside_tracker": forward})
    spec = ModelSpec("region_flow", "toy", "flow", (ColumnSpec("c"),),
                     (ColumnSpec("a"), ColumnSpec("b")))
    train_model(spec, table, tmp_path, CONFIG, progress=False)
    model = load_model(tmp_path, "region_flow")
    assert model.region_constants == {"outside_tracker": {"a": -1.0}}
    eta_new = np.array([-3.0, -2.5, 0.0, 2.49, 4.0])
    fields = {"eta": eta_new, **model.sample({"c": eta_new}, np.random.default_rng(0))}
    central_a = fields["a"][2:4].copy()
    fields = with_region_constants(fields, model)
    np.testing.assert_array_equal(fields["a"][[0, 1, 4]], -1.0)
    np.testing.assert_array_equal(fields["a"][2:4], central_a)


def test_targets_a_rule_fixes_are_derived_not_sampled(tmp_path):
    """A target that a candidate rule gives in every row within the storage rounding is taken
    out of the flow and recorded with the first rule that holds; one the rule misses in a
    single row, and a rule that needs a column the table lacks, leave their targets sampled.
    Loading with a spec that lacks the recorded rule fails with a clear message."""
    from flashsim.models.artifact import load_model_set
    from flashsim.models.training import RELATION_TOLERANCE, exact_relations

    rng = np.random.default_rng(6)
    n = 2000
    a = rng.uniform(0, 1, n)
    twice = np.clip(2 * a - 1, -1, 1) + rng.uniform(-1e-3, 1e-3, n)  # rounded storage
    off = twice.copy()
    off[17] += 3 * RELATION_TOLERANCE
    table = TrainingTable({"c": rng.normal(size=n)},
                          {"a": a, "twice": twice, "off": off, "free": rng.normal(size=n)},
                          np.ones(n), np.arange(n, dtype=np.uint64))
    rule = {"2a - 1": lambda col: np.clip(2 * col["a"] - 1, -1, 1)}
    relations = {"twice": {"missing input": lambda col: col["x"], **rule}, "off": rule,
                 "free": {"needs x": lambda col: col["x"]}}
    assert exact_relations(table, relations, ["a", "twice", "off", "free"]) == {"twice": "2a - 1"}
    spec = ModelSpec("rule_flow", "toy", "flow", (ColumnSpec("c"),),
                     tuple(ColumnSpec(k) for k in table.target), relations=relations)
    train_model(spec, table, tmp_path, CONFIG, progress=False)
    write_manifest(tmp_path)
    model = load_model(tmp_path, "rule_flow")
    assert model.derived_targets == {"twice": "2a - 1"}
    assert sorted(model.target.names) == ["a", "free", "off"]
    assert set(load_model_set(tmp_path, {"rule_flow": spec})) == {"rule_flow"}
    without = ModelSpec("rule_flow", "toy", "flow", spec.context, spec.targets)
    with pytest.raises(FlashSimError, match="derives .*twice.* re-train"):
        load_model_set(tmp_path, {"rule_flow": without})


def test_heavy_tails_round_trip_instead_of_being_cut():
    """A Student-t column (df 2): values far beyond 4σ come back from the flow space
    exactly, inside the spline domain; an artifact fitted before the tail compression (no
    ``tails``) still clamps at 4σ as it did."""
    rng = np.random.default_rng(5)
    x = rng.standard_t(2, 20000)
    column = Preprocessor.fit([ColumnSpec("x", spikes=False)], {"x": x}).columns[0]
    y = column.forward(x)
    assert np.abs(y).max() < 4.0 and column.params["tails"] == "tanh"
    z = np.abs(x - column.params["mean"]) / column.params["std"]
    assert (z > 4).mean() > 0.005
    np.testing.assert_allclose(column.inverse(y), x, rtol=1e-6, atol=1e-9)
    assert column.inverse(np.array([5.0]))[0] == pytest.approx(x.max())  # clipped to the range
    old = type(column)(column.spec, {k: v for k, v in column.params.items() if k != "tails"}
                       | {"lo": -4.0, "hi": 4.0})
    cut = old.inverse(old.forward(x))
    assert np.abs(cut - column.params["mean"]).max() <= 4 * column.params["std"] + 1e-9


def test_index_bit_orders_split_every_pair_the_alternating_split_keeps_together():
    """With 36 targets (the muon flow's) zuko's alternating order keeps each half together in
    every layer (306 pairs never split); index_bits, within 5 layers, all but 4 of the 630
    (bits 0-4; the halves of bits 3 and 4 are uneven for 36 targets, so ranks spill over)."""
    import itertools

    def never_split(arch):
        flow = build_flow(36, 3, {**TINY, "transforms": 5, **arch})
        halves = [t.order for t in flow.transform.transforms]
        return {(i, j) for i, j in itertools.combinations(range(36), 2)
                if all(h[i] == h[j] for h in halves)}

    assert len(never_split({})) == 2 * 153
    assert len(never_split({"orders": "index_bits"})) == 4
    with pytest.raises(ValueError, match="unknown flow orders"):
        build_flow(4, 1, {**TINY, "orders": "shuffled"})


@pytest.mark.slow  # two small trainings, about 12 s
def test_index_bit_orders_learn_a_pair_of_flags_in_one_half(tmp_path):
    """Two flags equal in 97% of the rows, the second half of [a, b, f1, f2]: with zuko's
    alternating split they are transformed independently in every layer and come out
    independent (agreement 0.5); split by index bits, the flow learns the tie. The
    index_bits artifact round-trips through save/load and ONNX."""
    import onnxruntime as ort

    from flashsim.models.onnx_export import export_model, onnx_parity

    rng = np.random.default_rng(3)
    n = 4000
    c = rng.normal(size=n)
    f1 = (rng.random(n) < 0.5).astype(float)
    targets = {"a": c + rng.normal(size=n), "b": rng.normal(size=n), "f1": f1,
               "f2": np.where(rng.random(n) < 0.97, f1, 1 - f1)}
    spec = ModelSpec("toy_flow", "toy", "flow", (ColumnSpec("c"),),
                     (ColumnSpec("a"), ColumnSpec("b"),
                      *(ColumnSpec(f, "discrete", values=(0.0, 1.0)) for f in ("f1", "f2"))))
    agreement = {}
    for orders in ("alternate", "index_bits"):
        config = TrainConfig(epochs=60, patience=60, seed=1,
                             architecture={**TINY, "hidden_features": [32, 32], "orders": orders})
        table = TrainingTable({"c": c}, targets, np.ones(n), np.arange(n, dtype=np.uint64))
        model = train_model(spec, table, tmp_path / orders, config, progress=False)
        out = model.sample({"c": rng.normal(size=20000)}, np.random.default_rng(1))
        agreement[orders] = np.mean(out["f1"] == out["f2"])
    assert abs(agreement["alternate"] - 0.5) < 0.03
    assert agreement["index_bits"] > 0.62
    write_manifest(tmp_path / "index_bits")
    loaded = load_model(tmp_path / "index_bits", "toy_flow")
    again = loaded.sample({"c": np.linspace(-2, 2, 100)}, np.random.default_rng(2))
    first = model.sample({"c": np.linspace(-2, 2, 100)}, np.random.default_rng(2))
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])
    assert onnx_parity(loaded, ort.InferenceSession(export_model(loaded))) < 1e-4
