r"""NanoAOD's MC truth matching of reconstructed leptons to GenPart, on flat arrays.

:func:`gen_match` follows ``PhysicsTools/NanoAOD/python/{muons,electrons}_cff.py``:

* ``MCMatcher``: status-1 GenPart whose :math:`|\text{pdgId}|` is one of the requested ids
  (muons 13; electrons 11 and 22), :math:`\Delta R < 0.3`, :math:`|\Delta p_T| / p_T^{gen}
  < 0.5`; ambiguities resolved, best :math:`\Delta R` first (``resolveByMatchQuality``);
* ``CandMCMatchTableProducer`` flavour: 1 prompt (22 for a prompt photon: electrons from
  conversions), 15 direct prompt-tau decay product, else the heaviest hadron flavour up the
  mother chain (5 b, 4 c, 3 light or none); 0 unmatched.

The reference detector matches its leptons with it, and the flash simulation the electrons it
makes from jets, so both carry the same ``genPartIdx``/``genPartFlav`` convention.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.pdg import BOTTOM, CHARM, has_heavy_quark

__all__ = ["gen_match"]

_MAX_GENERATIONS = 64


def _flat(array, field) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array[field], axis=None))


def _heavy(aid: np.ndarray, flavour: int) -> np.ndarray:
    """A quark of ``flavour`` (b = 5, c = 4) or a hadron of that heavy flavour."""
    return (aid == flavour) | has_heavy_quark(aid, flavour)


def gen_match(lepton: dict, genpart: ak.Array, n_events: int, pdg_ids: tuple[int, ...],
              max_dr: float = 0.3, max_dpt: float = 0.5,
              taken: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(genPartIdx, genPartFlav)`` of leptons (flat ``evt, pt, eta, phi``, events
    ``0..n_events-1``) against ``genpart`` (module doc). ``taken``: global GenPart indices
    that other leptons already matched (excluded)."""
    # the reference detector imports this module, so its matching helpers load here
    from flashsim.refdet.matching import match_unique

    gcount = ak.to_numpy(ak.num(genpart, axis=1))
    goff = np.concatenate([[0], np.cumsum(gcount)])
    gevt = np.repeat(np.arange(n_events), gcount)
    g_pt, g_eta, g_phi = (_flat(genpart, f).astype(np.float64) for f in ("pt", "eta", "phi"))
    g_id, g_status = _flat(genpart, "pdgId"), _flat(genpart, "status")
    g_flags, g_mother = _flat(genpart, "statusFlags"), _flat(genpart, "genPartIdxMother")
    allowed = np.isin(np.abs(g_id), pdg_ids) & (g_status == 1)
    if taken is not None:
        allowed[taken] = False
    cand = np.flatnonzero(allowed)

    def compatible(ia, ib):
        return np.abs(lepton["pt"][ia] - g_pt[cand][ib]) < max_dpt * g_pt[cand][ib]

    hit = match_unique(lepton["evt"], lepton["eta"], lepton["phi"], gevt[cand], g_eta[cand],
                       g_phi[cand], n_events, max_dr, compatible)
    gidx = np.where(hit >= 0, cand[np.maximum(hit, 0)], -1)
    matched = gidx >= 0
    flags = g_flags[np.maximum(gidx, 0)]
    prompt = matched & ((flags & 1) != 0)
    from_tau = matched & ~prompt & ((flags & (1 << 5)) != 0)
    has_b = np.zeros(len(gidx), bool)
    has_c = np.zeros(len(gidx), bool)
    base = goff[lepton["evt"]] if len(gidx) else np.zeros(0, np.int64)
    cur = np.where(matched, g_mother[np.maximum(gidx, 0)], -1)
    for _ in range(_MAX_GENERATIONS):  # the mother chain, generation by generation
        alive = cur >= 0
        if not alive.any():
            break
        aid = np.abs(g_id[np.where(alive, base + cur, 0)])
        has_b |= alive & _heavy(aid, BOTTOM)
        has_c |= alive & _heavy(aid, CHARM)
        cur = np.where(alive, g_mother[np.where(alive, base + cur, 0)], -1)
    flav = np.zeros(len(gidx), np.uint8)
    flav[matched] = 3
    flav[matched & has_c] = 4
    flav[matched & has_b] = 5
    flav[from_tau] = 15
    flav[prompt] = np.where(np.abs(g_id[gidx[prompt]]) == 22, 22, 1)
    index = np.where(matched, gidx - goff[lepton["evt"]] if len(gidx) else 0, -1).astype(np.int32)
    return index, flav
