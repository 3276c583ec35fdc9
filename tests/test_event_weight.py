"""The event classifier's features (flashsim.objects.event) on the real CMS NANOAODSIM file.

Its fit, the weights it writes and its checks on loading are tested with ``flashsim refine``
in test_refinement.py."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from flashsim.nanoaod.reader import read_chunk
from flashsim.objects.event import EVENT_FEATURES, event_features

NAMES = ["Muon", "Jet", "Electron", "MET", "PV", "fixedGridRhoFastjetAll", "GenPart", "GenJet",
         "GenMET", "Pileup", "event"]


@pytest.fixture(scope="module")
def chunk(reference_nano):
    return read_chunk(reference_nano, NAMES)


def test_event_features_are_the_events_summary(chunk):
    import vector

    features = event_features(chunk)
    assert set(features) == {spec.name for spec in EVENT_FEATURES}
    assert all(np.isfinite(v).all() and len(v) == len(chunk["event"]) for v in features.values())
    mu = chunk["Muon"]
    assert np.array_equal(features["nMuon"], ak.to_numpy(ak.num(mu)))
    two = ak.to_numpy(ak.num(mu)) >= 2
    assert two.sum() >= 3
    pairs = vector.zip({"pt": mu.pt, "eta": mu.eta, "phi": mu.phi,
                        "mass": ak.zeros_like(mu.pt)})[two]
    mass = ak.to_numpy((pairs[:, 0] + pairs[:, 1]).mass)
    assert np.allclose(features["m_mumu"][two], mass, rtol=1e-4)
    assert 70 < np.median(mass) < 110  # Drell-Yan
    assert np.all(features["m_mumu"][~two] == 0) and np.all(features["mu2_pt"][~two] == 0)
    assert np.all(features["jet1_pt"] >= features["jet2_pt"])
    assert np.allclose(features["HT"], ak.sum(chunk["Jet"].pt, axis=1), rtol=1e-6)
    assert np.all(np.abs(features["MET_dphi_GenMET"]) <= np.pi)
    # every selected GEN muon of a DY -> mumu event is counted
    assert np.all(features["nGenMuon"][features["nMuon"] >= 2] >= 1)


def test_event_features_without_electrons(chunk):
    without = {k: v for k, v in chunk.items() if k != "Electron"}
    features, full = event_features(without), event_features(chunk)
    for name in ("nElectron", "e1_pt", "e1_eta"):
        assert np.all(features[name] == 0)
    assert np.any(full["nElectron"] > 0)
    assert all(np.array_equal(features[k], full[k]) for k in features
               if k not in ("nElectron", "e1_pt", "e1_eta"))
