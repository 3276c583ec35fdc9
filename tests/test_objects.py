"""Object modules: training pairs on real NANOAODSIM, simulation output, cross-references."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch

from flashsim.errors import FlashSimError
from flashsim.nanoaod.muon_working_points import CUT_BASED_IDS, HIDDEN
from flashsim.nanoaod.precision import reduce_mantissa
from flashsim.nanoaod.reader import read_chunk
from flashsim.nanoaod.schema import load_schema
from flashsim.objects import MODEL_SPECS, OBJECTS, crossref, load_models, met, simulate_reco
from flashsim.objects.common import dequantize_reco, read_training_chunk
from flashsim.objects.jet import (
    ENERGY_FRACTION_SHARES,
    ENERGY_FRACTIONS,
    energy_fraction_shares,
    energy_fractions,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def chunk(reference_nano):
    names = sorted({b for module in OBJECTS.values() for b in module.TRAINING_NAMES})
    return read_training_chunk([reference_nano], names)[0]


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


def _paired(chunk, collection: str, pdg_id: int):
    """RECO leptons, the GenPart their genPartIdx points to, and whether that is a GEN lepton
    of the models' definition (status 1, pT > 3 GeV, |eta| < 2.5)."""
    reco, part = chunk[collection], chunk["GenPart"]
    idx = reco.genPartIdx
    target = part[ak.where(idx >= 0, idx, 0)]
    good = ((idx >= 0) & (abs(target.pdgId) == pdg_id) & (target.status == 1) & (target.pt > 3)
            & (abs(target.eta) < 2.5))
    return reco, target, good


def test_training_reco_floats_are_dequantised_and_round_back(reference_nano, chunk):
    """RECO floats leave NanoAOD's grid but round back to the stored values; GEN columns,
    zeros and point masses (the b-tag default of -1 CMS writes outside the tracker) stay."""
    names = ["Muon", "Jet", "MET", "GenPart", "GenJet"]
    stored = read_chunk(reference_nano, names)
    schema = load_schema()
    moved = 0
    for name in ("Muon", "Jet", "MET"):
        for field in stored[name].fields:
            bits = schema.collections[name].branches[field].precision
            if bits is None or bits == 23:
                continue
            raw = np.asarray(ak.flatten(stored[name][field], axis=None), np.float32)
            drawn = np.asarray(ak.flatten(chunk[name][field], axis=None), np.float32)
            np.testing.assert_array_equal(reduce_mantissa(drawn, bits), raw, err_msg=field)
            assert np.all(drawn[raw == 0] == 0), field
            moved += np.count_nonzero(drawn != raw)
    assert moved > 1000
    btag = np.asarray(ak.flatten(chunk["Jet"].btagDeepC))
    raw_btag = np.asarray(ak.flatten(stored["Jet"].btagDeepC))
    assert np.any(raw_btag == -1) and np.array_equal(btag == -1, raw_btag == -1)
    for name in ("GenPart", "GenJet"):
        assert ak.to_list(chunk[name].pt) == ak.to_list(stored[name].pt)
    again, other = dequantize_reco(stored, seed=1), dequantize_reco(stored, seed=2)
    assert ak.to_list(again["Muon"].dxyErr) == ak.to_list(chunk["Muon"].dxyErr)
    assert ak.to_list(other["Muon"].dxyErr) != ak.to_list(chunk["Muon"].dxyErr)


def test_a_default_beside_exact_zeros_is_an_atom():
    """-1 (a tagger's default) beside a few exact zeros (a cell of width 0) and a comb of
    scores above: -1 is an atom, the comb's teeth are grid points (dense beside dense teeth),
    as before the zeros made -1 one too (the reference detector's ``qgl``)."""
    from flashsim.nanoaod.precision import reduce_mantissa
    from flashsim.objects.common import _point_masses

    rng = np.random.default_rng(3)
    comb = reduce_mantissa(rng.uniform(0.2, 0.8, 5000).astype(np.float32), 10)
    values = np.concatenate([np.full(2000, -1.0, np.float32), np.zeros(3, np.float32), comb])
    assert set(_point_masses(values, 10)) == {-1.0}
    saturated = np.concatenate([values, np.full(500, 0.8, np.float32)])  # a second atom
    assert set(_point_masses(saturated, 10)) == {-1.0, np.float32(0.8)}


def test_muon_pairs_respect_genpartidx(chunk):
    tables = OBJECTS["muon"].training_tables(chunk)
    reco, target, good = _paired(chunk, "Muon", 13)
    assert len(tables["muon_flow"]) == ak.sum(good)
    ratio = tables["muon_flow"].target["pt_ratio"]
    np.testing.assert_allclose(np.sort(ratio), np.sort(flat_ratio := ak.to_numpy(
        ak.flatten(reco.pt[good] / target.pt[good]))), rtol=1e-6)
    assert abs(np.median(flat_ratio) - 1) < 0.05
    assert tables["muon_efficiency"].target["reconstructed"].sum() == ak.sum(good)


def test_jet_pairs_respect_genjetidx(chunk):
    tables = OBJECTS["jet"].training_tables(chunk)
    jets = chunk["Jet"]
    matched = (jets.genJetIdx >= 0) & (jets.genJetIdx < ak.num(chunk["GenJet"]))
    assert len(tables["jet_flow"]) == ak.sum(matched)
    assert len(tables["jet_efficiency"]) == ak.sum(ak.num(chunk["GenJet"]))
    fake = OBJECTS["fake_jet"].training_tables(chunk)
    assert len(fake["fake_jet_flow"]) == ak.sum(~matched)
    np.testing.assert_array_equal(fake["fake_jet_multiplicity"].target["n"],
                                  np.minimum(ak.to_numpy(ak.sum(~matched, axis=1)), 15))
    met = OBJECTS["met"].training_tables(chunk)
    assert len(met["met_flow"]) == len(chunk["event"])


def test_electron_pairs_respect_genpartidx(chunk):
    tables = OBJECTS["electron"].training_tables(chunk)
    reco, _, good = _paired(chunk, "Electron", 11)
    assert len(tables["electron_flow"]) == ak.sum(good) > 10
    assert tables["electron_efficiency"].target["reconstructed"].sum() == ak.sum(good)
    flow = tables["electron_flow"].target
    # the MVA scores are learnt on the raw BDT scale, the hidden cut outcomes from the bitmaps
    np.testing.assert_allclose(np.sort(np.tanh(flow["mvaFall17V2Iso_raw"])),
                               np.sort(ak.to_numpy(ak.flatten(reco.mvaFall17V2Iso[good]))),
                               atol=1e-6)
    assert set(np.unique(flow["vid_dEtaInSeed"])) <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("lepton", "collection", "pdg_id"),
                         [("electron", "Electron", 11), ("muon", "Muon", 13)])
