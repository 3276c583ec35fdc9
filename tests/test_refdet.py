"""Tests of the reference detector (flashsim.refdet) on a few hundred Pythia events."""

from __future__ import annotations

import copy

import awkward as ak
import numpy as np
import pytest
import uproot

from flashsim.generation import iter_batches, minbias_pool
from flashsim.nanoaod.electron_working_points import DERIVED, derived_ids, hidden_from_bitmaps
from flashsim.nanoaod.schema import collection_branches, reco_branches
from flashsim.refdet import DetectorConfig, ReferenceDetector
from flashsim.refdet.pileup import overlay
from flashsim.refdet.tracker import direction_resolution


def _batch(process: str, n: int, seed: int):
    return next(iter_batches(process, n, seed=seed, pileup_mean=30.0, batch_size=n))


@pytest.fixture(scope="module")
def samples():
    pool = minbias_pool(150, seed=101)
    detector = ReferenceDetector(pool)
    ttbar = _batch("ttbar", 150, 102)
    dy = _batch("dy_mumu", 100, 103)
    dy_ee = _batch("dy_ee", 150, 104)
    rng = np.random.default_rng(7)
    return {"detector": detector, "ttbar": (ttbar, detector.reconstruct(ttbar, rng)),
            "dy": (dy, detector.reconstruct(dy, rng)), "dy_ee": (dy_ee, detector.reconstruct(dy_ee, rng))}


def _with_pileup(batch, mean: float, seed: int):
    other = copy.copy(batch)
    nano = dict(batch.nano)
    n = len(nano["Pileup"])
    nano["Pileup"] = ak.zip({"nPU": np.random.default_rng(seed).poisson(mean, n).astype(np.int32),
                             "nTrueInt": np.full(n, mean, np.float32)})
    other.nano = nano
    return other


def test_collections_and_branches(samples, reference_branch_names):
    _, chunk = samples["ttbar"]
    for name in ("Muon", "Electron", "Jet", "MET", "RawMET", "PV", "fixedGridRhoFastjetAll"):
        assert name in chunk
    for name in ("Muon", "Electron", "Jet"):  # every schema branch, in schema dtypes
        # but flashsim's DCTR weight, which a full simulation has not
        branches = reco_branches(name)
        assert chunk[name].fields == list(branches)
        assert "flashsimWeight" in collection_branches(name) and "flashsimWeight" not in branches
        for field, spec in branches.items():
            assert ak.flatten(chunk[name][field]).layout.dtype == spec.dtype, (name, field)
    gen_like = {"genPartIdx", "genPartFlav", "genJetIdx", "hadronFlavour", "partonFlavour"}
    for coll in ("Muon", "Jet", "PV", "RawMET"):
        wanted = {n.split("_", 1)[1] for n in reference_branch_names if n.startswith(coll + "_")}
        assert wanted - gen_like <= set(chunk[coll].fields), coll
    jet = chunk["Jet"]
    assert ak.all(jet.pt > 15)
    assert ak.all(jet.pt[:, 1:] <= jet.pt[:, :-1])
    assert set(np.unique(ak.flatten(jet.jetId))) <= {0, 2, 6}
    assert set(np.unique(ak.flatten(jet.puId))) <= {0, 4, 6, 7}
    assert ak.all((jet.btagDeepFlavB >= 0) & (jet.btagDeepFlavB <= 1))
    assert np.all(chunk["PV"].npvs >= 1)
    rho = chunk["fixedGridRhoFastjetAll"]
    assert 5 < np.mean(rho) < 60


def test_muon_resolution(samples):
    batch, chunk = samples["dy"]
    mu = chunk["Muon"]
    m = mu[(mu.genPartIdx >= 0) & (mu.genPartFlav == 1)]
    g = batch.nano["GenPart"][m.genPartIdx]
    ratio = ak.to_numpy(ak.flatten(m.pt / g.pt))
    eta = np.abs(ak.to_numpy(ak.flatten(g.eta)))
    barrel = ratio[eta < 0.9]
    assert len(barrel) > 30
    q16, q50, q84 = np.quantile(barrel, [0.16, 0.5, 0.84])
    assert 0.005 < (q84 - q16) / 2 < 0.03
    assert abs(q50 - 1) < 0.01
    assert ak.mean(m.tightId) > 0.85


