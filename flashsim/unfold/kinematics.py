r"""Four-vectors as ``(n, 4)`` arrays :math:`(E, p_x, p_y, p_z)` and the invertible
decay-chain coordinates the unfolding flows model.

A flow needs a parametrisation without exact constraints (a density on a lower-dimensional
surface has no finite likelihood). Momentum conservation ties a resonance to its decay
products, so each resonance :math:`R \to a\,b` with massless :math:`a, b` (GenPart stores
mass 0 below 10 GeV) is described once, by

* the resonance: :math:`m`, :math:`p_T`, rapidity :math:`y`, :math:`\phi`
  (:func:`resonance_coordinates`), and
* the direction of daughter :math:`a` in the resonance rest frame reached by a pure boost
  from the lab: :math:`\cos\theta^*`, :math:`\phi^*` (:func:`decay_angles`).

:func:`decay` inverts the second: with :math:`|p^*| = (m_R^2 - m_b^2)/(2 m_R)` for a massless
:math:`a`, it rebuilds :math:`a` and :math:`b = R - a` in the lab exactly. Every function
is vectorised over events.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "decay",
    "decay_angles",
    "from_pt_eta_phi_m",
    "from_resonance_coordinates",
    "log_energy",
    "mass",
    "pseudorapidity",
    "pt",
    "phi",
    "resonance_coordinates",
    "rotate_z",
]


def from_pt_eta_phi_m(pt, eta, phi, m) -> np.ndarray:
    """``(n, 4)`` four-vectors from :math:`p_T, \\eta, \\phi, m`."""
    pt, eta, phi, m = (np.asarray(v, dtype=np.float64) for v in (pt, eta, phi, m))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    return np.stack([energy, px, py, pz], axis=-1)


def pt(p: np.ndarray) -> np.ndarray:
    """Transverse momentum."""
    return np.hypot(p[..., 1], p[..., 2])


def phi(p: np.ndarray) -> np.ndarray:
    """Azimuth in :math:`(-\\pi, \\pi]`."""
    return np.arctan2(p[..., 2], p[..., 1])


def pseudorapidity(p: np.ndarray) -> np.ndarray:
    """:math:`\\eta = \\operatorname{asinh}(p_z/p_T)`."""
    return np.arcsinh(p[..., 3] / np.maximum(pt(p), 1e-12))


def mass(p: np.ndarray) -> np.ndarray:
    """Invariant mass, :math:`\\sqrt{\\max(E^2 - |p|^2, 0)}`."""
    return np.sqrt(np.maximum(p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1), 0.0))


def log_energy(p: np.ndarray) -> np.ndarray:
    """:math:`\\log E` (E in GeV), as Shmakov et al. (arXiv:2305.10399) parametrise partons."""
    return np.log(np.maximum(p[..., 0], 1e-12))


def rotate_z(p: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate four-vectors about the beam axis by ``angle`` (one per event)."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.array(p, dtype=np.float64, copy=True)
    out[..., 1] = c * p[..., 1] - s * p[..., 2]
    out[..., 2] = s * p[..., 1] + c * p[..., 2]
    return out


def resonance_coordinates(p: np.ndarray) -> dict[str, np.ndarray]:
    """:math:`m, p_T, y, \\phi` of four-vectors (``m``, ``pt``, ``y``, ``phi``)."""
    rapidity = 0.5 * np.log((p[..., 0] + p[..., 3]) / np.maximum(p[..., 0] - p[..., 3], 1e-12))
    return {"m": mass(p), "pt": pt(p), "y": rapidity, "phi": phi(p)}


def from_resonance_coordinates(m, pt_, y, phi_) -> np.ndarray:
    """Inverse of :func:`resonance_coordinates`: :math:`m_T = \\sqrt{m^2 + p_T^2}`,
    :math:`E = m_T\\cosh y`, :math:`p_z = m_T\\sinh y`."""
    m, pt_, y, phi_ = (np.asarray(v, dtype=np.float64) for v in (m, pt_, y, phi_))
    mt = np.sqrt(m**2 + pt_**2)
    return np.stack([mt * np.cosh(y), pt_ * np.cos(phi_), pt_ * np.sin(phi_), mt * np.sinh(y)],
                    axis=-1)


def _boost(p: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz boost of ``p`` by velocity ``beta`` (``(n, 3)``): the frame moving with
    :math:`-\\beta` sees ``p`` boosted by :math:`+\\beta`."""
    b2 = np.sum(beta**2, axis=-1)
    gamma = 1.0 / np.sqrt(np.maximum(1.0 - b2, 1e-300))
    bp = np.sum(beta * p[..., 1:], axis=-1)
    gamma2 = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    energy = gamma * (p[..., 0] + bp)
    space = p[..., 1:] + (gamma2 * bp + gamma * p[..., 0])[..., None] * beta
    return np.concatenate([energy[..., None], space], axis=-1)


def decay_angles(parent: np.ndarray, daughter: np.ndarray) -> dict[str, np.ndarray]:
    """:math:`\\cos\\theta^*` and :math:`\\phi^*` of ``daughter`` in the rest frame of
    ``parent`` (reached by a pure boost; axes parallel to the lab's)."""
    rest = _boost(daughter, -parent[..., 1:] / parent[..., :1])
    size = np.maximum(np.linalg.norm(rest[..., 1:], axis=-1), 1e-12)
    return {"cos": np.clip(rest[..., 3] / size, -1.0, 1.0),
            "phi": np.arctan2(rest[..., 2], rest[..., 1])}


def decay(parent: np.ndarray, other_mass: np.ndarray, cos: np.ndarray,
          phi_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The massless daughter :math:`a` with rest-frame direction ``(cos, phi)`` and the
    recoiling :math:`b = R - a` of mass ``other_mass``, both in the lab.

    :math:`|p^*| = (m_R^2 - m_b^2) / (2 m_R)`, clipped at 0 when :math:`m_b > m_R`.
    """
    m_parent = mass(parent)
    momentum = np.maximum(m_parent**2 - np.asarray(other_mass) ** 2, 0.0) / (
        2.0 * np.maximum(m_parent, 1e-12))
    sin = np.sqrt(np.maximum(1.0 - cos**2, 0.0))
    rest = np.stack([momentum, momentum * sin * np.cos(phi_), momentum * sin * np.sin(phi_),
                     momentum * cos], axis=-1)
    daughter = _boost(rest, parent[..., 1:] / parent[..., :1])
    return daughter, parent - daughter
