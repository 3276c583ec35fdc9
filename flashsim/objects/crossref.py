r"""Cross-references between simulated collections, rebuilt after pT ordering.

* :func:`merge_jets` concatenates matched and fake jets per event, applies NanoAOD's
  :math:`p_T > 15` GeV storage cut to the sampled :math:`p_T` (:data:`JET_PT_MIN`) and
  orders by :math:`p_T` (``genJetIdx`` keeps pointing into GenJet, so it needs no rewrite).
* :func:`link` associates each muon with the nearest jet within :math:`\Delta R < 0.4`
  (``Muon_jetIdx``, -1 if none) and fills ``Jet_nMuons``, ``Jet_muonIdx1/2`` with the
  first two (highest-:math:`p_T`) muons pointing to each jet, as NanoAOD does with the
  jet's muon daughters. Muons must already be :math:`p_T`-ordered.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.objects.common import nearest

__all__ = ["JET_PT_MIN", "link", "merge_jets"]

_CONE = 0.4
JET_PT_MIN = 15.0
"""NanoAOD stores AK4 jets with corrected pT above this (GeV); the models are trained on
those, but a sampled pT can still fall below it, and such a jet would not be stored."""


def merge_jets(matched: ak.Array, fake: ak.Array) -> ak.Array:
    """Matched + fake jets of every event with :math:`p_T >` :data:`JET_PT_MIN`,
    :math:`p_T`-ordered."""
    jets = ak.concatenate([matched, fake], axis=1)
    jets = jets[jets.pt > JET_PT_MIN]
    return jets[ak.argsort(jets.pt, axis=1, ascending=False)]


def link(muons: ak.Array, jets: ak.Array) -> tuple[ak.Array, ak.Array]:
    """Return ``(muons, jets)`` with ``jetIdx`` / ``nMuons``, ``muonIdx1``, ``muonIdx2`` set."""
    dr, index = nearest(muons.eta, muons.phi, jets.eta, jets.phi)
    jet_idx = ak.values_astype(ak.where(dr < _CONE, index, -1), np.int32)
    # owner[e][j][m]: muon m of event e points to jet j (muons in pT order, so the
    # first True positions are the leading muons)
    owner = jet_idx[:, None, :] == ak.local_index(jets.pt, axis=1)[:, :, None]
    n_muons = ak.values_astype(ak.sum(owner, axis=2), np.int32)
    muon_index = ak.local_index(owner, axis=2)[owner]
    padded = ak.fill_none(ak.pad_none(muon_index, 2, axis=2, clip=True), -1)
    muons = ak.with_field(muons, jet_idx, "jetIdx")
    jets = ak.with_field(jets, n_muons, "nMuons")
    jets = ak.with_field(jets, ak.values_astype(padded[:, :, 0], np.int32), "muonIdx1")
    jets = ak.with_field(jets, ak.values_astype(padded[:, :, 1], np.int32), "muonIdx2")
    return muons, jets