@pytest.mark.parametrize("source", ["refdet", "nano_dy"])
def test_muon_cut_based_ids_are_stored_cuts_and_hidden_outcomes(samples, source, reference_nano):
    """mediumId, tightId, softId, highPtId come back exactly from their stored cuts and the
    hidden bits recorded from them (reference-detector ttbar and the real CMS file), and no ID
    passes where one of its stored cuts fails: a muon with |dz| > 0.5 cm is never tight."""
    from flashsim.nanoaod.muon_working_points import (
        CUT_BASED_IDS,
        cut_based_ids,
        hidden_from_ids,
        stored_requirements,
    )

    if source == "refdet":
        mu = samples["ttbar"][1]["Muon"]
    else:
        mu = uproot.open(reference_nano)["Events"].arrays(filter_name="Muon_*",
                                                          how="zip")["Muon"]
    flat = {f: ak.to_numpy(ak.flatten(mu[f])) for f in mu.fields}
    hidden = {k: ak.to_numpy(ak.flatten(v)) for k, v in hidden_from_ids(mu).items()}
    rebuilt = cut_based_ids(flat, hidden)
    for name in CUT_BASED_IDS:
        np.testing.assert_array_equal(rebuilt[name], flat[name], err_msg=name)
    required = stored_requirements(flat)
    for name in ("mediumId", "tightId", "softId"):
        assert not np.any(flat[name] & ~required[name]), name
    assert not np.any((flat["highPtId"] == 2) & ~required["highPtId_global"])
    assert not np.any(flat["tightId"] & (np.abs(flat["dz"]) > 0.5))
    # rebuilt from a failed hidden bit, a muon that passes its stored cuts loses the ID
    tight = np.flatnonzero(flat["tightId"])
    assert len(tight) > 5
    failed = hidden | {"tightId_hidden": np.zeros_like(hidden["tightId_hidden"])}
    assert not cut_based_ids(flat, failed)["tightId"].any()


def test_muon_direction_is_measured(samples):
    """Muon eta/phi come from the smeared track: every matched muon differs from its GEN muon,
    by the tracker resolution a (+) b/(pT sin^1/2 theta) of JINST 9 P10009 (20-100 GeV)."""
    batch, chunk = samples["dy"]
    mu = chunk["Muon"]
    m = mu[(mu.genPartIdx >= 0) & (mu.genPartFlav == 1)]
    g = batch.nano["GenPart"][m.genPartIdx]
    flat = {k: ak.to_numpy(ak.flatten(v)).astype(np.float64) for k, v in
            (("eta", m.eta), ("phi", m.phi), ("geta", g.eta), ("gphi", g.phi), ("gpt", g.pt))}
    deta = flat["eta"] - flat["geta"]
    dphi = np.angle(np.exp(1j * (flat["phi"] - flat["gphi"])))
    assert np.mean(deta != 0) > 0.99 and np.mean(dphi != 0) > 0.99
    core = (flat["gpt"] > 20) & (flat["gpt"] < 100) & (np.abs(flat["geta"]) < 1.4)
    assert core.sum() > 50
    sigma_phi, sigma_eta = direction_resolution(flat["gpt"][core], np.abs(flat["geta"][core]),
                                                1 / np.cosh(flat["geta"][core]), DetectorConfig())
    for delta, sigma in ((deta[core], sigma_eta), (dphi[core], sigma_phi)):
        pull = delta / sigma
        q16, q84 = np.quantile(pull, [0.16, 0.84])
        assert 0.8 < (q84 - q16) / 2 < 1.25  # core width as parametrised (3% tails aside)
    assert 1e-4 < np.median(np.abs(deta[core])) < 5e-4  # P10009: 2.5-4e-4 in eta at 20-100 GeV


def test_jet_response(samples):
    batch, chunk = samples["ttbar"]
    jet = chunk["Jet"]
    m = jet[jet.genJetIdx >= 0]
    g = batch.nano["GenJet"][m.genJetIdx]
    ratio = ak.to_numpy(ak.flatten((m.pt / g.pt)[g.pt > 30]))
    assert len(ratio) > 100
    assert 0.95 < np.median(ratio) < 1.05


@pytest.mark.slow  # two more reconstructions of the ttbar sample
def test_pileup_jets(samples):
    batch, chunk = samples["ttbar"]
    detector = samples["detector"]
    unmatched = lambda c: int(ak.sum(c["Jet"].genJetIdx < 0))  # noqa: E731
    assert unmatched(chunk) > 0
    low = detector.reconstruct(_with_pileup(batch, 5.0, 1), np.random.default_rng(3))
    high = detector.reconstruct(_with_pileup(batch, 60.0, 2), np.random.default_rng(3))
    assert unmatched(high) > 1.5 * unmatched(low)
    assert np.mean(high["RawMET"].sumEt) > np.mean(low["RawMET"].sumEt)


