r"""Angular distances of particles in the :math:`(\eta, \phi)` plane, for flat or jagged arrays.

The one implementation for numpy arrays and plain awkward arrays (the reference detector's
flat particle lists, the object modules' columns); where events are coffea NanoEvents,
use coffea's vector methods (``a.delta_r(b)``, ``a.nearest(b)``) instead. Both functions
are numpy ufunc expressions, so they broadcast like any numpy or awkward arithmetic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["delta_phi", "delta_r"]


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
