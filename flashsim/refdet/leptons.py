r"""What muons and electrons share: PF isolation sums, the jet a lepton belongs to, impact
parameters, GEN matching with its flavour of origin, the ttH lepton MVA and the cross-links
to jets, all on flat arrays grouped by event.

- Isolation: the PF candidates within :math:`\Delta R < 0.4` of a lepton (its own candidate
  and, for electrons, its supercluster footprint excluded) are summed per cone and kind:
  charged hadrons kept by CHS, any track kept by CHS, charged pileup (CHS-removed), neutrals.
- Jet variables (NanoAOD ``LeptonJetVarProducer``): the lepton's jet is the stored jet that
  contains its PF candidate; ``jetRelIso`` = :math:`1/\text{ptRatio} - 1`
  (``pfRelIso04_all`` without a jet) and ``jetPtRelv2`` = the lepton momentum transverse to
  the (jet - lepton) axis.
- ``ip3d`` = :math:`\sqrt{d_{xy}^2 + (d_z \sin\theta)^2}`, ``sip3d`` its significance.
- GEN matching: :func:`flashsim.nanoaod.mc_match.gen_match` (NanoAOD's ``MCMatcher``).
- Jet links (NanoAOD ``PATObjectCrossLinker``): ``X_jetIdx`` and the jet's ``XIdx1/2``
  (first two linked leptons in :math:`p_T` order) and ``nX`` (all linked leptons).
"""

from __future__ import annotations

import numpy as np

from flashsim.kinematics import pt_rel
from flashsim.refdet.calorimeter import KIND_CH, KIND_MU, KIND_NH, KIND_PHO
from flashsim.refdet.matching import event_offsets, local_index, pairs_near

__all__ = [
    "IsolationPairs",
    "footprint_keys",
    "impact_parameters",
    "jet_links",
    "jet_variables",
    "mva_tth",
    "pf_index_of",
]

_ISO_CONE = 0.4


class IsolationPairs:
    """(lepton, PF candidate) pairs within :math:`\\Delta R < 0.4`, own candidate excluded,
    with the PF kind, :math:`p_T`, :math:`\\Delta R` and pileup decision of every pair:
    CHS-removed, or with ``pv_dz = (dz per candidate, window)`` also any track farther than
    the window from the PV in z (tracks too soft for a vertex fit, associated to the closest
    vertex as CMS's PF pileup association does)."""

    def __init__(self, lepton: dict, pf: dict, pf_chs: np.ndarray,
                 footprint: np.ndarray | None = None, pv_dz: tuple | None = None):
        ia, ib, deta, dphi = pairs_near(lepton["evt"], lepton["eta"], lepton["phi"], pf["evt"],
                                        pf["eta"], pf["phi"], _ISO_CONE, _ISO_CONE)
        dr = np.hypot(deta, dphi)
        keep = (dr < _ISO_CONE) & (pf["src"][ib] != lepton["src"][ia])
        if footprint is not None:
            keep &= ~in_footprint(footprint, ia, ib)
        self.ia, self.ib, self.dr = ia[keep], ib[keep], dr[keep]
        self.n = len(lepton["evt"])
        self.kind = pf["kind"][self.ib]
        self.pt = pf["pt"][self.ib]
        self.chs = pf_chs[self.ib]
        if pv_dz is not None:  # (track dz per PF candidate, window): tracks further away are pileup
            track_dz, window = pv_dz
            self.chs = self.chs | (np.abs(track_dz[self.ib]) > window)

    @property
    def charged_pv(self) -> np.ndarray:
        """Charged hadrons kept by CHS (the isolation's charged part)."""
        return (self.kind == KIND_CH) & ~self.chs & (self.dr > 1e-4)

    @property
    def any_track(self) -> np.ndarray:
        """Any track (hadron, electron, muon) kept by CHS."""
        return (self.kind <= KIND_MU) & ~self.chs & (self.dr > 1e-4)

    @property
    def charged_pu(self) -> np.ndarray:
        """Tracks of resolved pileup vertices (removed by CHS)."""
        return (self.kind <= KIND_MU) & self.chs & (self.dr > 1e-4)

    @property
    def neutral(self) -> np.ndarray:
        """Neutral hadrons and photons."""
        return (self.kind == KIND_NH) | (self.kind == KIND_PHO)

    def total(self, mask: np.ndarray, cone) -> np.ndarray:
        """Per lepton: summed :math:`p_T` of the pairs in ``mask`` inside ``cone`` (a number or
        one radius per lepton)."""
        cone = cone[self.ia] if np.ndim(cone) else cone
        inside = mask & (self.dr < cone)
        return np.bincount(self.ia[inside], weights=self.pt[inside], minlength=self.n)