def test_pileup_orientation_keeps_each_overlaid_event(samples):
    """Every overlaid copy is its pool event rotated about z and maybe mirrored in z: same
    multiplicity, same sum pT, sum pz kept or flipped, azimuth shifted by the copy's angle."""
    batch, _ = samples["dy"]
    pool = samples["detector"].pool
    n_pu = np.full(len(batch.nano["event"]), 20)
    ov = overlay(batch.particles, pool, n_pu, np.random.default_rng(11), sigma_z=35.0)
    n = ov.n_events
    cols = ov.cols
    vertex = cols["vtx"][cols["vtx"] >= n] - n
    n_vertices = int(n_pu.sum())
    source = ov.pileup_source
    pt = np.hypot(cols["px"], cols["py"])[cols["vtx"] >= n]
    pool_pt = np.hypot(pool.cols["px"], pool.cols["py"])
    pool_evt = np.repeat(np.arange(len(pool)), pool.counts)

    def per_vertex(values):
        return np.bincount(vertex, weights=values, minlength=n_vertices)

    def per_pool_event(values):
        return np.bincount(pool_evt, weights=values, minlength=len(pool))[source]

    np.testing.assert_array_equal(np.bincount(vertex, minlength=n_vertices), pool.counts[source])
    np.testing.assert_allclose(per_vertex(pt), per_pool_event(pool_pt), rtol=1e-12)
    sign = np.where(ov.pileup_reflected, -1.0, 1.0)
    np.testing.assert_allclose(per_vertex(cols["pz"][cols["vtx"] >= n]),
                               sign * per_pool_event(pool.cols["pz"]), rtol=1e-9, atol=1e-9)
    # the first particle of each copy: its azimuth moved by the copy's rotation
    first = np.flatnonzero(np.diff(np.concatenate([[-1], vertex])) != 0)
    moved = (np.arctan2(cols["py"], cols["px"])[cols["vtx"] >= n][first]
             - np.arctan2(pool.cols["py"], pool.cols["px"])[pool.offsets[source]])
    np.testing.assert_allclose(np.angle(np.exp(1j * (moved - ov.pileup_rotation))), 0.0, atol=1e-9)
    # orientations are drawn per copy: spread over the circle, half of them mirrored
    assert 0.4 < np.mean(ov.pileup_reflected) < 0.6
    assert np.histogram(ov.pileup_rotation, bins=6, range=(-np.pi, np.pi))[0].min() > n_vertices / 8
    # the same pool event overlaid twice is not the same particles at the same place
    twice = np.flatnonzero(source == source[0])[:2]
    assert len(twice) == 2 and ov.pileup_rotation[twice[0]] != ov.pileup_rotation[twice[1]]


def test_no_pileup_pool_without_pileup(samples):
    batch, _ = samples["dy"]
    detector = ReferenceDetector(None)
    chunk = detector.reconstruct(_with_pileup(batch, 0.0, 1), np.random.default_rng(2))
    assert np.all(chunk["PV"].npvs == 1)
    with pytest.raises(ValueError, match="empty pileup pool"):
        detector.reconstruct(_with_pileup(batch, 5.0, 1), np.random.default_rng(2))


def test_btag_separates(samples):
    _, chunk = samples["ttbar"]
    jet = chunk["Jet"]
    jet = jet[(jet.genJetIdx >= 0) & (np.abs(jet.eta) < 2.4) & (jet.pt > 20)]
    b = ak.flatten(jet.btagDeepFlavB[jet.hadronFlavour == 5])
    light = ak.flatten(jet.btagDeepFlavB[jet.hadronFlavour == 0])
    eff_b, eff_l = np.mean(b > 0.277), np.mean(light > 0.277)
    assert eff_b > 0.5
    assert eff_b > 10 * max(eff_l, 0.01)