def test_leptons_without_gen_partner_are_fakes_from_jets_or_pileup(chunk, lepton, collection,
                                                                   pdg_id):
    """Every RECO lepton without a GEN lepton is a training row of the per-GenJet fake flow
    (within 0.4 of a GenJet) or of the per-event pileup flow, with the properties the
    GEN-matched flow learns and its own charge."""
    from flashsim.kinematics import delta_r

    tables = OBJECTS[lepton].training_tables(chunk)
    reco, _, good = _paired(chunk, collection, pdg_id)
    fakes, pileup = tables[f"fake_{lepton}_flow"], tables[f"pileup_{lepton}_flow"]
    assert len(fakes) + len(pileup) == ak.sum(~good) > 0
    others = reco[~good]
    gen_jets = chunk["GenJet"]
    near = ak.any(delta_r(others.eta[:, :, None], others.phi[:, :, None],
                          gen_jets.eta[:, None, :], gen_jets.phi[:, None, :]) < 0.4, axis=2)
    assert len(fakes) == ak.sum(near) and len(pileup) == ak.sum(~near)
    assert len(tables[f"fake_{lepton}_multiplicity"]) == ak.sum(ak.num(chunk["GenJet"]))
    assert tables[f"fake_{lepton}_multiplicity"].target["n"].sum() == len(fakes)
    assert len(tables[f"pileup_{lepton}_multiplicity"]) == len(chunk["event"])
    assert tables[f"pileup_{lepton}_multiplicity"].target["n"].sum() == len(pileup)
    np.testing.assert_array_equal(np.sort(pileup.target["pt"]),
                                  np.sort(ak.to_numpy(ak.flatten(others.pt[~near]))))
    matched_targets = set(tables[f"{lepton}_flow"].target) - {"charge_flip", "pt_ratio"}
    for table in (fakes, pileup):
        assert set(np.unique(table.target["charge"])) <= {-1.0, 1.0}
        assert matched_targets - {"deta", "dphi"} <= set(table.target)


@pytest.mark.parametrize("lepton", ["electron", "muon"])
def test_fake_lepton_eta_is_its_position_in_the_acceptance_window(chunk, lepton):
    """The fakes' flows learn eta as its position in the window it can lie in: the lepton's
    acceptance, cut to the cone around the GenJet for fakes from jets. The position gives the
    RECO eta back (a real CMS electron beyond the acceptance, nano_dy.root has one at 2.6,
    goes to its edge)."""
    from flashsim.objects.fake_lepton import ACCEPTANCE, ETA_POSITION, JET_CONE, eta_window

    tables = OBJECTS[lepton].training_tables(chunk)
    fakes, pileup = tables[f"fake_{lepton}_flow"], tables[f"pileup_{lepton}_flow"]
    spec = {c.name: c for c in MODEL_SPECS[f"fake_{lepton}_flow"].targets}
    assert spec[ETA_POSITION].transform == "logit" and "deta" not in spec
    assert "eta" not in {c.name for c in MODEL_SPECS[f"pileup_{lepton}_flow"].targets}
    # a flow trained on the offset or eta itself is refused on load (the mechanism:
    # test_models.py::test_required_target_is_enforced_in_training_and_loading)
    for kind in ("fake", "pileup"):
        assert MODEL_SPECS[f"{kind}_{lepton}_flow"].required == (ETA_POSITION,)
    host = fakes.context["gen_eta"]
    lo, hi = eta_window(lepton, host)
    np.testing.assert_allclose(lo, np.maximum(-ACCEPTANCE[lepton], host - JET_CONE))
    np.testing.assert_allclose(hi, np.minimum(ACCEPTANCE[lepton], host + JET_CONE))
    collection = {"electron": "Electron", "muon": "Muon"}[lepton]
    reco, _, good = _paired(chunk, collection, {"electron": 11, "muon": 13}[lepton])
    eta = np.sort(ak.to_numpy(ak.flatten(reco.eta[~good])))
    edge = ACCEPTANCE[lepton]
    back = np.concatenate([lo + fakes.target[ETA_POSITION] * (hi - lo),
                           -edge + pileup.target[ETA_POSITION] * 2 * edge])
    np.testing.assert_allclose(np.sort(back), eta, atol=1e-5)
    inside = np.abs(eta) < edge
    assert inside.sum() >= 2  # nano_dy.root: 2 muons, 9 of its 10 electrons without GEN partner
    positions = np.concatenate([fakes.target[ETA_POSITION], pileup.target[ETA_POSITION]])
    assert np.sum((positions > 0) & (positions < 1)) == inside.sum()


def test_gen_jets_carry_their_leading_photon(chunk):
    """The photon context of the electrons from jets: per GenJet the highest-pT status-1 GEN
    photon within 0.4 (its pT fraction and offsets), zeros without one; muons' fakes do not
    condition on it."""
    from flashsim.kinematics import delta_phi, delta_r
    from flashsim.objects import jet
    from flashsim.objects.fake_lepton import JET_CONTEXT

    jets = jet.gen_jets(chunk)
    part = chunk["GenPart"]
    photons = part[(part.status == 1) & (part.pdgId == 22)]
    found = 0
    for e in range(len(jets)):
        for k in range(len(jets[e])):
            j, ph = jets[e, k], photons[e]
            dr = np.asarray(delta_r(j.gen_eta, j.gen_phi, ph.eta, ph.phi))
            if not (dr < 0.4).any():
                assert (j.photon_ptfrac, j.photon_deta, j.photon_dphi) == (0.0, 0.0, 0.0)
                continue
            found += 1
            lead = ph[np.flatnonzero(dr < 0.4)[np.argmax(np.asarray(ph.pt)[dr < 0.4])]]
            assert j.photon_ptfrac == pytest.approx(lead.pt / j.gen_pt)
            assert j.photon_deta == pytest.approx(lead.eta - j.gen_eta)
            assert j.photon_dphi == pytest.approx(delta_phi(lead.phi, j.gen_phi))
    assert found >= 10  # nano_dy.root: 37 of its 127 GenJets hold one
    names = {name: [c.name for c in context] for name, context in JET_CONTEXT.items()}
    assert {"photon_ptfrac", "photon_deta", "photon_dphi"} <= set(names["electron"])
    assert names["muon"] == [c.name for c in jet.CONTEXT]
    assert [c.name for c in MODEL_SPECS["fake_electron_flow"].context][-1] == "n_fake"


def test_jet_flow_sees_the_calorimeter_region_of_its_genjet(chunk):
    """|eta| and one 0/1 step per calorimeter edge, for every GenJet; the contexts of the flow
    and of the b-tag working point have them, the efficiency's does not."""
    from flashsim.objects import jet

    jets = jet.gen_jets(chunk)
    abs_eta = abs(ak.to_numpy(ak.flatten(jets.gen_eta)))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(jets.gen_abs_eta)), abs_eta)
    steps = np.column_stack([ak.to_numpy(ak.flatten(jets[f"beyond_eta_{edge:g}"]))
                             for edge in jet.ETA_EDGES])
    np.testing.assert_array_equal(steps, abs_eta[:, None] > np.asarray(jet.ETA_EDGES))
    assert steps[:, 0].any() and not steps[:, 0].all()  # nano_dy.root has jets on both sides
    flow = [c.name for c in MODEL_SPECS["jet_btag_working_point"].context]
    assert flow == [c.name for c in MODEL_SPECS["jet_flow"].context][:-1]
    assert flow[-6:] == ["gen_abs_eta", "beyond_eta_1.479", "beyond_eta_2.5", "beyond_eta_2.6",
                         "beyond_eta_2.7", "beyond_eta_3"]
    assert "gen_abs_eta" not in [c.name for c in MODEL_SPECS["jet_efficiency"].context]