def footprint_keys(lepton: np.ndarray, pf: np.ndarray) -> np.ndarray:
    """Sorted keys of (lepton, PF candidate) pairs, for :class:`IsolationPairs` ``footprint``:
    candidates that are part of the lepton itself (an electron's supercluster)."""
    return np.sort(lepton.astype(np.int64) * (1 << 32) + pf)


def in_footprint(keys: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Whether each (lepton ``ia``, PF ``ib``) pair is among the :func:`footprint_keys`."""
    if len(keys) == 0:
        return np.zeros(len(ia), bool)
    key = ia.astype(np.int64) * (1 << 32) + ib
    return keys[np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)] == key


def pf_index_of(pf: dict, particle: np.ndarray) -> np.ndarray:
    """The PF candidate made from each particle index (-1 if none)."""
    size = int(max(pf["src"].max(initial=-1), particle.max(initial=-1))) + 1
    table = np.full(max(size, 1), -1, np.int64)
    table[pf["src"]] = np.arange(len(pf["src"]))
    return np.where(particle >= 0, table[np.maximum(particle, 0)], -1)


def jet_variables(lepton: dict, candidate: np.ndarray, pf_jet: np.ndarray, jets: dict,
                  rel_iso04: np.ndarray) -> dict:
    """``_jet_global`` (stored jet holding PF candidate ``candidate``, -1 if none),
    ``jetRelIso`` and ``jetPtRelv2`` (module doc) of leptons with ``pt, eta, phi``."""
    jet = np.where(candidate >= 0, pf_jet[np.maximum(candidate, 0)], -1)
    has = jet >= 0
    j = np.maximum(jet, 0)
    pt, eta, phi = lepton["pt"], lepton["eta"], lepton["phi"]
    if len(jets["pt"]):
        jpt, jeta, jphi = (np.where(has, jets[k][j], 0.0) for k in ("pt", "eta", "phi"))
    else:
        jpt = jeta = jphi = np.zeros(len(pt))
    ratio = np.where(has, pt / np.maximum(jpt, 1e-9), 1.0)
    return {"_jet_global": jet, "_pt_ratio": ratio,
            "jetRelIso": np.where(has, 1.0 / ratio - 1.0, rel_iso04),
            "jetPtRelv2": np.where(has, pt_rel(pt, eta, phi, jpt, jeta, jphi), 0.0)}


def impact_parameters(lepton: dict) -> dict:
    """``ip3d`` and ``sip3d`` from ``dxy, dz, dxyErr, dzErr`` (cm) and ``eta``."""
    sin_theta = 1.0 / np.cosh(lepton["eta"])
    ip3d = np.hypot(lepton["dxy"], lepton["dz"] * sin_theta)
    return {"ip3d": ip3d, "sip3d": ip3d / np.hypot(lepton["dxyErr"], lepton["dzErr"] * sin_theta)}


def mva_tth(lepton: dict, good_id: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """ttH lepton-MVA-like score in (-1, 1): prompt-like leptons (isolated, small sip3d, far
    from a jet, passing ``good_id``) near 1, leptons from heavy-flavour decays near -1."""
    return np.tanh(1.8 - 8.0 * lepton["miniPFRelIso_all"] - 0.25 * lepton["sip3d"]
                   - 1.2 * np.minimum(lepton["jetRelIso"], 2.0) + 0.4 * good_id + 0.1 * noise)


def jet_links(lepton: dict, jets: dict, n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(jetIdx, jets' (n_jets, 2) lepton indices, jets' linked-lepton counts)``; leptons must be
    pT-ordered within events and carry ``_jet_global``."""
    jg = lepton["_jet_global"]
    jet_off = event_offsets(jets["evt"], n_events)
    jet_idx = np.where(jg >= 0, jg - jet_off[lepton["evt"]], -1).astype(np.int32)
    local = local_index(lepton["evt"], n_events)
    nj = len(jets["evt"])
    idx = np.full((nj, 2), -1, np.int64)
    linked = np.flatnonzero(jg >= 0)  # already in pT order, so the first two are leading
    lj = jg[linked]
    order = np.argsort(lj, kind="stable")
    lj_sorted, lm = lj[order], linked[order]
    start = np.ones(len(lj_sorted), dtype=bool)
    start[1:] = lj_sorted[1:] != lj_sorted[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(lj_sorted)), 0))
    rank = np.arange(len(lj_sorted)) - first
    two = rank < 2
    idx[lj_sorted[two], rank[two]] = local[lm[two]]
    count = np.bincount(lj, minlength=nj).astype(np.int32)
    return jet_idx, idx, count
