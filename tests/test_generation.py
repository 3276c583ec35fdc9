"""Pythia 8 generation: CMS GEN NanoAOD conventions, reproducibility and CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from flashsim.errors import FlashSimError
from flashsim.generation import PROCESSES, iter_batches
from flashsim.nanoaod import load_schema, read_provenance
from flashsim.nanoaod.precision import mantissa_bits_used
from flashsim.production import generate_file

DY_CHUNK = 5
BIT = {"isPrompt": 0, "isHardProcess": 7, "fromHardProcess": 8, "isLastCopy": 13}


@pytest.fixture(scope="session")
def gen_files(tmp_path_factory) -> dict[str, Path]:
    """Generated once per session: dy_mumu (jobs 1 and jobs 2, same seed) and ttbar.

    dy_mumu comes in chunks of 5 events: three chunks, so that two workers share them."""
    folder = tmp_path_factory.mktemp("generation")
    files = {"dy": folder / "dy.root", "dy_jobs2": folder / "dy_jobs2.root", "tt": folder / "tt.root"}
    generate_file("dy_mumu", 15, files["dy"], seed=7, chunk_events=DY_CHUNK)
    generate_file("dy_mumu", 15, files["dy_jobs2"], seed=7, jobs=2, chunk_events=DY_CHUNK)
    generate_file("ttbar", 12, files["tt"], seed=3)
    return files


def _events(path: Path) -> ak.Array:
    return uproot.open(path)["Events"].arrays()


def test_branches_match_real_cms_file(gen_files, reference_nano):
    ours = {b.name: b.typename for b in uproot.open(gen_files["dy"])["Events"].branches}
    real = {b.name: b.typename for b in uproot.open(reference_nano)["Events"].branches}
    common = set(ours) & set(real)
    for name in ("nGenPart", "GenPart_statusFlags", "GenJet_hadronFlavour", "GenMET_pt", "Pileup_nPU",
                 "Generator_x1", "genWeight", "event"):
        assert name in common
    assert {n: ours[n] for n in common} == {n: real[n] for n in common}
    assert set(uproot.open(gen_files["dy"]).keys(cycle=False)) >= {"Events", "Runs"}


def test_prompt_muons_from_z(gen_files):
    events = _events(gen_files["dy"])
    flags, status, pdg = events.GenPart_statusFlags, events.GenPart_status, events.GenPart_pdgId
    wanted = (1 << BIT["isPrompt"]) | (1 << BIT["fromHardProcess"]) | (1 << BIT["isLastCopy"])
    hard_muon = (abs(pdg) == 13) & ((flags & wanted) == wanted) & (status == 1)
    assert ak.all(ak.sum(hard_muon & (pdg == 13), axis=1) == 1)
    assert ak.all(ak.sum(hard_muon & (pdg == -13), axis=1) == 1)
    # the hard-process Z (status 22) exists and is the first copy
    assert ak.all(ak.sum((pdg == 23) & (status == 22), axis=1) == 1)


def test_mothers_reindexed(gen_files):
    events = _events(gen_files["dy"])
    mother = events.GenPart_genPartIdxMother
    index = ak.local_index(mother)
    assert ak.all((mother < index) | (mother == -1))
    pdg = events.GenPart_pdgId
    # the daughters of the last Z copy are the two muons
    last_z = ak.argmax(ak.where(pdg == 23, index, -1), axis=1, keepdims=True)
    z_daughters = pdg[mother == ak.flatten(last_z)]
    assert ak.all(ak.sort(abs(z_daughters), axis=1)[:, :2] == 13)


def test_hadron_flavour_consistent(gen_files):
    events = _events(gen_files["tt"])
    jets = ak.zip({"pt": events.GenJet_pt, "eta": events.GenJet_eta, "phi": events.GenJet_phi,
                   "flav": events.GenJet_hadronFlavour})
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])
    assert ak.all(jets.pt > 10)
    pdg = abs(events.GenPart_pdgId)
    b_had = ((pdg > 500) & (pdg < 600)) | ((pdg > 5000) & (pdg < 6000))
    hadrons = ak.zip({"eta": events.GenPart_eta[b_had], "phi": events.GenPart_phi[b_had]})
    pairs = ak.cartesian([jets, hadrons], nested=True)
    dphi = (pairs["0"].phi - pairs["1"].phi + np.pi) % (2 * np.pi) - np.pi
    near = ak.any(np.hypot(pairs["0"].eta - pairs["1"].eta, dphi) < 0.4, axis=2)
    assert ak.all(near[jets.flav == 5])
    assert ak.sum(jets.flav == 5) >= 1
    assert set(np.unique(ak.flatten(jets.flav))) <= {0, 4, 5}


def test_gen_batch_particles():
    batch = next(iter_batches("dy_mumu", 4, seed=11, batch_size=4))
    particles = batch.particles
    assert set(particles.fields) == {"px", "py", "pz", "e", "pdgId", "charge", "vx", "vy", "vz", "genPartIdx"}
    genpart = batch.nano["GenPart"]
    linked = particles[particles.genPartIdx >= 0]
    assert ak.all(genpart.pdgId[linked.genPartIdx] == linked.pdgId)
    assert ak.all(ak.sum(abs(linked.pdgId) == 13, axis=1) >= 2)
    assert ak.all(abs(particles.charge[abs(particles.pdgId) == 211]) == 1)


def test_reproducible_and_independent_of_jobs(gen_files):
    one, two = _events(gen_files["dy"]), _events(gen_files["dy_jobs2"])
    assert one.fields == two.fields
    for name in one.fields:
        assert ak.array_equal(one[name], two[name]), name
    assert len(np.unique(ak.to_numpy(one.event))) == len(one)
    provenance = read_provenance(gen_files["dy_jobs2"])
    assert provenance["jobs"] == 2 and provenance["chunk_events"] == DY_CHUNK
    assert provenance["events"] > provenance["jobs"] * DY_CHUNK  # every worker had a chunk
    # each chunk has its own Pythia seed: chunks are not copies of each other
    x1 = ak.to_numpy(one.Generator_x1)
    assert len(np.unique(x1[::DY_CHUNK])) == len(one) // DY_CHUNK


def test_bad_arguments_raise_before_generation(tmp_path):
    with pytest.raises(FlashSimError, match="unknown process"):
        generate_file("nope", 1, tmp_path / "x.root")
    with pytest.raises(FlashSimError, match="positive"):
        generate_file("ttbar", 0, tmp_path / "x.root")
    with pytest.raises(FlashSimError, match="--jobs"):
        generate_file("ttbar", 1, tmp_path / "x.root", jobs=0)
    with pytest.raises(FlashSimError, match="does not exist"):
        generate_file("ttbar", 1, tmp_path / "missing" / "x.root")
    with pytest.raises(FlashSimError, match="chunk_events"):
        generate_file("ttbar", 1, tmp_path / "x.root", chunk_events=0)
    assert not list(tmp_path.iterdir())


def test_cli_unknown_process_and_list(tmp_path):
    command = [sys.executable, "-m", "flashsim.cli", "generate"]
    result = subprocess.run([*command, "nope", "-n", "1", "-o", "x.root"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown process 'nope'" in result.stderr and "dy_mumu" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.root").exists()
    listing = subprocess.run([*command, "--list"], capture_output=True, text=True, check=True)
    assert all(name in listing.stdout for name in PROCESSES)


def test_fastjet_banner_stays_off_stdout():
    code = ("import awkward as ak, fastjet; from flashsim.clustering import cluster_sequence;"
            "d = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4);"
            "s = cluster_sequence(ak.Array([[{'px': 5.0, 'py': 0.0, 'pz': 1.0, 'E': 6.0}]]), d);"
            "print(len(s.inclusive_jets()[0]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout == "1\n"


def test_gen_floats_carry_nanoaod_precision(gen_files):
    """GEN files hold CMS NanoAOD's value grid: GenPart at 8 mantissa bits, GenJet eta/phi at 12."""
    schema = load_schema()
    with uproot.open(gen_files["tt"]) as file:
        names = [n for n in file["Events"].keys()
                 if n in schema.branches and schema.branch(n).dtype == np.float32]
        arrays = file["Events"].arrays(names, library="np")
    used = {n: mantissa_bits_used(np.concatenate([np.atleast_1d(v) for v in arrays[n]]))
            for n in names}
    assert {n: b for n, b in used.items() if b > schema.branch(n).precision} == {}
    assert used["GenPart_eta"] == 8 and used["GenJet_phi"] == 12 and used["GenJet_pt"] > 12


