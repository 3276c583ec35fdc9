r"""Cross-references between simulated collections, rebuilt after pT ordering.

* :func:`merge_jets` concatenates matched and fake jets per event, applies NanoAOD's
  :math:`p_T > 15` GeV storage cut to the sampled :math:`p_T` (:data:`JET_PT_MIN`) and
  orders by :math:`p_T` (``genJetIdx`` keeps pointing into GenJet, so it needs no rewrite).
* :func:`link` associates each lepton (muon or electron) with the nearest jet within
  :math:`\Delta R < 0.4` (``Muon_jetIdx``/``Electron_jetIdx``, -1 if none) and fills
  ``Jet_nMuons``, ``Jet_muonIdx1/2`` (``Jet_nElectrons``, ``Jet_electronIdx1/2``) with the
  first two (highest-:math:`p_T`) leptons pointing to each jet, as NanoAOD does with the
  jet's lepton daughters. Leptons must already be :math:`p_T`-ordered.
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


def link(leptons: ak.Array, jets: ak.Array, kind: str = "muon") -> tuple[ak.Array, ak.Array]:
    """Return ``(leptons, jets)`` with ``jetIdx`` / ``n{Kind}s``, ``{kind}Idx1``, ``{kind}Idx2``
    set; ``kind`` is ``"muon"`` or ``"electron"``."""
    dr, index = nearest(leptons.eta, leptons.phi, jets.eta, jets.phi)
    jet_idx = ak.values_astype(ak.where(dr < _CONE, index, -1), np.int32)
    # owner[e][j][m]: lepton m of event e points to jet j (leptons in pT order, so the
    # first True positions are the leading leptons)
    owner = jet_idx[:, None, :] == ak.local_index(jets.pt, axis=1)[:, :, None]
    count = ak.values_astype(ak.sum(owner, axis=2), np.int32)
    lepton_index = ak.local_index(owner, axis=2)[owner]
    padded = ak.fill_none(ak.pad_none(lepton_index, 2, axis=2, clip=True), -1)
    leptons = ak.with_field(leptons, jet_idx, "jetIdx")
    jets = ak.with_field(jets, count, f"n{kind.capitalize()}s")
    jets = ak.with_field(jets, ak.values_astype(padded[:, :, 0], np.int32), f"{kind}Idx1")
    jets = ak.with_field(jets, ak.values_astype(padded[:, :, 1], np.int32), f"{kind}Idx2")
    return leptons, jets