def test_cross_references(samples):
    for key in ("ttbar", "dy"):
        batch, chunk = samples[key]
        mu, jet = chunk["Muon"], chunk["Jet"]
        gp, gj = batch.nano["GenPart"], batch.nano["GenJet"]
        m = mu[mu.genPartIdx >= 0]
        g = gp[m.genPartIdx]
        assert ak.all(np.abs(g.pdgId) == 13) and ak.all(g.status == 1)
        assert ak.all(mu.genPartFlav[mu.genPartIdx < 0] == 0)
        assert ak.all(jet.genJetIdx < ak.num(gj, axis=1))
        j = jet[jet.genJetIdx >= 0]
        g = gj[j.genJetIdx]
        dphi = (j.phi - g.phi + np.pi) % (2 * np.pi) - np.pi
        assert ak.all(np.hypot(j.eta - g.eta, dphi) < 0.2 + 1e-5)
        assert ak.all(mu.jetIdx < ak.num(jet, axis=1))
        local = ak.local_index(mu, axis=1)
        for jm in ("muonIdx1", "muonIdx2"):
            assert ak.all(jet[jm] < ak.num(mu, axis=1))
            linked = jet[jet[jm] >= 0]
            assert ak.all(mu[linked[jm]].jetIdx == ak.local_index(jet, axis=1)[jet[jm] >= 0])
        linked = mu.jetIdx >= 0  # (events with muons but no jet have nothing to index)
        back = jet[mu.jetIdx[linked]]
        owns = ((back.muonIdx1 == local[linked]) | (back.muonIdx2 == local[linked])
                | (back.nMuons > 2))
        assert ak.all(owns)


# coffea's own NanoAODSchema (a user's view, on purpose not flashsim's quiet one) warns for every
# cross-reference into a collection the file does not have (Electron, Tau, FatJet, ...)
@pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")
@pytest.mark.slow  # builds coffea's full NanoAOD schema
def test_nanoaodschema_roundtrip(samples, tmp_path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from flashsim.nanoaod.writer import write_nanoaod

    batch, chunk = samples["dy"]
    path = tmp_path / "refdet.root"
    write_nanoaod(path, {**batch.nano, **chunk})
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema,
                                         mode="eager").events()
    assert len(events) == len(chunk["MET"])
    assert ak.all(events.Muon.pt == chunk["Muon"].pt)
    matched = events.Muon[events.Muon.genPartIdx >= 0]
    assert ak.all(np.abs(matched.matched_gen.pdgId) == 13)


def _prompt_electrons(samples, key="dy_ee"):
    batch, chunk = samples[key]
    e = chunk["Electron"]
    m = e[(e.genPartIdx >= 0) & (e.genPartFlav == 1)]
    return batch, chunk, m, batch.nano["GenPart"][m.genPartIdx]


def test_electron_branches_follow_nanoaod(samples):
    _, chunk = samples["dy_ee"]
    e = chunk["Electron"]
    assert ak.all(e.pt > 5) and ak.all(e.pt[:, 1:] <= e.pt[:, :-1])
    assert ak.all(e.pdgId == -11 * e.charge) and ak.all(e.photonIdx == -1)
    flat = {f: ak.to_numpy(ak.flatten(e[f])) for f in e.fields}
    rho = ak.to_numpy(ak.flatten(ak.broadcast_arrays(chunk["fixedGridRhoFastjetAll"], e.pt)[0]))
    # every working-point branch is what NanoAOD would compute from the other branches
    rebuilt = derived_ids({k: v for k, v in flat.items() if k not in DERIVED}
                          | hidden_from_bitmaps(flat), rho.astype(np.float64))
    for name in (*DERIVED, "dr03TkSumPt"):
        np.testing.assert_array_equal(rebuilt[name], flat[name], err_msg=name)
    assert set(np.unique(flat["genPartFlav"])) <= {0, 1, 3, 4, 5, 15, 22}


def test_electron_efficiency_and_resolution(samples):
    batch, _, m, g = _prompt_electrons(samples)
    gp = batch.nano["GenPart"]
    prompt = gp[(abs(gp.pdgId) == 11) & (gp.status == 1) & ((gp.statusFlags & 1) == 1)
                & (gp.pt > 20) & (abs(gp.eta) < 2.4)]
    found = (g.pt > 20) & (abs(g.eta) < 2.4)
    assert ak.sum(found) / ak.sum(ak.num(prompt)) > 0.9
    ratio = ak.to_numpy(ak.flatten((m.pt / g.pt)[found]))
    eta = np.abs(ak.to_numpy(ak.flatten(g.eta[found])))
    for region, (lo, hi) in {"barrel": (0.01, 0.035), "endcap": (0.015, 0.06)}.items():
        r = ratio[eta < 1.44] if region == "barrel" else ratio[eta > 1.57]
        q16, q50, q84 = np.quantile(r, [0.16, 0.5, 0.84])
        assert lo < (q84 - q16) / 2 < hi, region
        assert abs(q50 - 1) < 0.02, region
    # the identification keeps most prompt electrons, the tight WP fewer than the medium
    tight, medium = (np.mean(ak.to_numpy(ak.flatten(m.cutBased[found])) >= wp) for wp in (4, 3))
    assert 0.5 < tight < medium < 0.95
    assert 0.7 < np.mean(ak.to_numpy(ak.flatten(m.mvaFall17V2Iso_WP90[found]))) < 0.97
    assert np.mean(ak.to_numpy(ak.flatten(m.charge == -np.sign(g.pdgId)))) > 0.98