def test_pileup_pools_are_keyed_by_seed_chunk_and_purpose():
    from flashsim.generation.run import minbias_pool, pythia_seed

    seeds = {(s, c): pythia_seed(s, "minbias_pool", c)
             for s in (-3, -1, 0, 1, 2, 3, 2**64 + 1) for c in range(4)}
    assert len(set(seeds.values())) == len(seeds)  # no seed + chunk, no abs(seed) overlaps
    assert pythia_seed(1, "minbias_pool", 0) != pythia_seed(1, "hard_process", 0)

    def fingerprint(pool):
        return ak.to_list(ak.num(pool, axis=1)), ak.to_numpy(ak.flatten(pool.px))[:20].tolist()

    first = fingerprint(minbias_pool(3, seed=5, chunk=1))
    assert first == fingerprint(minbias_pool(3, seed=5, chunk=1))
    assert first != fingerprint(minbias_pool(3, seed=6, chunk=0))
    assert first != fingerprint(minbias_pool(3, seed=-5, chunk=1))


def test_refsim_without_pileup_and_with_negative_seed(tmp_path):
    """--pileup 0 needs no minimum-bias pool and has no pileup: one vertex, no PU particles."""
    from flashsim.nanoaod import read_provenance
    from flashsim.refdet import DETECTOR_VERSION

    path = tmp_path / "nopu.root"
    generate_file("dy_mumu", 12, path, seed=-(2**40), pileup_mean=0.0, refsim=True)
    events = _events(path)
    assert ak.all(events["Pileup_nPU"] == 0) and ak.all(events["PV_npvs"] == 1)
    assert ak.sum(events["nMuon"]) > 12
    assert read_provenance(path)["reference_detector_version"] == DETECTOR_VERSION
    # without pileup the only jets without a GenJet are rare resolution/threshold effects
    assert ak.mean(events["Jet_genJetIdx"] < 0) < 0.1  # 0.6 at the default pileup