@pytest.fixture(scope="module")
def onnx_models(models, tmp_path_factory):
    from flashsim.models.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    parity = export_onnx(models, out)
    assert max(parity.values()) < 1e-4
    return load_models(out, backend="onnx")


def test_simulation_output(models, chunk):
    loaded = load_models(models)
    # nano_dy.root has one fake muon from a jet and one from pileup: too few to train on
    assert set(loaded) == set(MODEL_SPECS) - set(OBJECTS["muon"].FAKE_MODELS)
    assert loaded.skipped == ("fake muon",) and "`flashsim train muon`" in loaded.notes[0]
    reco = simulate_reco(chunk, loaded, np.random.default_rng(7))
    muons, jets = reco["Muon"], reco["Jet"]
    assert len(muons) == len(jets) == len(reco["MET"]) == len(chunk["event"])
    # indices point at the right GEN objects, collections are pT-ordered
    part = chunk["GenPart"][muons.genPartIdx]
    assert ak.all(abs(part.pdgId) == 13)
    assert ak.all(jets.genJetIdx < ak.num(chunk["GenJet"]))
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])
    assert ak.all(jets.pt > crossref.JET_PT_MIN)
    assert ak.all(muons.pt[:, :-1] >= muons.pt[:, 1:])
    # discrete values lie in their allowed (or training) sets
    for name, collection in (("muon_flow", muons), ("jet_flow", jets)):
        for column in loaded[name].target.columns:
            if column.spec.kind == "discrete" and column.spec.name in ak.fields(collection):
                values = set(np.unique(ak.to_numpy(ak.flatten(collection[column.spec.name]))))
                assert values <= set(column.params["values"]), column.spec.name
    assert set(np.unique(ak.to_numpy(ak.flatten(muons.charge)))) <= {-1, 1}
    assert ak.all(reco["PV"].npvsGood <= reco["PV"].npvs)
    electrons = reco["Electron"]
    assert len(electrons) == len(chunk["event"]) and ak.sum(ak.num(electrons)) > 0
    assert ak.all(electrons.pt > 5) and ak.all(electrons.pt[:, :-1] >= electrons.pt[:, 1:])
    assert ak.all(electrons.pdgId == -11 * electrons.charge)
    matched = electrons[electrons.genPartIdx >= 0]
    target = ak.to_numpy(ak.flatten(abs(chunk["GenPart"][matched.genPartIdx].pdgId)))
    assert set(np.unique(target)) <= {11, 22}
    assert ak.all(electrons.genPartFlav[electrons.genPartIdx < 0] == 0)
    # working points are computed from the simulated values, never sampled beside them
    bitmap = ak.to_numpy(ak.flatten(electrons.vidNestedWPBitmap))
    levels = np.stack([(bitmap >> (3 * i)) & 7 for i in range(10)], axis=1)
    np.testing.assert_array_equal(levels.min(axis=1), ak.to_numpy(ak.flatten(electrons.cutBased)))
    assert ak.all(jets.nElectrons == ak.sum(electrons.jetIdx[:, None, :]
                                            == ak.local_index(jets.pt)[:, :, None], axis=2))


