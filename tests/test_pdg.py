"""flashsim.pdg against known PDG Monte Carlo particle numbers."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from flashsim.pdg import (
    BOTTOM,
    CHARM,
    has_heavy_quark,
    has_quark,
    is_charged_lepton,
    is_hadron,
    is_neutrino,
    quark_digits,
)

# code: (hadron, has b, has c, heavy-quark b, heavy-quark c)
KNOWN = {
    211: (True, False, False, False, False),       # pi+
    111: (True, False, False, False, False),       # pi0
    -321: (True, False, False, False, False),      # K-
    2212: (True, False, False, False, False),      # proton
    511: (True, True, False, True, False),         # B0
    -521: (True, True, False, True, False),        # B-
    531: (True, True, False, True, False),         # Bs
    541: (True, True, True, True, False),          # Bc+: the c is n_q3
    553: (True, True, False, True, False),         # Upsilon(1S)
    10511: (True, True, False, True, False),       # B0*(0+), excited
    5122: (True, True, False, True, False),        # Lambda_b
    5132: (True, True, False, True, False),        # Xi_b-
    421: (True, False, True, False, True),         # D0
    -431: (True, False, True, False, True),        # Ds-
    443: (True, False, True, False, True),         # J/psi
    100443: (True, False, True, False, True),      # psi(2S)
    4122: (True, False, True, False, True),        # Lambda_c+
    4332: (True, False, True, False, True),        # Omega_c0
    5: (False, False, False, False, False),        # b quark
    4: (False, False, False, False, False),        # c quark
    21: (False, False, False, False, False),       # gluon
    22: (False, False, False, False, False),       # photon
    13: (False, False, False, False, False),       # muon
    5101: (False, False, False, True, False),      # (bd)_0 diquark: no hadron, n_q1 = 5
    1000022: (False, False, False, False, False),  # neutralino
}


@pytest.mark.parametrize(("code", "expected"), KNOWN.items())
def test_known_codes(code, expected):
    pdg = np.array([code, -code])
    hadron, b, c, heavy_b, heavy_c = expected
    assert is_hadron(pdg).tolist() == [hadron] * 2
    assert has_quark(pdg, BOTTOM).tolist() == [b] * 2
    assert has_quark(pdg, CHARM).tolist() == [c] * 2
    assert has_heavy_quark(pdg, BOTTOM).tolist() == [heavy_b] * 2
    assert has_heavy_quark(pdg, CHARM).tolist() == [heavy_c] * 2


def test_quark_digits():
    assert [d.tolist() for d in quark_digits(np.array([-5122, 421, 100443]))] == [
        [5, 0, 0], [1, 4, 4], [2, 2, 4]]


def test_leptons_and_neutrinos():
    pdg = np.array([11, -11, 12, -13, 14, 15, -16, 17, 22, 211])
    assert is_charged_lepton(pdg).tolist() == [True, True, False, True, False, True, False,
                                               False, False, False]
    assert is_neutrino(pdg).tolist() == [False, False, True, False, True, False, True,
                                         False, False, False]


def test_heavy_quark_on_jagged_arrays():
    codes = list(KNOWN)
    jagged = ak.Array([codes[:10], [], codes[10:]])
    flat = np.asarray(codes)
    for quark in (BOTTOM, CHARM):
        assert ak.flatten(has_heavy_quark(jagged, quark)).tolist() == \
            has_heavy_quark(flat, quark).tolist()