def test_electrons_from_jets_mostly_fail_the_identification(samples):
    _, chunk = samples["ttbar"]
    e = chunk["Electron"]
    fake = e[(e.genPartFlav != 1) & (e.genPartFlav != 15)]
    assert ak.sum(ak.num(fake)) > 20
    assert np.mean(ak.to_numpy(ak.flatten(fake.cutBased)) >= 4) < 0.2
    # heavy-flavour decays and unmatched candidates (hadrons, conversions) are both there
    flav = set(np.unique(ak.to_numpy(ak.flatten(fake.genPartFlav))))
    assert {0, 5} <= flav


def test_electron_jet_links_and_particle_flow(samples):
    _, chunk, m, _ = _prompt_electrons(samples)
    e, jet = chunk["Electron"], chunk["Jet"]
    local = ak.local_index(e, axis=1)
    for je in ("electronIdx1", "electronIdx2"):
        linked = jet[jet[je] >= 0]
        assert ak.all(e[linked[je]].jetIdx == ak.local_index(jet, axis=1)[jet[je] >= 0])
    back = jet[ak.where(e.jetIdx >= 0, e.jetIdx, 0)]
    owns = (back.electronIdx1 == local) | (back.electronIdx2 == local) | (back.nElectrons > 2)
    assert ak.all(owns[e.jetIdx >= 0])
    assert ak.all(jet.nElectrons == ak.sum(e.jetIdx[:, None, :] == ak.local_index(jet)[:, :, None],
                                           axis=2))
    # a prompt PF electron's energy is in its jet's charged EM fraction, not the neutral one
    hard = m[(m.pt > 30) & m.isPFcand & (m.jetIdx >= 0)]
    host = jet[hard.jetIdx]
    assert ak.mean(host.chEmEF) > 0.5 and ak.mean(host.neEmEF) < 0.3
    # MET counts the electrons: in ttbar with a W -> e nu electron, MET follows the neutrinos;
    # the PF sum without the electron would be off by the electron's momentum
    batch, chunk = samples["ttbar"]
    e = chunk["Electron"]
    hard = e[(e.genPartFlav == 1) & (e.pt > 30)]
    ex, ey = (ak.to_numpy(ak.sum(hard.pt * f(hard.phi), axis=1)) for f in (np.cos, np.sin))
    met, gen = chunk["MET"], batch.nano["GenMET"]
    dx, dy = (ak.to_numpy(met.pt * f(met.phi) - gen.pt * f(gen.phi)) for f in (np.cos, np.sin))
    with_e = ak.to_numpy(ak.num(hard)) > 0
    assert with_e.sum() > 10
    assert np.median(np.hypot(dx, dy)[with_e]) < 0.7 * np.median(np.hypot(dx + ex, dy + ey)[with_e])


def test_pairs_near_finds_exactly_the_window_pairs():
    from flashsim.kinematics import delta_phi
    from flashsim.refdet.matching import pairs_near

    rng = np.random.default_rng(1)
    evt_a, evt_b = np.sort(rng.integers(0, 20, 200)), rng.integers(0, 20, 3000)
    eta_a, phi_a = rng.uniform(-3, 3, 200), rng.uniform(-np.pi, np.pi, 200)
    eta_b, phi_b = rng.uniform(-5, 5, 3000), rng.uniform(-np.pi, np.pi, 3000)
    ia, ib, deta, dphi = pairs_near(evt_a, eta_a, phi_a, evt_b, eta_b, phi_b, 0.3, 0.2)
    brute = ((evt_a[:, None] == evt_b[None, :]) & (np.abs(eta_b[None, :] - eta_a[:, None]) <= 0.3)
             & (np.abs(delta_phi(phi_b[None, :], phi_a[:, None])) <= 0.2))
    rows, cols = np.nonzero(brute)
    assert set(zip(ia.tolist(), ib.tolist(), strict=True)) == set(zip(rows.tolist(), cols.tolist(), strict=True))
    np.testing.assert_allclose(deta, eta_b[ib] - eta_a[ia])
    # no objects on either side: no pairs, no error
    empty = np.zeros(0)
    assert all(len(x) == 0 for x in pairs_near(empty.astype(int), empty, empty, evt_b, eta_b,
                                                phi_b, 0.3, 0.2))
    assert all(len(x) == 0 for x in pairs_near(evt_a, eta_a, phi_a, empty.astype(int), empty,
                                                empty, 0.3, 0.2))