def test_electrons_draw_their_own_random_stream(models, chunk, tmp_path):
    """A model directory without electron models simulates the muons (all but their jet
    links), pileup observables and fake jets identically, and the GEN-matched jets (hence MET) given no electrons, and says
    that it leaves electrons out; one with part of them is an error."""
    import json
    import shutil

    from flashsim.errors import FlashSimError
    from flashsim.models.artifact import write_manifest

    no_electrons = tmp_path / "no_electrons"
    shutil.copytree(models, no_electrons)
    for path in no_electrons.glob("*electron*"):
        path.unlink()
    write_manifest(no_electrons)
    loaded = load_models(no_electrons)
    assert loaded.skipped == ("electron", "fake muon") and "no electron models" in loaded.notes[0]
    without = simulate_reco(chunk, loaded, np.random.default_rng(5))
    with_electrons = simulate_reco(chunk, load_models(models), np.random.default_rng(5))
    assert "Electron" not in without and "Electron" in with_electrons
    # a muon's link to its jet (jetIdx) follows the jets, which see the electrons
    muon_fields = [f for f in without["Muon"].fields if f != "jetIdx"]
    assert ak.array_equal(without["Muon"][muon_fields], with_electrons["Muon"][muon_fields])
    assert ak.array_equal(without["PV"], with_electrons["PV"])
    fakes = [reco["Jet"][reco["Jet"].genJetIdx < 0] for reco in (without, with_electrons)]
    assert ak.sum(ak.num(fakes[0])) > 0 and ak.array_equal(fakes[0].pt, fakes[1].pt)
    partial = tmp_path / "partial"
    shutil.copytree(models, partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    del manifest["models"]["fake_electron_flow"]
    (partial / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FlashSimError, match="lacks the models fake_electron_flow"):
        load_models(partial)


@pytest.mark.slow  # exports every model to ONNX
def test_torch_and_onnx_backends_agree(models, onnx_models, chunk):
    a = simulate_reco(chunk, load_models(models, backend="torch"), np.random.default_rng(3))
    b = simulate_reco(chunk, onnx_models, np.random.default_rng(3))
    np.testing.assert_allclose(ak.to_numpy(a["MET"].pt), ak.to_numpy(b["MET"].pt), rtol=1e-3)
    assert ak.all(ak.num(a["Jet"]) == ak.num(b["Jet"]))


def test_crossref_links_muons_to_nearest_jet():
    muons = ak.Array([[{"pt": 30.0, "eta": 0.1, "phi": 0.0}, {"pt": 10.0, "eta": 2.0, "phi": 1.0},
                       {"pt": 5.0, "eta": 0.0, "phi": 0.1}], []])
    jets = ak.Array([[{"pt": 50.0, "eta": 2.0, "phi": 1.1}, {"pt": 40.0, "eta": 0.0, "phi": 0.0}],
                     [{"pt": 20.0, "eta": 0.0, "phi": 0.0}]])
    muons, jets = crossref.link(muons, jets)
    assert muons.jetIdx.tolist() == [[1, 0, 1], []]
    assert jets.nMuons.tolist() == [[1, 2], [0]]
    assert jets.muonIdx1.tolist() == [[1, 0], [-1]]
    assert jets.muonIdx2.tolist() == [[-1, 2], [-1]]


def test_crossref_links_electrons_like_muons():
    electrons = ak.Array([[{"pt": 30.0, "eta": 0.0, "phi": 0.05}, {"pt": 8.0, "eta": 3.0, "phi": 0.0}]])
    jets = ak.Array([[{"pt": 40.0, "eta": 0.0, "phi": 0.0, "nMuons": 1}]])
    electrons, jets = crossref.link(electrons, jets, "electron")
    assert electrons.jetIdx.tolist() == [[0, -1]]
    assert jets.nElectrons.tolist() == [[1]] and jets.nMuons.tolist() == [[1]]
    assert jets.electronIdx1.tolist() == [[0]] and jets.electronIdx2.tolist() == [[-1]]


def test_merge_jets_orders_and_applies_the_nanoaod_cut():
    matched = ak.Array([[{"pt": 20.0, "genJetIdx": 0}, {"pt": 14.0, "genJetIdx": 1}], []])
    fake = ak.Array([[{"pt": 60.0, "genJetIdx": -1}], [{"pt": 9.0, "genJetIdx": -1}]])
    jets = crossref.merge_jets(matched, fake)
    assert jets.pt.tolist() == [[60.0, 20.0], []]
    assert jets.genJetIdx.tolist() == [[-1, 0], []]


def test_invisible_muons_are_the_lost_ones_outside_the_tracked_only_band():
    # event 0: a taken muon, a lost forward one, one lost at |eta| 2.45 (tracked, kept by
    # particle flow as a charged hadron), a status-2 muon and a pion; event 1: no GEN muon
    gen = ak.Array([
        [{"pdgId": 13, "status": 1, "pt": 40.0, "eta": 0.5, "phi": 0.0},
         {"pdgId": -13, "status": 1, "pt": 30.0, "eta": 3.1, "phi": np.pi / 2},
         {"pdgId": 13, "status": 1, "pt": 20.0, "eta": -2.45, "phi": 0.0},
         {"pdgId": 13, "status": 2, "pt": 50.0, "eta": 3.5, "phi": 0.0},
         {"pdgId": 211, "status": 1, "pt": 10.0, "eta": 4.0, "phi": 0.0}],
        [{"pdgId": 211, "status": 1, "pt": 10.0, "eta": 0.0, "phi": 0.0}],
    ])
    x, y = met.invisible_muons(gen, ak.Array([[0, -1], [7]]))  # 7: out of range, ignored
    np.testing.assert_allclose(x, [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(y, [30.0, 0.0])
    x, y = met.invisible_muons(gen, ak.Array([[1], []]))  # the central muon lost instead
    np.testing.assert_allclose(x, [40.0, 0.0], atol=1e-9)


def test_met_context_counts_the_lost_muons(chunk):
    table = met.training_tables(chunk)["met_flow"]
    lost = np.hypot(*met.invisible_muons(chunk["GenPart"], chunk["Muon"].genPartIdx))
    np.testing.assert_allclose(table.context["invisible_muon_pt"], lost)
    assert np.any(lost > 0)  # nano_dy.root (real CMS) loses muons too


def test_main_vertex_context_is_the_hard_activity_in_the_tracker(chunk):
    """A central muon (with its own GenJet), a central hadronic jet and a forward one: the
    tracker sees the muon's track and the central jet's hadrons, not the forward jet."""
    gen = {"GenJet": ak.Array([[{"pt": 50.0, "eta": 0.3}, {"pt": 30.0, "eta": -1.0},
                                {"pt": 80.0, "eta": 3.2}], []]),
           "GenPart": ak.Array([[{"pt": 50.0, "eta": 0.3, "status": 1, "pdgId": 13},
                                 {"pt": 20.0, "eta": 2.8, "status": 1, "pdgId": -11},
                                 {"pt": 90.0, "eta": 0.3, "status": 62, "pdgId": 23}], []])}
    activity = met.tracker_activity(gen)
    np.testing.assert_array_equal(activity["tracker_genjets"], [2, 0])
    np.testing.assert_array_equal(activity["tracker_hadron_ht"], [30.0, 0.0])
    np.testing.assert_array_equal(activity["tracker_hadron_pt2"], [900.0, 0.0])
    np.testing.assert_array_equal(activity["tracker_lepton_pt2"], [2500.0, 0.0])
    table = met.training_tables(chunk)["pv_flow"]  # nano_dy.root, real CMS
    assert {"tracker_hadron_ht", "tracker_lepton_pt2"} <= set(table.context)
    assert np.any(table.context["tracker_lepton_pt2"] > 1000)  # Drell-Yan: its leptons


def test_pileup_observables_need_npu(chunk):
    """No silent Pileup_nTrueInt in place of a missing Pileup_nPU."""
    gen = {**chunk, "Pileup": ak.zip({"nTrueInt": chunk["Pileup"].nTrueInt})}
    with pytest.raises(FlashSimError, match="lacks Pileup_nPU.*pv_flow"):
        OBJECTS["met"].simulate_pv(gen, load_models(required=["pv_flow"]),
                                   np.random.default_rng(1))
    with pytest.raises(FlashSimError, match="lacks Pileup_nPU"):
        OBJECTS["met"].training_tables(gen)


def _assert_exact_columns(reco):
    """The branches that are fixed functions of others (object module docs) follow them."""
    def flat(collection, name):
        return ak.to_numpy(ak.flatten(collection[name])).astype(np.float64)

    muons, electrons, jets, met = reco["Muon"], reco["Electron"], reco["Jet"], reco["MET"]
    assert ak.sum(ak.num(muons)) > 0 and ak.sum(ak.num(jets)) > 0
    loose = ak.to_numpy(ak.flatten(muons.isPFcand & (muons.isGlobal | muons.isTracker)))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(muons.looseId)), loose)
    np.testing.assert_array_equal(flat(muons, "tightCharge"),
                                  np.where(flat(muons, "ptErr") / flat(muons, "pt") < 0.2, 2, 0))
    alone = muons[muons.jetIdx < 0]
    assert ak.sum(ak.num(alone)) > 0
    np.testing.assert_array_equal(flat(alone, "jetRelIso"), flat(alone, "pfRelIso04_all"))
    assert ak.all(alone.jetPtRelv2 == 0)
    from flashsim.nanoaod.muon_working_points import multi_iso_id, stored_requirements

    # a cut-based ID never passes where one of its cuts on stored branches fails
    mu = {f: ak.to_numpy(ak.flatten(muons[f])) for f in muons.fields}
    required = stored_requirements(mu)
    for name in ("mediumId", "tightId", "softId"):
        assert not np.any(mu[name] & ~required[name]), name
    assert not np.any((mu["highPtId"] == 2) & ~required["highPtId_global"])
    assert not np.any((mu["highPtId"] == 1) & ~required["highPtId_tracker"])

    ratio = np.where(flat(muons, "jetIdx") < 0, 1.0, 1.0 / (1.0 + flat(muons, "jetRelIso")))
    np.testing.assert_array_equal(
        flat(muons, "multiIsoId"),
        multi_iso_id(flat(muons, "miniPFRelIso_all"), ratio, flat(muons, "jetPtRelv2")))
    for leptons in (muons, electrons):
        for total, charged in (("miniPFRelIso_all", "miniPFRelIso_chg"),
                               ("pfRelIso03_all", "pfRelIso03_chg")):
            assert np.all(flat(leptons, total) >= flat(leptons, charged)), total
        ip3d = np.hypot(flat(leptons, "dxy"), flat(leptons, "dz") / np.cosh(flat(leptons, "eta")))
        np.testing.assert_allclose(flat(leptons, "ip3d"), ip3d, rtol=1e-6)  # float32 storage
    jet_id, eta = ak.to_numpy(ak.flatten(jets.jetId)), np.abs(flat(jets, "eta"))
    fraction = {k: flat(jets, k) for k in ("neHEF", "neEmEF", "chHEF", "chEmEF", "muEF")}
    central = eta <= 2.6
    tight = ((fraction["neHEF"] < 0.9) & (fraction["neEmEF"] < 0.9) & (fraction["chHEF"] > 0)
             & (flat(jets, "nConstituents") > 1))
    np.testing.assert_array_equal((jet_id[central] & 2) > 0, tight[central])
    veto = (jet_id & 2 > 0) & ((eta > 2.7) | ((fraction["muEF"] < 0.8)
                                              & (fraction["chEmEF"] < 0.8)))
    np.testing.assert_array_equal((jet_id & 4) > 0, veto)
    total = sum(fraction.values())  # fractions of one energy (float32 storage)
    assert np.all(np.abs(total - 1.0) < 1e-5) and min(map(np.min, fraction.values())) >= 0
    x, y = (ak.to_numpy(met.pt) * f(ak.to_numpy(met.phi)) for f in (np.cos, np.sin))
    cxx, cxy, cyy = (ak.to_numpy(met[k]).astype(np.float64) for k in ("covXX", "covXY", "covYY"))
    assert np.all(cxy**2 < cxx * cyy)  # a covariance: positive definite
    np.testing.assert_allclose(ak.to_numpy(met.significance),
                               (x**2 * cyy - 2 * x * y * cxy + y**2 * cxx) / (cxx * cyy - cxy**2),
                               rtol=1e-4)


def test_models_do_not_sample_what_other_branches_fix(models, chunk):
    loaded = load_models(models)
    sampled = {name: {c.spec.name for c in loaded[name].target.columns}
               for name in ("muon_flow", "electron_flow", "met_flow", "jet_flow",
                            "fake_jet_flow")}
    for jet_model in ("jet_flow", "fake_jet_flow"):
        assert not set(ENERGY_FRACTIONS) & sampled[jet_model]
        assert set(ENERGY_FRACTION_SHARES) <= sampled[jet_model] | set(
            loaded[jet_model].constants)
    assert not ({"looseId", "tightCharge", "ip3d", "sip3d", "jetRelIso", "jetPtRelv2"}
                & sampled["muon_flow"])
    assert {"jet_iso_ratio", "jet_deta", "jet_dphi"} <= sampled["muon_flow"]
    # the IDs' hidden bits: all passed (constant) for the few muons of nano_dy.root
    assert set(HIDDEN) <= sampled["muon_flow"] | set(loaded["muon_flow"].constants)
    assert not set(CUT_BASED_IDS) & sampled["muon_flow"]
    assert not {"ip3d", "sip3d"} & sampled["electron_flow"]
    assert {"ip3d_error_ratio"} <= sampled["muon_flow"] & sampled["electron_flow"]
    assert "significance" not in sampled["met_flow"]
    assert "covXY" not in sampled["met_flow"] and "cov_rho" in sampled["met_flow"]
    assert "jetId" in {c.spec.name for c in loaded["jet_flow"].target.columns}  # partly free
    for jet_model in ("jet_flow", "fake_jet_flow"):  # real CMS: jercCHF counts every charged
        assert loaded[jet_model].derived_targets == {"jercCHF": "chHEF + chEmEF + muEF"}
        assert "jercCHF" not in sampled[jet_model]
    reco = simulate_reco(chunk, loaded, np.random.default_rng(11))
    _assert_exact_columns(reco)
    _assert_derived_jet_branches(reco["Jet"], loaded)


def test_shipped_models_give_the_fixed_branches(chunk):
    """The shipped models follow every exact rule, the older jet_flow included (it samples the
    jetId bits that simulation then sets from the energy fractions)."""
    loaded = load_models()
    assert not {"looseId", "tightCharge", "ip3d", "sip3d"} & {
        c.spec.name for c in loaded["muon_flow"].target.columns}
    # four replicas of the 40 events: enough muons with and without a jet either way
    replicas = {name: ak.concatenate([column] * 4) for name, column in chunk.items()}
    reco = simulate_reco(replicas, loaded, np.random.default_rng(12))
    _assert_exact_columns(reco)
    _assert_derived_jet_branches(reco["Jet"], loaded)


def _assert_derived_jet_branches(jets, loaded):
    """Matched and fake jets give the region constants in their regions, and elsewhere the
    branches their models derive by their rules (to the float32 storage)."""
    from flashsim.objects.jet import (
        DEEPJET_INTERVAL,
        DEEPJET_POSITION,
        RELATIONS,
        deepjet_score,
        jet_regions,
    )

    for name, selected in (("jet_flow", jets[jets.genJetIdx >= 0]),
                           ("fake_jet_flow", jets[jets.genJetIdx < 0])):
        fields = {k: ak.to_numpy(ak.flatten(selected[k])).astype(np.float64)
                  for k in ak.fields(selected)}
        regions = jet_regions(selected)
        for branch, rule in loaded[name].derived_targets.items():
            free = ~np.zeros(len(fields["pt"]), bool)
            for region, fixed in loaded[name].region_constants.items():
                if branch in fixed:
                    free &= ~regions[region]
            np.testing.assert_allclose(fields[branch][free], RELATIONS[branch][rule](fields)[free],
                                       atol=1e-6, err_msg=f"{name}: {branch}")
        for region, fixed in loaded[name].region_constants.items():
            for branch, value in fixed.items():  # the shares are not written
                if branch == DEEPJET_POSITION.name:  # nor the position: the score it gives
                    branch, value = "btagDeepFlavB", deepjet_score(
                        {DEEPJET_INTERVAL.name: np.zeros(1), DEEPJET_POSITION.name: np.full(1, value)})[0]
                if branch not in ENERGY_FRACTION_SHARES:
                    assert np.all(fields[branch][regions[region]] == np.float32(value)), branch


@pytest.mark.parametrize("collection", ["Muon", "Electron"])
def test_sip3d_round_trips_through_its_error_ratio(chunk, collection):
    """Real CMS leptons: the sampled target r (3D error over the track's) and the branches
    beside it give back NanoAOD's sip3d, and r is not 1 there (CMS adds the vertex error)."""
    from flashsim.objects.lepton import ip3d_error_ratio, significance_3d

    leptons = chunk[collection]
    fields = {k: ak.to_numpy(ak.flatten(leptons[k])).astype(np.float64)
              for k in ("ip3d", "sip3d", "dxyErr", "dzErr", "eta")}
    ratio = ak.to_numpy(ak.flatten(ip3d_error_ratio(leptons)))
    assert len(ratio) > 10 and 0.3 < np.median(ratio) < 0.9
    np.testing.assert_allclose(significance_3d(fields, ratio), fields["sip3d"], rtol=1e-5)


def test_muon_jet_isolation_round_trips_through_its_ratio_to_the_cone(chunk):
    """The muon flow's target (1 + jetRelIso) / (1 + pfRelIso04_all) and the sampled
    isolation give back NanoAOD's jetRelIso of every GEN-matched real CMS muon."""
    from flashsim.objects import muon
    from flashsim.objects.lepton import training_pairs

    target = muon.training_tables(chunk)["muon_flow"].target
    _, matched, _, _ = training_pairs(chunk, muon.gen_muons(chunk), chunk["Muon"])
    expected = ak.to_numpy(ak.flatten(matched.jetRelIso)).astype(np.float64)
    rebuilt = target["jet_iso_ratio"] * (1 + target["pfRelIso04_all"]) - 1
    assert len(expected) > 5 and np.ptp(target["jet_iso_ratio"]) > 0.05
    np.testing.assert_allclose(np.sort(rebuilt), np.sort(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("obj", ["muon", "electron"])
def test_total_isolations_round_trip_through_their_neutral_part(chunk, obj):
    """The flows sample the neutral part of miniPFRelIso_all and pfRelIso03_all (>= 0, exactly
    0 where the total is its charged part); charged + neutral gives back every stored total of
    the real CMS file, bit for bit in float32."""
    from flashsim.objects import electron, muon
    from flashsim.objects.lepton import NEUTRAL_ISOLATIONS, training_pairs, with_total_isolations

    module = {"muon": muon, "electron": electron}[obj]
    name = f"{obj}_flow"
    target = module.training_tables(chunk)[name].target
    gen = muon.gen_muons(chunk) if obj == "muon" else electron.gen_electrons(chunk)
    _, matched, _, _ = training_pairs(chunk, gen, chunk[obj.capitalize()])
    rebuilt = with_total_isolations(dict(target))
    for total, (_, neutral) in NEUTRAL_ISOLATIONS.items():
        assert neutral in target and total not in target
        assert np.all(target[neutral] >= 0) and np.any(target[neutral] == 0)
        stored = ak.to_numpy(ak.flatten(matched[total]))
        np.testing.assert_array_equal(np.float32(rebuilt[total]), stored)


def test_muon_jet_ptrel_follows_from_its_own_jet(dy_refdet_sample):
    """Reference-detector muons: jetPtRelv2 rebuilt as simulation does, from the sampled
    targets (jetRelIso through its ratio to the cone, the jet's direction relative to the
    muon), is the stored one up to the storage rounding of the jet's direction; muons in no
    jet get offsets 0."""
    from flashsim.kinematics import pt_rel
    from flashsim.nanoaod.reader import read_chunk
    from flashsim.objects import muon
    from flashsim.objects.lepton import training_pairs

    stored = read_chunk(dy_refdet_sample, muon.TRAINING_NAMES, 0, None)  # not dequantised
    target = muon.training_tables(stored)["muon_flow"].target
    _, matched, _, _ = training_pairs(stored, muon.gen_muons(stored), stored["Muon"])

    def flat(name):
        return ak.to_numpy(ak.flatten(matched[name])).astype(np.float64)

    in_jet = flat("jetIdx") >= 0
    assert 0.5 < in_jet.mean() < 1 and "jetPtRelv2" not in target
    assert np.all(target["jet_deta"][~in_jet] == 0) and np.all(target["jet_dphi"][~in_jet] == 0)
    assert np.all(np.hypot(target["jet_deta"], target["jet_dphi"])[in_jet] < 0.4)
    rel_iso = target["jet_iso_ratio"] * (1 + target["pfRelIso04_all"]) - 1
    pt, eta, phi = flat("pt"), flat("eta"), flat("phi")
    rebuilt = pt_rel(pt, eta, phi, pt * (1 + rel_iso), eta + target["jet_deta"],
                     phi + target["jet_dphi"])
    error = np.abs(rebuilt - flat("jetPtRelv2"))[in_jet] / flat("jetPtRelv2")[in_jet]
    assert np.median(error) < 0.01 and np.quantile(error, 0.9) < 0.05


def test_electron_mva_scores_at_the_training_clip_come_back_as_one():
    """An MVA output of exactly -1 or 1 (a third of NanoAOD electrons in ttbar) survives the
    atanh of training and the tanh of simulation; scores inside keep their value."""
    from flashsim.objects.electron import _RAW_CLIP, mva_score

    scores = np.array([-1.0, -0.99999, -0.3, 0.0, 0.7, 0.9999, 1.0], np.float32)
    raw = np.arctanh(np.clip(scores, -_RAW_CLIP, _RAW_CLIP))  # as training_tables does
    back = mva_score(raw)
    np.testing.assert_array_equal(back[[0, -1]], [-1.0, 1.0])
    np.testing.assert_allclose(back[1:-1], scores[1:-1], rtol=1e-6)
    assert np.all(np.abs(back[1:-1]) < 1)


@pytest.fixture(scope="module")
def fake_muon_models(models, tmp_path_factory):
    """The tiny models plus fake-muon models trained (``--model``) on 300 reference-detector
    ttbar events (7 fake muons from jets, 11 from pileup)."""
    import shutil

    from conftest import TINY_ARCHITECTURE

    from flashsim.objects.training import train_object
    from flashsim.production import generate_file

    out = tmp_path_factory.mktemp("fake_muons")
    ttbar = out / "ttbar_300.root"
    generate_file("ttbar", 300, ttbar, seed=1_900_019, refsim=True, progress=False)
    directory = out / "models"
    shutil.copytree(models, directory)
    metrics = train_object("muon", [ttbar], directory, only=list(OBJECTS["muon"].FAKE_MODELS),
                           epochs=1, architecture=TINY_ARCHITECTURE, progress=False)
    assert set(metrics) == set(OBJECTS["muon"].FAKE_MODELS)
    return directory, ttbar


@pytest.mark.slow  # generates 300 ttbar events and trains four models
def test_fake_muons_join_the_muons_of_gen_muons(fake_muon_models):
    """With fake-muon models, the muons of GEN muons are unchanged and the fakes are muons
    with every Muon field, GEN-matched to a muon outside the GEN selection or genPartFlav 0."""
    from flashsim.nanoaod.reader import GEN_COLLECTIONS

    directory, ttbar = fake_muon_models
    gen = read_chunk(ttbar, GEN_COLLECTIONS)
    loaded = load_models(directory)
    assert set(OBJECTS["muon"].FAKE_MODELS) <= set(loaded) and loaded.skipped == ()
    with_fakes = simulate_reco(gen, loaded, np.random.default_rng(11))["Muon"]
    without = simulate_reco(gen, load_models(directory, required=[
        n for n in MODEL_SPECS if n not in OBJECTS["muon"].FAKE_MODELS]),
        np.random.default_rng(11))["Muon"]
    assert ak.fields(with_fakes) == ak.fields(without)
    n_fake = ak.num(with_fakes) - ak.num(without)
    assert ak.all(n_fake >= 0) and ak.sum(n_fake) > 0
    # the muons of GEN muons are drawn as before; the fakes come on top, pT-ordered
    flat_with = ak.to_numpy(ak.flatten(with_fakes.pt))
    assert np.isin(ak.to_numpy(ak.flatten(without.pt)), flat_with).all()
    assert ak.all(with_fakes.pt[:, :-1] >= with_fakes.pt[:, 1:])
    is_fake = ~np.isin(flat_with, ak.to_numpy(ak.flatten(without.pt)))
    fakes = with_fakes[ak.unflatten(is_fake, ak.num(with_fakes))]
    assert ak.sum(ak.num(fakes)) == ak.sum(n_fake)
    assert ak.all(fakes.pt > OBJECTS["muon"].PT_MIN)
    assert ak.all(fakes.pdgId == -13 * fakes.charge)
    for field in ak.fields(fakes):
        assert np.isfinite(ak.to_numpy(ak.flatten(fakes[field])).astype(np.float64)).all(), field
    unmatched = fakes.genPartIdx < 0
    assert ak.all(fakes.genPartFlav[unmatched] == 0)
    matched = fakes[~unmatched]
    assert ak.all(abs(gen["GenPart"][matched.genPartIdx].pdgId) == 13)
    assert ak.all(matched.genPartFlav > 0)
    # a muon of a GEN muon and a fake never claim the same GEN particle
    idx = with_fakes.genPartIdx[with_fakes.genPartIdx >= 0]
    assert ak.all(ak.num(idx) == ak.num(_unique_per_event(idx)))


@pytest.mark.slow  # uses the fake-muon models trained on 300 ttbar events
def test_fakes_stay_inside_the_acceptance_and_forward_jets_host_none(fake_muon_models,
                                                                      monkeypatch):
    """However many fakes the multiplicity asks for, a GenJet beyond acceptance + cone hosts
    none and every fake, from jets or pileup, lies inside the acceptance."""
    from flashsim.nanoaod.reader import GEN_COLLECTIONS
    from flashsim.objects import jet
    from flashsim.objects.fake_lepton import ACCEPTANCE, JET_CONE, sample_fakes

    directory, ttbar = fake_muon_models
    gen = read_chunk(ttbar, GEN_COLLECTIONS)
    loaded = load_models(directory)

    def one_each(classes: int):  # always one fake, so that forward jets would get theirs
        return lambda columns: np.eye(classes)[np.ones(len(columns["pileup"]), np.int64)]

    for name in ("fake_muon_multiplicity", "pileup_muon_multiplicity"):
        model = loaded[name]
        monkeypatch.setattr(model, "probability",
                            one_each(model.meta["architecture"]["max_count"] + 1))
    none = np.zeros(0, np.int64)
    fields, event = sample_fakes(gen, "muon", loaded, np.random.default_rng(5), none, none, (13,))
    jet_eta = ak.to_numpy(ak.flatten(jet.gen_jets(gen).gen_eta))
    possible = np.abs(jet_eta) < ACCEPTANCE["muon"] + JET_CONE
    assert 0 < possible.sum() < len(jet_eta)  # ttbar has GenJets beyond 2.8
    assert len(event) == possible.sum() + len(gen["event"])
    assert np.all(np.abs(fields["eta"]) <= ACCEPTANCE["muon"])


def _unique_per_event(values: ak.Array) -> ak.Array:
    ordered = ak.sort(values, axis=1)
    keep = ak.concatenate([ak.ones_like(ordered[:, :1], dtype=bool),
                           ordered[:, 1:] != ordered[:, :-1]], axis=1)
    return ordered[keep]


def test_jet_branch_rules_hold_in_the_reference_detector_and_cms_keeps_its_own(
        dy_refdet_sample, chunk):
    """The reference detector makes the older b/c taggers, ``bRegRes`` and ``jercCHF``
    functions of other branches, and fixes ``puId`` above 50 GeV: training finds every rule in
    its jets. Real CMS NanoAOD (``nano_dy.root``) follows only its own ``jercCHF`` rule."""
    from flashsim.models.training import exact_relations, region_constants
    from flashsim.objects import jet

    def derived(tables):
        table = tables["jet_flow"]
        return exact_relations(table, jet.RELATIONS, list(table.target))

    refdet = read_training_chunk([dy_refdet_sample], jet.TRAINING_NAMES)[0]
    tables = jet.training_tables(refdet)
    assert derived(tables) == {
        "jercCHF": "chHEF", "btagCMVA": "clip(2 btagDeepFlavB - 1, -1, 1)",
        "btagDeepFlavC": "btagDeepFlavCvL (1 - btagDeepFlavB)",
        "btagDeepC": "0.6 btagDeepFlavCvL (1 - btagDeepFlavB)",
        "btagCSVV2": "piecewise-linear in btagDeepFlavB", "bRegRes": "0.06 + 1/sqrt(pt)"}
    fixed = region_constants(tables["jet_flow"], ["puId", "qgl", "btagDeepFlavCvB", "btagDeepC",
                                                  "btagDeepFlavCvL"], min_rows=10)
    assert fixed["no_pileup_id"] == {"puId": 7.0}
    assert fixed["outside_tracker"] == {"qgl": -1.0, "btagDeepFlavCvB": 0.0, "btagDeepC": 0.0,
                                        "btagDeepFlavCvL": 0.0}
    # a derived branch's constant is its stored value, which its rule applied to the stored
    # (rounded) inputs misses by more than the float32 storage: simulation sets the constant
    charm = fixed["no_displaced_track"]
    assert charm["btagDeepC"] == pytest.approx(0.6 * charm["btagDeepFlavCvL"], rel=2e-3)
    assert abs(charm["btagDeepC"] - 0.6 * charm["btagDeepFlavCvL"]) > 1e-6
    # no displaced track: DeepFlavB 0 and CvB the logistic of its constant term, 1.5
    assert fixed["no_displaced_track"]["btagDeepFlavCvB"] == pytest.approx(1 / (1 + np.exp(-1.5)),
                                                                            abs=1e-3)
    assert derived(jet.training_tables(chunk)) == {"jercCHF": "chHEF + chEmEF + muEF"}


def test_jets_see_the_electrons_around_their_genjet(chunk):
    """The electron context of ``jet_flow``: per GenJet the distance to the nearest electron
    (5 beyond) and the electrons' pT fraction within 0.4; no electrons: 5 and 0."""
    from flashsim.kinematics import delta_r
    from flashsim.objects import jet

    electrons = chunk["Electron"]
    jets = jet.gen_jets(chunk, electrons)
    inside = 0
    for e in range(len(jets)):
        el = electrons[e]
        for k in range(len(jets[e])):
            j = jets[e, k]
            dr = np.asarray(delta_r(j.gen_eta, j.gen_phi, el.eta, el.phi))
            assert j.ele_dr == pytest.approx(min(dr.min(initial=5.0), 5.0))
            assert j.ele_ptfrac == pytest.approx(np.asarray(el.pt)[dr < 0.4].sum() / j.gen_pt)
            inside += bool((dr < 0.4).any())
    assert inside >= 3
    alone = jet.gen_jets(chunk)
    assert ak.all(alone.ele_dr == 5.0) and ak.all(alone.ele_ptfrac == 0.0)


def test_matched_jets_are_sampled_given_the_simulated_electrons(models, chunk, monkeypatch):
    from flashsim.objects import jet

    seen = []
    original = jet.simulate

    def recording(gen, models, rng, electrons=None):
        seen.append(electrons)
        return original(gen, models, rng, electrons)

    monkeypatch.setattr(jet, "simulate", recording)
    reco = simulate_reco(chunk, load_models(models), np.random.default_rng(5))
    assert len(seen) == 1 and seen[0] is not None
    assert ak.sum(ak.num(reco["Electron"])) == ak.sum(ak.num(seen[0])) > 0
    np.testing.assert_array_equal(np.sort(ak.to_numpy(ak.flatten(seen[0].pt))),
                                  np.sort(ak.to_numpy(ak.flatten(reco["Electron"].pt))))


def test_energy_fractions_round_trip_through_their_shares():
    """Five fractions on the simplex -> four shares in [0, 1] -> the same five fractions;
    a jet without charged particles (beyond the tracker) has shares that are 0 or 1 but the
    photons'; fractions off the simplex (older models) are projected onto it."""
    rng = np.random.default_rng(3)
    f = rng.dirichlet(np.ones(5), size=2000)
    f[:500, 4] = 0.0  # no muon
    f[500:700, [0, 3, 4]] = 0.0  # no charged particle
    f[700:800, 3:] = 0.0  # neither muon nor electron
    f /= f.sum(axis=1, keepdims=True)
    fractions = dict(zip(ENERGY_FRACTIONS, f.T, strict=True))
    shares = energy_fraction_shares(fractions)
    assert set(shares) == set(ENERGY_FRACTION_SHARES)
    assert all(np.all((v >= 0) & (v <= 1)) for v in shares.values())
    neutral = slice(500, 700)
    assert np.all(shares["chHEF_share"][neutral] == 0)
    assert np.all(shares["neHEF_share"][neutral] == 1)
    assert np.all(shares["chEmEF_share"][neutral] == 1)
    assert np.all(shares["chEmEF_share"][:500] == 1)
    back = energy_fractions(dict(shares))
    for name in ENERGY_FRACTIONS:
        np.testing.assert_allclose(back[name], fractions[name], atol=1e-12)
    np.testing.assert_allclose(sum(back.values()), 1.0, atol=1e-12)
    assert np.all(back["muEF"][neutral] == 0)
    off = energy_fractions({k: 1.3 * v for k, v in fractions.items()})
    np.testing.assert_allclose(off["chHEF"], fractions["chHEF"], atol=1e-12)
    assert energy_fractions({"chHEF": f[:, 0]}) == {}


def test_no_working_point_is_drawn_outside_the_tracker():
    """Where the training data fixed the position outside the tracker (no tagger: the
    reference detector's score 0), the score is that default whatever working point the
    classifier drew; without such a rule (real CMS) the drawn working point stands."""
    from types import SimpleNamespace

    from flashsim.objects import jet

    fields = {"eta": np.array([0.5, 2.45, 2.55, -3.2]),
              "btagDeepFlavB_interval": np.array([2, 3, 2, 1]),
              "btagDeepFlavB_position": np.array([0.5, 0.2, 0.4, 0.9])}
    detector = SimpleNamespace(region_constants={"outside_tracker": {"btagDeepFlavB_position": 0.0}},
                               derived_targets={})
    out = jet.derived_branches({k: v.copy() for k, v in fields.items()}, detector)
    wp = jet.DEEPJET_WORKING_POINTS
    np.testing.assert_allclose(out["btagDeepFlavB"], [wp[1] + 0.5 * (wp[2] - wp[1]),
                                                      wp[2] + 0.2 * (1 - wp[2]), 0.0, 0.0])
    assert not {"btagDeepFlavB_interval", "btagDeepFlavB_position"} & set(out)
    free = SimpleNamespace(region_constants={}, derived_targets={})
    score = jet.derived_branches({k: v.copy() for k, v in fields.items()}, free)["btagDeepFlavB"]
    assert score[2] == pytest.approx(wp[1] + 0.4 * (wp[2] - wp[1])) and score[3] > wp[0]


def test_deepjet_score_round_trips_through_its_working_point_interval(chunk):
    """Score -> (working points passed, position between them) -> the same score; a sampled
    position outside [0, 1] still gives a score that passes exactly the working points its
    interval counts; ``jet_btag_working_point`` learns the interval and ``jet_flow``, given
    it, the position."""
    from flashsim.objects import jet

    wps = np.asarray(jet.DEEPJET_WORKING_POINTS)
    rng = np.random.default_rng(4)
    score = np.concatenate([rng.uniform(0, 1, 5000), [0.0, 1.0], wps, np.nextafter(wps, 1)])
    split = jet.deepjet_intervals(score)
    np.testing.assert_array_equal(split["btagDeepFlavB_interval"],
                                  (score[:, None] > wps).sum(axis=1))
    position = split["btagDeepFlavB_position"]
    assert np.all((position >= 0) & (position <= 1))
    assert position[5000] == 0.0 and position[5001] == 1.0  # the spikes stay exact
    np.testing.assert_allclose(jet.deepjet_score(split), score, rtol=0, atol=1e-15)
    wild = {"btagDeepFlavB_interval": split["btagDeepFlavB_interval"],
            "btagDeepFlavB_position": rng.uniform(-0.5, 1.5, len(score))}
    passed = (jet.deepjet_score(wild)[:, None] > wps).sum(axis=1)
    np.testing.assert_array_equal(passed, split["btagDeepFlavB_interval"])
    # the working point is a classifier's, the position the flow's, given the working point
    tables = jet.training_tables(chunk)
    working_point, flow = tables["jet_btag_working_point"], tables["jet_flow"]
    assert list(working_point.target) == ["btagDeepFlavB_interval"]
    np.testing.assert_array_equal(flow.context["btagDeepFlavB_interval"],
                                  working_point.target["btagDeepFlavB_interval"])
    spec = jet.MODELS["jet_flow"]
    assert spec.context[-1].name == "btagDeepFlavB_interval"
    assert [c.name for c in jet.MODELS["jet_btag_working_point"].context] == \
        [c.name for c in spec.context[:-1]]
    assert jet.MODELS["jet_btag_working_point"].max_count == 3
    names = [t.name for t in spec.targets]
    assert "btagDeepFlavB_position" in names and "btagDeepFlavB" not in names
    assert "btagDeepFlavB_interval" not in names
    reco = chunk["Jet"][chunk["Jet"].genJetIdx >= 0]
    stored = ak.to_numpy(ak.flatten(reco.btagDeepFlavB))
    back = jet.deepjet_score({**flow.context, **flow.target})  # within the stored rounding
    nearest = np.min(np.abs(back[:, None] - stored[None, :]) / np.maximum(stored, 1e-6), axis=1)
    assert len(back) > 80 and np.all(nearest < 2e-3)
    # without the score there is nothing to learn the working point from: one clear error
    untagged = {**chunk, "Jet": chunk["Jet"][[f for f in ak.fields(chunk["Jet"])
                                               if f != "btagDeepFlavB"]]}
    with pytest.raises(FlashSimError, match="no Jet_btagDeepFlavB.*NANOAODSIM that has it"):
        jet.training_tables(untagged)