def test_pileup_pool_size_sets_the_reuse():
    from flashsim.production import pileup_pool_size

    assert pileup_pool_size(30.0) == 1000  # detector v3: each pool event overlaid ~30 times
    assert pileup_pool_size(60.0, 10) == 1500  # v3's pool does not depend on the chunk
    assert pileup_pool_size(30.0, 1000, reuse=3) == 10_000
    assert pileup_pool_size(30.0, 7, reuse=3) == 70  # the last, short chunk of a run
    assert pileup_pool_size(0.0, 1000, reuse=3) == 0


def test_pileup_reuse_changes_the_pileup_not_the_hard_events(tmp_path):
    """--pileup-reuse reaches the detector's pool: same GEN events, other pileup, recorded."""
    default, reused = tmp_path / "default.root", tmp_path / "reuse1.root"
    generate_file("dy_mumu", 6, default, seed=4, pileup_mean=3.0, refsim=True, chunk_events=6)
    generate_file("dy_mumu", 6, reused, seed=4, pileup_mean=3.0, refsim=True, chunk_events=6,
                  pileup_reuse=1.0)
    one, two = _events(default), _events(reused)
    assert ak.array_equal(one.GenPart_pt, two.GenPart_pt)
    assert ak.array_equal(one.Pileup_nPU, two.Pileup_nPU)
    assert not ak.array_equal(one.fixedGridRhoFastjetAll, two.fixedGridRhoFastjetAll)
    assert read_provenance(reused)["pileup_reuse"] == 1.0
    assert read_provenance(default)["pileup_reuse"] is None
    with pytest.raises(FlashSimError, match="--pileup-reuse must be at least 1"):
        generate_file("dy_mumu", 6, tmp_path / "bad.root", refsim=True, pileup_reuse=0.5)
    assert not (tmp_path / "bad.root").exists()


def test_dy_ee_decays_to_electron_pairs():
    """dy_ee: every event holds an opposite-sign e+e- pair from the Z/gamma* (hard process)."""
    nano = next(iter_batches("dy_ee", 3, seed=5, batch_size=3)).nano
    part = nano["GenPart"]
    hard_electrons = part[(abs(part.pdgId) == 11) & ((part.statusFlags >> 7) & 1 == 1)]
    assert ak.all(ak.sum(hard_electrons.pdgId == 11, axis=1) >= 1)
    assert ak.all(ak.sum(hard_electrons.pdgId == -11, axis=1) >= 1)
    hard_muons = (abs(part.pdgId) == 13) & ((part.statusFlags >> 7) & 1 == 1)
    assert not ak.any(hard_muons)


def test_qcd_dijet_is_a_two_parton_scattering_above_its_pt_hat():
    """qcd_dijet: the hard process is two incoming and two outgoing quarks or gluons, the
    outgoing pair balanced in pT above 30 GeV."""
    nano = next(iter_batches("qcd_dijet", 3, seed=5, batch_size=3)).nano
    part = nano["GenPart"]
    hard = part[(part.statusFlags >> 7) & 1 == 1]
    outgoing = hard[hard.status == 23]
    assert ak.all(ak.num(hard) == 4) and ak.all(ak.num(outgoing) == 2)
    flavour = abs(ak.to_numpy(ak.flatten(hard.pdgId)))
    assert set(flavour.tolist()) <= {1, 2, 3, 4, 5, 21}
    pt = ak.to_numpy(outgoing.pt)
    assert np.all(pt > 30) and np.allclose(pt[:, 0], pt[:, 1], rtol=1e-4)
