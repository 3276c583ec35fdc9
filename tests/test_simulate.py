"""``flashsim simulate`` end to end: the processor's output, executors, oversampling, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import awkward as ak
import numpy as np
import pytest
import uproot

from flashsim.cli import main
from flashsim.nanoaod import load_schema, open_events, read_chunk, read_runs, write_nanoaod
from flashsim.nanoaod.reader import stored_names
from flashsim.nanoaod.writer import NanoAODWriter
from flashsim.runtime import gen_names, scaled_runs
from flashsim.simulation import simulate

# several chunks per run (coffea balances them: 40 events in chunks of <= 15 -> 14, 14, 12)
CHUNK = 15


def _events(path) -> dict[str, ak.Array]:
    """Every branch of the Events tree of ``path`` (or of several files, concatenated)."""
    paths = path if isinstance(path, list) else [path]
    parts = [uproot.open(p)["Events"].arrays(library="ak", how=dict) for p in paths]
    return {k: ak.concatenate([p[k] for p in parts]) for k in parts[0]}


def _assert_same_files(a, b) -> None:
    left, right = _events(a), _events(b)
    assert left.keys() == right.keys()
    for name in left:
        assert ak.array_equal(left[name], right[name]), name


@pytest.fixture(scope="module")
def gen_file(reference_nano, tmp_path_factory):
    """The GEN part of the CMS file, without a Runs tree (as a bare GEN producer writes it)."""
    path = tmp_path_factory.mktemp("gen") / "gen.root"
    chunk = read_chunk(reference_nano, [n for n in gen_names() if n in _present_in(reference_nano)])
    write_nanoaod(path, chunk)
    with uproot.update(path) as file:
        del file["Runs"]
    assert read_runs(path) is None
    return path


def _present_in(path) -> set[str]:
    keys = uproot.open(path)["Events"].keys()
    return {k.split("_")[0] for k in keys} | set(keys)


@pytest.fixture(scope="module")
def flash_file(reference_nano, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("flash") / "flash.root"
    manifest = simulate([reference_nano], out, models=tiny_models, chunksize=20, seed=7)
    return out, manifest


def test_output_is_nanoaod_with_crossrefs(flash_file, reference_nano):
    out, manifest = flash_file
    assert manifest["events_in"] == manifest["events_out"] == 40
    events = open_events(out)
    assert len(events) == 40
    muons, jets = events.Muon, events.Jet
    # matched_gen follows the rebuilt indices to the right GEN objects
    has_gen = muons.genPartIdx >= 0
    assert ak.sum(has_gen) > 0
    gen_muons = muons[has_gen].matched_gen
    assert ak.all(abs(gen_muons.pdgId) == 13) and ak.all(gen_muons.status == 1)
    has_jet = jets.genJetIdx >= 0
    assert ak.sum(has_jet) > 0
    genjet = events.GenJet[jets.genJetIdx[has_jet]]
    assert ak.all(jets[has_jet].matched_gen.pt == genjet.pt)
    for coll in (muons, jets):
        assert ak.all(coll.pt[:, :-1] >= coll.pt[:, 1:])
    # muon <-> jet references agree with each other
    idx = ak.local_index(muons)
    linked = muons.jetIdx >= 0
    jet_of_muon = jets[muons.jetIdx[linked]]
    assert ak.all((jet_of_muon.muonIdx1 == idx[linked]) | (jet_of_muon.muonIdx2 == idx[linked])
                  | (jet_of_muon.nMuons > 2))
    assert ak.all(jets.muonIdx1 < ak.num(muons)) and ak.all(jets.muonIdx2 < ak.num(muons))


def test_electron_crossrefs_resolve_in_coffea(flash_file):
    events = open_events(flash_file[0])
    electrons, jets = events.Electron, events.Jet
    assert ak.sum(ak.num(electrons)) > 0
    matched = electrons[electrons.genPartIdx >= 0]
    assert ak.sum(ak.num(matched)) > 0
    assert set(np.unique(ak.to_numpy(ak.flatten(abs(matched.matched_gen.pdgId))))) <= {11, 22}
    in_jet = electrons[electrons.jetIdx >= 0]
    assert ak.sum(ak.num(in_jet)) > 0
    host = in_jet.matched_jet
    assert ak.all((host.electronIdx1 >= 0) & (host.nElectrons >= 1))
    # Jet.matched_electrons lists the jet's electrons (the first two), each pointing back
    back = ak.drop_none(jets.matched_electrons, axis=2)  # -1 entries come as None
    assert ak.all(ak.num(back, axis=2) == np.minimum(jets.nElectrons, 2))
    assert ak.all(ak.flatten(back.jetIdx, axis=2)
                  == ak.flatten(ak.broadcast_arrays(ak.local_index(jets.pt), back.pt)[0], axis=2))


def test_simulate_without_electron_models_says_so(reference_nano, tiny_models, tmp_path,
                                                   monkeypatch, capsys):
    from flashsim.models.artifact import write_manifest

    models = tmp_path / "no_electrons"
    shutil.copytree(tiny_models, models)
    for path in models.glob("*electron*"):
        path.unlink()
    write_manifest(models)
    output = tmp_path / "flash.root"
    monkeypatch.setattr(sys, "argv", ["flashsim", "simulate", str(reference_nano), "-o",
                                      str(output), "--models", str(models)])
    main()
    err = capsys.readouterr().err
    assert "flashsim: note:" in err and "no electron models" in err and "Traceback" not in err
    keys = set(uproot.open(output)["Events"].keys())
    assert "nElectron" not in keys and "nMuon" in keys


def test_dtypes_follow_the_schema(flash_file):
    schema = load_schema()
    tree = uproot.open(flash_file[0])["Events"]
    for name, branch in tree.items():
        interpretation = getattr(branch.interpretation, "content", branch.interpretation)
        expected = (np.dtype(np.uint32) if name.startswith("n") and name[1:] in schema.collections
                    else schema.branch(name).dtype)
        assert interpretation.to_dtype.newbyteorder("=") == expected, name


def test_gen_passed_through_reco_not_copied(flash_file, reference_nano):
    out, _ = flash_file
    keys = set(uproot.open(out)["Events"].keys())
    source = _present_in(reference_nano)
    gen = [n for n in gen_names() if n in source]
    assert {"GenPart", "GenJet", "GenJetAK8", "GenVisTau", "GenDressedLepton"} <= set(gen)
    flash, cms = read_chunk(out, gen), read_chunk(reference_nano, gen)
    for name in gen:
        assert ak.array_equal(flash[name], cms[name]), name
    assert not any(k.startswith(("Tau", "Photon", "FatJet", "LHE")) for k in keys)
    assert {"nMuon", "nElectron", "Jet_genJetIdx", "MET_pt", "PV_npvs",
            "fixedGridRhoFastjetAll"} <= keys
    flash_reco = read_chunk(out, ["Jet", "Electron"])
    cms_reco = read_chunk(reference_nano, ["Jet", "Electron"])
    for name in ("Jet", "Electron"):  # simulated, not copied
        assert not ak.array_equal(flash_reco[name].pt, cms_reco[name].pt), name
    for column, values in read_runs(out).items():
        np.testing.assert_array_equal(values, read_runs(reference_nano)[column])


@pytest.mark.slow  # starts a process pool and a Dask cluster
def test_executors_give_identical_output(gen_file, tiny_models, tmp_path):
    common = {"models": tiny_models, "chunksize": CHUNK, "seed": 3}
    simulate([gen_file], tmp_path / "iterative.root", **common)
    futures = simulate([gen_file], tmp_path / "futures.root", executor="futures", workers=2,
                       **common)
    dask = simulate([gen_file], tmp_path / "dask.root", executor="dask", workers=2, **common)
    for manifest in (futures, dask):  # more chunks than workers: the work was shared
        assert [c["entry_stop"] - c["entry_start"] for c in manifest["chunks"]] == [14, 14, 12]
    _assert_same_files(tmp_path / "iterative.root", tmp_path / "futures.root")
    _assert_same_files(tmp_path / "iterative.root", tmp_path / "dask.root")


def test_oversampling_into_a_directory(gen_file, tiny_models, tmp_path):
    out = tmp_path / "flash"
    manifest = simulate([gen_file], out, models=tiny_models, chunksize=CHUNK, oversample=3)
    written = json.loads((out / "manifest.json").read_text())
    assert written["events_in"] == 40 and written["events_out"] == 120
    assert written["inputs"] == [str(gen_file)] and written["seed"] == 1
    assert set(written["models"]["models"]) >= {"muon_flow", "jet_flow", "met_flow"}
    assert "torch" in written["models"]["versions"] and written["seconds"] > 0
    files = sorted(out.glob("*.root"), key=lambda p: int(p.stem.split("_")[-2]))
    assert [str(p) for p in files] == sorted(manifest["outputs"],
                                             key=lambda p: int(p.split("_")[-2]))
    assert len(files) > 1
    events = _events(files)
    source = read_chunk(gen_file, ["event", "genWeight"])
    assert len(events["event"]) == 120
    np.testing.assert_array_equal(events["flashsimReplica"], np.tile([0, 1, 2], 40))
    np.testing.assert_array_equal(events["event"], np.repeat(source["event"], 3))
    # the input has no Runs tree: sums come from genWeight, over the 3 copies
    runs = [read_runs(p) for p in files]
    sumw = sum(r["genEventSumw"].sum() for r in runs)
    np.testing.assert_allclose(sumw, 3 * source["genWeight"].astype(np.float64).sum(), rtol=1e-6)
    assert sum(r["genEventCount"].sum() for r in runs) == 120
    met = ak.to_numpy(events["MET_pt"]).reshape(40, 3)
    assert np.all(met[:, 0] != met[:, 1])
    assert not list(tmp_path.glob(".flash.*"))  # no staging left


def test_one_chunk_output_is_its_chunk_file_as_a_merge_would_rewrite_it(gen_file, tiny_models,
                                                                          tmp_path):
    """A run of one chunk moves its chunk file to the .root output instead of merging it. That
    is only right if the file reads back and rewrites unchanged, as the merge did: the same
    branches in the same order, with the same titles, types and values, and the same Runs."""
    out = tmp_path / "one.root"
    manifest = simulate([gen_file], out, models=tiny_models, chunksize=100, oversample=2,
                        batch_events=30)
    assert len(manifest["chunks"]) == 1
    rewritten = tmp_path / "rewritten.root"
    with NanoAODWriter(rewritten, runs=read_runs(out)) as writer:
        writer.write(read_chunk(out, stored_names(out)))
    for tree in ("Events", "Runs"):
        published, merged = uproot.open(out)[tree], uproot.open(rewritten)[tree]
        assert published.keys() == merged.keys()
        assert published.num_entries == merged.num_entries > 0
        for key in published.keys():
            left, right = published[key], merged[key]
            assert (left.title, left.typename) == (right.title, right.typename), key
            assert ak.array_equal(left.array(), right.array(), dtype_exact=True,
                                  equal_nan=True), key


def test_oversampling_scales_the_input_runs(reference_nano):
    runs, source = scaled_runs(reference_nano, 2), read_runs(reference_nano)
    np.testing.assert_allclose(runs["genEventSumw"], 2 * source["genEventSumw"])
    np.testing.assert_allclose(runs["genEventSumw2"], 2 * source["genEventSumw2"])
    np.testing.assert_array_equal(runs["genEventCount"], 2 * source["genEventCount"])


@pytest.mark.slow  # exports every model to ONNX
def test_onnx_backend(gen_file, tiny_models, tmp_path):
    from flashsim.models.onnx_export import export_onnx

    onnx_models = tmp_path / "onnx"
    export_onnx(tiny_models, onnx_models)
    out = tmp_path / "onnx.root"
    manifest = simulate([gen_file], out, models=onnx_models, backend="onnx", chunksize=20)
    assert manifest["events_out"] == 40 and manifest["models"]["backend"] == "onnx"
    events = open_events(out)
    assert len(events) == 40
    for values in (events.MET.pt, ak.flatten(events.Jet.pt), ak.flatten(events.Muon.pt)):
        values = ak.to_numpy(values)
        assert np.all(np.isfinite(values)) and np.all(values >= 0)


def test_empty_input_gives_empty_nanoaod(reference_nano, tiny_models, tmp_path):
    empty = tmp_path / "empty_gen.root"
    write_nanoaod(empty, read_chunk(reference_nano, ["GenPart", "GenJet", "GenMET", "Pileup",
                                                     "Generator", "genWeight", "run",
                                                     "luminosityBlock", "event"], 0, 0))
    out = tmp_path / "empty_flash.root"
    manifest = simulate([empty], out, models=tiny_models)
    assert manifest["events_out"] == 0
    tree = uproot.open(out)["Events"]
    assert tree.num_entries == 0
    assert {"nMuon", "Muon_pt", "Jet_pt", "MET_pt", "GenPart_pt", "event"} <= set(tree.keys())
    assert len(open_events(out)) == 0


# -- the command line: bad input -> one message, exit 2, nothing written --------------------


def _cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["flashsim", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def bad_inputs(tmp_path, tiny_models):
    no_gen = tmp_path / "no_gen.root"
    write_nanoaod(no_gen, {"run": np.ones(3), "luminosityBlock": np.ones(3),
                           "event": np.arange(3)})
    text = tmp_path / "text.root"
    text.write_text("not a ROOT file\n")
    empty_models = tmp_path / "empty_models"
    empty_models.mkdir()
    incomplete = tmp_path / "incomplete_models"
    incomplete.mkdir()
    manifest = json.loads((tiny_models / "manifest.json").read_text())
    del manifest["models"]["muon_flow"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be\n")
    return {"no_gen": no_gen, "text": text, "empty_models": empty_models,
            "incomplete": incomplete, "blocker": blocker}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_gen", "lacks the NanoAOD branch"),
        ("text", "not a readable ROOT file"),
        ("missing", "does not exist"),
        ("empty_models", "no manifest.json"),
        ("incomplete", "lacks the models muon_flow"),
        ("unwritable", "cannot write"),
    ],
)
def test_bad_input_is_one_message(case, message, bad_inputs, reference_nano, tiny_models,
                                  tmp_path, monkeypatch, capsys):
    inputs = {"no_gen": bad_inputs["no_gen"], "text": bad_inputs["text"],
              "missing": tmp_path / "nowhere.root"}.get(case, reference_nano)
    models = {"empty_models": bad_inputs["empty_models"],
              "incomplete": bad_inputs["incomplete"]}.get(case, tiny_models)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = bad_inputs["blocker"] / "flash.root" if case == "unwritable" else out_dir / "f.root"
    before = sorted(tmp_path.rglob("*"))
    code, err = _cli(monkeypatch, capsys, "simulate", inputs, "-o", output, "--models", models)
    assert code == 2
    assert err.startswith("flashsim: error:") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no partial output, no staging left


def test_cli_process_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flashsim.cli", "simulate", str(tmp_path / "nowhere.root"),
         "-o", str(tmp_path / "out.root")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.root").exists()


def _printed_bounds(printed: str) -> tuple[float, float]:
    """The interval of true values that a number rounded to its last printed digit came from."""
    half = 0.5 * 10.0 ** -len(printed.partition(".")[2])
    return float(printed) - half, float(printed) + half


@pytest.mark.slow  # generates with the reference detector too
def test_benchmark_command_reports_consistent_rates(tiny_models, gen_file, monkeypatch,
                                                    capsys):
    from flashsim import benchmark

    flash_events, gen_events = 40, 3
    monkeypatch.setattr(sys, "argv", ["flashsim", "benchmark", "--input", str(gen_file),
                                      "--models", str(tiny_models), "--chunksize", "15",
                                      "--chunksize", "40", "--backend", "torch",
                                      "--gen-events", str(gen_events)])
    began = time.perf_counter()
    main()
    wall = time.perf_counter() - began
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in lines if line.startswith("backend"))
    assert header == ["backend", "chunk", *benchmark.STAGES, "total"]
    # flash rows: backend, chunk size, events/s per stage and in total
    rows = {int(line.split()[1]): line.split()[2:] for line in lines if line.startswith("torch ")}
    assert sorted(rows) == [15, 40]
    generation = {label: line.split()[-1] for line in lines
                  for label in ("Pythia generation", "generation + reference detector")
                  if line.strip().startswith(label)}
    assert len(generation) == 2
    for printed in [*generation.values(), *(r for rates in rows.values() for r in rates)]:
        assert float(printed) > 0, lines
    # the stages add up to the total: 1 / total rate = sum over stages of 1 / stage rate
    for rates in rows.values():
        *stages, total = [_printed_bounds(r) for r in rates]
        assert sum(1 / hi for _, hi in stages) <= 1 / total[0]
        assert sum(1 / lo for lo, _ in stages) >= 1 / total[1]
    # events / rate is the time taken; all of it lies inside the command's wall time
    timed = (sum(flash_events / _printed_bounds(rates[-1])[1] for rates in rows.values())
             + sum(gen_events / _printed_bounds(rate)[1] for rate in generation.values()))
    assert timed < wall
    # cost ratio of each flash row = generation rate / flash rate
    ratios = [line.split("=") for line in lines if "flash / generation =" in line]
    assert len(ratios) == len(rows)
    for parts, rates in zip(ratios, rows.values(), strict=True):
        flash_lo, flash_hi = _printed_bounds(rates[-1])
        for printed, label in ((parts[1].split()[0], "Pythia generation"),
                               (parts[2].strip(), "generation + reference detector")):
            ratio_lo, ratio_hi = _printed_bounds(printed)
            gen_lo, gen_hi = _printed_bounds(generation[label])
            assert ratio_lo <= gen_hi / flash_lo and ratio_hi >= gen_lo / flash_hi, label


def test_replicate_slices_compose(gen_file):
    """A batch of the replicated chunk is exactly that slice of the whole replication."""
    from flashsim.runtime import replicate

    gen = read_chunk(gen_file, ["GenPart", "event"])
    whole = replicate(gen, 3)
    parts = [replicate(gen, 3, start, min(start + 7, 120)) for start in range(0, 120, 7)]
    assert all(len(p["event"]) <= 7 for p in parts)
    for name in whole:
        assert ak.array_equal(ak.concatenate([p[name] for p in parts]), whole[name]), name
    assert whole["flashsimReplica"].tolist()[:6] == [0, 1, 2, 0, 1, 2]


_PEAK_RSS = """
import resource, sys
from flashsim.cli import main
sys.argv = ["flashsim", *sys.argv[1:]]
main()
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak_rss_mb(tmp_path, *args) -> float:
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, "simulate", *map(str, args),
                             "-o", str(tmp_path / "out.root")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # stderr is not a terminal: no progress bar, neither ours nor coffea's
    assert "ev/s" not in result.stderr and "it/s" not in result.stderr
    assert "Preprocessing" not in result.stdout + result.stderr
    return int(result.stderr.split("peak_rss_kb")[-1]) / 1024


