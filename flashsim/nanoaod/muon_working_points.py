"""Muon working-point branches that CMS NanoAOD computes from other Muon branches.

``pfIsoId`` (PFIsoVeryLoose … VeryVeryTight on ``pfRelIso04_all``), ``miniIsoId``
(MiniIsoLoose … VeryTight on ``miniPFRelIso_all``), ``tkIsoId`` (TkIsoLoose, Tight on
``tkRelIso``), ``mvaId`` (MvaLoose … Tight on ``mvaTTH``, medium muons only), ``softMvaId``
(``softMva`` > 0.58) and ``mediumPromptId`` (medium with |dxy| < 0.02 cm, |dz| < 0.1 cm):
each is a count of thresholds passed, as in the Muon POG selectors. ``multiIsoId``
(:func:`multi_iso_id`) also needs the muon's jet. The reference
detector and the flash simulation both take them from here, so in flash output they are
consistent with the simulated isolation, MVA and impact-parameter values by construction
instead of being sampled beside them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["DERIVED_IDS", "derived_ids", "multi_iso_id"]

PF_ISO_WPS = (0.40, 0.25, 0.20, 0.15, 0.10, 0.05)
MINI_ISO_WPS = (0.40, 0.20, 0.10, 0.05)
TK_ISO_WPS = (0.10, 0.05)
MVA_TTH_WPS = (-0.6, -0.2, 0.15)
SOFT_MVA_WP = 0.58
#: MultiIsoLoose, MultiIsoMedium: (miniPFRelIso_all below, ptRatio above, or ptRel above)
MULTI_ISO_WPS = ((0.16, 0.76, 7.2), (0.12, 0.80, 7.2))


def _passed(x: np.ndarray, thresholds: tuple[float, ...], below: bool = True) -> np.ndarray:
    x = np.asarray(x)[..., None]
    return np.sum(x < thresholds if below else x > thresholds, axis=-1).astype(np.uint8)


def _medium(muon: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(muon["mediumId"]).astype(bool)


#: branch -> (the branches it is computed from, how)
_RULES = {
    "pfIsoId": (("pfRelIso04_all",), lambda m: _passed(m["pfRelIso04_all"], PF_ISO_WPS)),
    "miniIsoId": (("miniPFRelIso_all",), lambda m: _passed(m["miniPFRelIso_all"], MINI_ISO_WPS)),
    "tkIsoId": (("tkRelIso",), lambda m: _passed(m["tkRelIso"], TK_ISO_WPS)),
    "mvaId": (("mvaTTH", "mediumId"),
              lambda m: _passed(m["mvaTTH"], MVA_TTH_WPS, below=False) * _medium(m)),
    "softMvaId": (("softMva",), lambda m: np.asarray(m["softMva"]) > SOFT_MVA_WP),
    "mediumPromptId": (("mediumId", "dxy", "dz"), lambda m: _medium(m)
                       & (np.abs(m["dxy"]) < 0.02) & (np.abs(m["dz"]) < 0.1)),
}
DERIVED_IDS = tuple(_RULES)


def multi_iso_id(mini_iso: np.ndarray, pt_ratio: np.ndarray, pt_rel: np.ndarray) -> np.ndarray:
    r"""``multiIsoId``: the number of :data:`MULTI_ISO_WPS` passed, each mini-isolation below
    its cut and either the ratio of the muon's :math:`p_T` to its jet's (``ptRatio``,
    :math:`1/(1 + \text{jetRelIso})`; 1 for a muon in no jet) or ``jetPtRelv2`` above its.
    It needs the muon's jet, so it is not among :data:`DERIVED_IDS`.

    >>> multi_iso_id(np.array([0.14, 0.05, 0.05]), np.array([0.9, 0.5, 0.5]),
    ...              np.array([0.0, 8.0, 1.0])).tolist()
    [1, 2, 0]
    """
    return sum(((mini_iso < iso) & ((pt_ratio > ratio) | (pt_rel > rel))).astype(np.uint8)
               for iso, ratio, rel in MULTI_ISO_WPS)


def derived_ids(muon: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`DERIVED_IDS` branches computable from the flat Muon columns in ``muon``
    (a branch whose inputs are missing is left out)."""
    return {name: rule(muon) for name, (inputs, rule) in _RULES.items()
            if all(i in muon for i in inputs)}
