r"""Angular distances of particles in the :math:`(\eta, \phi)` plane, and a lepton's momentum
relative to its jet, for flat or jagged arrays.

The one implementation for numpy arrays and plain awkward arrays (the reference detector's
flat particle lists, the object modules' columns); where events are coffea NanoEvents,
use coffea's vector methods (``a.delta_r(b)``, ``a.nearest(b)``) instead. The functions
are numpy ufunc expressions, so they broadcast like any numpy or awkward arithmetic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["delta_phi", "delta_r", "pt_rel"]


def delta_phi(a, b):
    r""":math:`\Delta\phi = a - b` wrapped into :math:`[-\pi, \pi)`.

    >>> float(delta_phi(3.0, -3.0))  # 6 rad the long way round is 2π − 6 the short way
    -0.28318530717958623
    """
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1, phi1, eta2, phi2):
    r""":math:`\Delta R = \sqrt{\Delta\eta^2 + \Delta\phi^2}` (``np.hypot``, no overflow).

    >>> float(delta_r(0.0, 3.0, 0.0, -3.0))
    0.28318530717958623
    """
    return np.hypot(eta1 - eta2, delta_phi(phi1, phi2))


def pt_rel(pt, eta, phi, jet_pt, jet_eta, jet_phi):
    r"""The lepton momentum transverse to the axis of the rest of its jet,
    :math:`|\vec p_\ell \times \vec a| / |\vec a|` with :math:`\vec a = \vec p_j - \vec p_\ell`
    (NanoAOD's ``jetPtRelv2``, ``LeptonJetVarProducer``); 0 where the jet is the lepton.

    >>> round(float(pt_rel(10.0, 0.0, 0.0, 20.0, 0.0, 0.1)), 3)  # rest at 0.2 rad: 10 sin 0.2
    1.977
    """
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    ax, ay, az = (jet_pt * np.cos(jet_phi) - px, jet_pt * np.sin(jet_phi) - py,
                  jet_pt * np.sinh(jet_eta) - pz)
    cross = np.sqrt((py * az - pz * ay) ** 2 + (pz * ax - px * az) ** 2 + (px * ay - py * ax) ** 2)
    return cross / np.maximum(np.sqrt(ax**2 + ay**2 + az**2), 1e-9)
