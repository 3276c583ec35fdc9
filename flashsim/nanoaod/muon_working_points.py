r"""Muon working-point branches that CMS NanoAOD computes from other Muon branches.

``pfIsoId`` (PFIsoVeryLoose … VeryVeryTight on ``pfRelIso04_all``), ``miniIsoId``
(MiniIsoLoose … VeryTight on ``miniPFRelIso_all``), ``tkIsoId`` (TkIsoLoose, Tight on
``tkRelIso``), ``mvaId`` (MvaLoose … Tight on ``mvaTTH``, medium muons only), ``softMvaId``
(``softMva`` > 0.58) and ``mediumPromptId`` (medium with |dxy| < 0.02 cm, |dz| < 0.1 cm):
each is a count of thresholds passed, as in the Muon POG selectors. ``multiIsoId``
(:func:`multi_iso_id`) also needs the muon's jet. The reference
detector and the flash simulation both take them from here, so in flash output they are
consistent with the simulated isolation, MVA and impact-parameter values by construction
instead of being sampled beside them.

The cut-based IDs ``mediumId``, ``tightId``, ``softId`` and ``highPtId`` (muon POG,
SWGuideMuonIdRun2) also cut on variables NanoAOD does not store (normalised chi2, muon-chamber
and pixel hits, valid-hit fraction, kink). Each splits into its cuts on stored branches
(:func:`stored_requirements`) and one bit, its :data:`HIDDEN` column, for the outcome of the
rest; :func:`cut_based_ids` rebuilds the ID as their AND. A sampled ID bit could contradict the
sampled branches (flash output of models that sampled ``tightId``: 7.6% of its tight muons
failed a stored tight cut, and 6.3% were tight with :math:`\sigma_{p_T}/p_T < 0.3` but not
global high-pT, where the reference detector has none of either). Where the stored cuts
already fail, the hidden outcome is unobserved: :func:`hidden_from_ids` records it as passed,
which keeps a hidden column near-constant (it passes for 98% of the reference detector's
tight candidates) instead of tying it to the stored cuts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["CUT_BASED_IDS", "DERIVED_IDS", "HIDDEN", "STORED_INPUTS", "cut_based_ids", "derived_ids", "hidden_from_ids",
           "loose_id", "multi_iso_id", "stored_requirements"]

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


#: hidden column -> the cut-based ID (and, for ``highPtId``, the algorithm) it completes
HIDDEN = {"mediumId_hidden": "mediumId", "tightId_hidden": "tightId", "softId_hidden": "softId",
          "highPtId_global_hidden": "highPtId_global",
          "highPtId_tracker_hidden": "highPtId_tracker"}
CUT_BASED_IDS = ("mediumId", "tightId", "softId", "highPtId")
#: the stored branches :func:`stored_requirements` reads
STORED_INPUTS = ("isGlobal", "isTracker", "isPFcand", "nStations", "nTrackerLayers",
                 "segmentComp", "dxy", "dz", "ptErr", "pt")


def loose_id(muon: Mapping) -> np.ndarray:
    """The muon POG loose ID, all of whose cuts are on stored branches: ``isPFcand`` and
    (``isGlobal`` or ``isTracker``)."""
    return (muon["isPFcand"] > 0) & ((muon["isGlobal"] > 0) | (muon["isTracker"] > 0))


def stored_requirements(muon: Mapping) -> dict:
    r"""The cuts of each cut-based ID on stored branches (numpy or awkward columns):

    - medium: loose and (global with ``segmentComp`` > 0.303, or ``segmentComp`` > 0.451);
    - tight: global, PF, ``nStations`` :math:`\ge 2`, :math:`|d_{xy}| < 0.2`,
      :math:`|d_z| < 0.5` cm, ``nTrackerLayers`` > 5;
    - soft: tracker, ``nStations`` :math:`\ge 1`, ``nTrackerLayers`` > 5,
      :math:`|d_{xy}| < 0.3`, :math:`|d_z| < 20` cm;
    - high-pT global (``highPtId`` 2) / tracker (1): global / tracker, ``nStations``
      :math:`\ge 2`, :math:`\sigma_{p_T}/p_T < 0.3`, :math:`|d_{xy}| < 0.2`,
      :math:`|d_z| < 0.5` cm, ``nTrackerLayers`` > 5.
    """
    glob, trk, pf = muon["isGlobal"] > 0, muon["isTracker"] > 0, muon["isPFcand"] > 0
    stations, layers, seg = muon["nStations"], muon["nTrackerLayers"] > 5, muon["segmentComp"]
    adxy, adz = abs(muon["dxy"]), abs(muon["dz"])
    prompt = (adxy < 0.2) & (adz < 0.5) & layers
    high_pt = (stations >= 2) & (muon["ptErr"] / muon["pt"] < 0.3) & prompt
    return {"mediumId": loose_id(muon) & ((glob & (seg > 0.303)) | (seg > 0.451)),
            "tightId": glob & pf & (stations >= 2) & prompt,
            "softId": trk & (stations >= 1) & layers & (adxy < 0.3) & (adz < 20.0),
            "highPtId_global": glob & high_pt, "highPtId_tracker": trk & high_pt}


def hidden_from_ids(muon: Mapping) -> dict:
    """The :data:`HIDDEN` columns of stored IDs (training): the ID where its stored cuts
    pass, passed where they fail (unobserved there, module doc); for ``highPtId`` the
    tracker outcome is also unobserved where the global algorithm passed."""
    required = stored_requirements(muon)
    ids = {name: muon[name] > 0 for name in CUT_BASED_IDS[:3]}
    ids["highPtId_global"] = muon["highPtId"] == 2
    ids["highPtId_tracker"] = (muon["highPtId"] == 1) | ids["highPtId_global"]
    return {hidden: ids[name] | ~required[name] for hidden, name in HIDDEN.items()}


def cut_based_ids(muon: Mapping[str, np.ndarray], hidden: Mapping[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """``mediumId``, ``tightId``, ``softId``, ``highPtId`` from the stored branches and the
    :data:`HIDDEN` outcomes (flat numpy columns): each ID's stored cuts and its hidden bit."""
    required = stored_requirements(muon)
    passed = {name: required[name] & (np.asarray(hidden[h]) > 0) for h, name in HIDDEN.items()}
    high = np.where(passed.pop("highPtId_global"), 2,
                    np.where(passed.pop("highPtId_tracker"), 1, 0)).astype(np.uint8)
    return {**passed, "highPtId": high}


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