@pytest.mark.slow
def test_oversampling_memory_is_bounded(gen_file, tiny_models, tmp_path):
    """Oversampling 100x (4 000 output events) in batches of 250 costs little more memory
    than no oversampling. Simulating the whole replicated chunk at once (before batching)
    peaked 325 MB above the 1x run; one batch of 250 events needs about 20 MB."""
    common = (gen_file, "--models", tiny_models)
    single = _peak_rss_mb(tmp_path, *common, "--oversample", "1")
    oversampled = _peak_rss_mb(tmp_path, *common, "--oversample", "100", "--batch-events", "250")
    assert oversampled - single < 150, (single, oversampled)
    assert len(read_chunk(tmp_path / "out.root", ["event"])["event"]) == 4000


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("simulate", ["--backend", "onnx"], "--device cuda runs the torch backend"),
        ("simulate", [], "no CUDA GPU"),
        ("benchmark", [], "no CUDA GPU"),
    ],
)
def test_cuda_without_a_gpu_is_one_message(command, extra, message, reference_nano, tiny_models,
                                           tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available() and message == "no CUDA GPU":
        pytest.skip("this machine has a GPU")
    before = sorted(tmp_path.rglob("*"))
    args = ([reference_nano, "-o", tmp_path / "f.root"] if command == "simulate"
            else ["--input", reference_nano])
    code, err = _cli(monkeypatch, capsys, command, *args, "--models", tiny_models,
                     "--device", "cuda", *extra)
    assert code == 2
    assert err.startswith("flashsim: error:") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_dy_ee_refsim_to_flash_electrons_in_coffea(tiny_models, tmp_path, monkeypatch, capsys):
    """The issue's done-when: `flashsim generate dy_ee -n 500 --refsim`, electron models
    trained on it, `flashsim simulate`; coffea resolves Electron.matched_gen,
    Electron.matched_jet and Jet.matched_electrons."""
    from conftest import TINY_ARCHITECTURE

    from flashsim.objects.training import train_object

    full = tmp_path / "dy_ee.root"
    monkeypatch.setattr(sys, "argv", ["flashsim", "generate", "dy_ee", "-n", "500", "--refsim",
                                      "-o", str(full)])
    main()
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    train_object("electron", [full], models, epochs=2, architecture=TINY_ARCHITECTURE,
                 progress=False)
    flash = tmp_path / "flash.root"
    monkeypatch.setattr(sys, "argv", ["flashsim", "simulate", str(full), "-o", str(flash),
                                      "--models", str(models)])
    main()
    # the tiny models have no fake muons (nano_dy.root holds too few), but every electron model
    assert "no electron models" not in capsys.readouterr().err
    events = open_events(flash)
    electrons = events.Electron
    assert ak.sum(ak.num(electrons)) > 400  # about two per Z -> ee event
    prompt = electrons[electrons.genPartFlav == 1]
    assert ak.all(abs(prompt.matched_gen.pdgId) == 11)
    assert ak.all(prompt.matched_gen.pt > 3)
    linked = electrons[electrons.jetIdx >= 0]
    assert ak.sum(ak.num(linked)) > 0 and ak.all(linked.matched_jet.nElectrons >= 1)
    back = ak.drop_none(events.Jet.matched_electrons, axis=2)
    assert 0 < ak.sum(ak.num(ak.flatten(back, axis=1))) <= ak.sum(ak.num(linked))
    assert ak.all(ak.flatten(back.jetIdx, axis=2) >= 0)
