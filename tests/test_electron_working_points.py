"""Electron working points rebuilt from the other branches reproduce real CMS NanoAOD."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from flashsim.nanoaod.electron_working_points import (
    DERIVED,
    FALL17_V1,
    FALL17_V2,
    HIDDEN,
    cut_levels,
    derived_ids,
    hidden_from_bitmaps,
)
from flashsim.nanoaod.reader import read_chunk


@pytest.fixture(scope="module")
def real_electrons(reference_nano):
    chunk = read_chunk(reference_nano, ["Electron", "fixedGridRhoFastjetAll"])
    electrons = chunk["Electron"]
    rho = ak.flatten(ak.broadcast_arrays(chunk["fixedGridRhoFastjetAll"], electrons.pt)[0])
    flat = {f: ak.to_numpy(ak.flatten(electrons[f])) for f in electrons.fields}
    return flat, ak.to_numpy(rho)


def test_derived_ids_reproduce_the_real_file(real_electrons):
    electron, rho = real_electrons
    assert len(electron["pt"]) >= 20
    stored = {name: electron[name] for name in DERIVED}
    rebuilt = derived_ids({k: v for k, v in electron.items() if k not in DERIVED}
                          | hidden_from_bitmaps(electron), rho)
    for name in DERIVED:
        assert np.array_equal(rebuilt[name], stored[name]), name
    # the non-PF isolation sums are stored for pT > 35 GeV only, and survive the round trip
    for name in ("dr03TkSumPt", "dr03EcalRecHitSumEt"):
        assert np.array_equal(rebuilt[name], electron[name]), name
    # the file exercises every cutBased level but one and both outcomes of the WP flags
    assert {0, 1, 2, 4} <= set(np.unique(stored["cutBased"]))
    assert 0 < np.mean(stored["mvaFall17V2Iso_WP80"]) < 1


def test_hidden_columns_and_levels(real_electrons):
    electron, rho = real_electrons
    hidden = hidden_from_bitmaps(electron)
    assert set(hidden) == set(HIDDEN)
    assert set(np.unique(hidden["vid_dEtaInSeed"])) <= {0, 1, 2, 3, 4}
    assert set(np.unique(hidden["heep_E2x5"])) <= {0, 1}
    levels = cut_levels(electron | hidden, rho)
    assert np.array_equal(levels.min(axis=1), electron["cutBased"])


def test_true_matching_values_give_levels_and_tighter_v1_isolation():
    """With the absolute matching values (reference detector) the levels follow the thresholds."""
    n = 4
    electron = {
        "pt": np.full(n, 40.0), "eCorr": np.ones(n), "eta": np.zeros(n), "deltaEtaSC": np.zeros(n),
        "sieie": np.full(n, 0.009), "hoe": np.zeros(n), "eInvMinusPInv": np.zeros(n),
        "pfRelIso03_all": np.array([0.0, 0.045, 0.10, 0.5]), "convVeto": np.ones(n, bool),
        "lostHits": np.zeros(n, np.uint8),
        "dEtaInSeed": np.array([0.001, 0.003, 0.0037, 0.01]), "dPhiIn": np.full(n, 0.01),
    }
    v2 = cut_levels(electron, np.full(n, 20.0), FALL17_V2)
    assert v2[:, 2].tolist() == [4, 3, 2, 0]  # dEtaInSeed: tight 0.00255, medium 0.0032, veto 0.00463
    assert v2[:, 7].tolist() == [4, 3, 2, 0]  # isolation 0.0287/0.0478/0.112/0.198 + 0.506/pT
    v1 = cut_levels(electron, np.full(n, 20.0), FALL17_V1)
    assert v1[:, 7].tolist() == [4, 3, 2, 0]
    assert v1[:, 2].tolist() == [4, 4, 2, 0]
