r"""Particle classes from PDG Monte Carlo particle numbers, vectorised.

The PDG numbering scheme (Review of Particle Physics, "Monte Carlo particle numbering
scheme") writes a code as :math:`\pm n\, n_r\, n_L\, n_{q_1} n_{q_2} n_{q_3} n_J`: for
hadrons the digits :math:`n_{q_1} n_{q_2} n_{q_3}` are the quark content (mesons have
:math:`n_{q_1} = 0` and the heavier quark in :math:`n_{q_2}`; baryons list their quarks
in descending order, so :math:`n_{q_1}` is the heaviest), :math:`n_J = 2J + 1`, and
:math:`n_r, n_L, n` mark excitations and non-standard states.

Every function takes an integer array (numpy, or awkward for the digit tests, whose
arithmetic is element-wise) of signed codes and works on :math:`|{\rm code}|`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOTTOM",
    "CHARGED_LEPTONS",
    "CHARM",
    "NEUTRINOS",
    "has_heavy_quark",
    "has_quark",
    "is_charged_lepton",
    "is_hadron",
    "is_neutrino",
    "quark_digits",
]

CHARM = 4
BOTTOM = 5
CHARGED_LEPTONS = (11, 13, 15)
"""e, mu, tau."""
NEUTRINOS = (12, 14, 16)
"""nu_e, nu_mu, nu_tau: the invisible particles of the Standard Model."""


def quark_digits(pdg):
    r"""The quark digits :math:`(n_{q_1}, n_{q_2}, n_{q_3})` of every code."""
    a = abs(pdg)
    return (a // 1000) % 10, (a // 100) % 10, (a // 10) % 10


def is_hadron(pdg: np.ndarray) -> np.ndarray:
    r"""HepPDT-like hadron test: :math:`100 < |{\rm code}| < 10^6` with :math:`n_{q_2}` and
    :math:`n_{q_3}` both non-zero (mesons and baryons; diquarks have :math:`n_{q_3} = 0`)."""
    a = np.abs(pdg)
    _, q2, q3 = quark_digits(a)
    return (a > 100) & (a < 1_000_000) & (q2 > 0) & (q3 > 0)


def has_quark(pdg: np.ndarray, quark: int) -> np.ndarray:
    """Hadrons with ``quark`` (1..6) anywhere in their quark content (for b or c ghosts)."""
    q1, q2, q3 = quark_digits(pdg)
    return is_hadron(pdg) & ((q1 == quark) | (q2 == quark) | (q3 == quark))


def has_heavy_quark(pdg, quark: int):
    r"""Codes whose :math:`n_{q_1}` or :math:`n_{q_2}` digit is ``quark``: the heavier quark
    of a meson, one of the two heaviest of a baryon; the heavy flavour of a decaying hadron
    as CMS's ``CandMCMatchTableProducer`` reads it (``id / 1000``, ``id / 100``).  No hadron
    test: a diquark (``5101``) passes, a bare quark (``5``) does not.

    Works on awkward arrays too.
    """
    q1, q2, _ = quark_digits(pdg)
    return (q1 == quark) | (q2 == quark)


def is_charged_lepton(pdg: np.ndarray) -> np.ndarray:
    """e, mu or tau (either charge)."""
    return np.isin(np.abs(pdg), CHARGED_LEPTONS)


def is_neutrino(pdg: np.ndarray) -> np.ndarray:
    """A Standard-Model neutrino or antineutrino."""
    return np.isin(np.abs(pdg), NEUTRINOS)
