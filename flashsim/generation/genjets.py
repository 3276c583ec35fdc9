"""GenJet: anti-kT R = 0.4 on stable visible particles, with CMS ghost-association flavours.

* Inputs (CMS ``genParticlesForJetsNoNu``): every stable (Pythia final, HepMC status 1) particle of
  the hard event except neutrinos (12, 14, 16).  Jets with pT > 10 GeV are kept (NanoAOD GenJet
  cut), pT-ordered.
* ``hadronFlavour`` (CMS ``JetFlavourClustering``): the last b and c hadrons before their weak decay
  (hadrons with a b [c] quark and no b [c]-hadron daughter) enter the clustering as *ghosts*, their
  four-momenta scaled by 1e-18, so they never change the jets but end up in the jet that contains
  their direction.  5 if the jet holds a b ghost, else 4 if a c ghost, else 0.
* ``partonFlavour``: ghost partons are the quarks (d..b) and gluons entering hadronisation (Pythia
  status 71-79, CMS ``Pythia8PartonSelector``).  The jet takes the signed pdgId of its hardest b
  ghost parton, else of its hardest c ghost parton, else of its hardest ghost parton (21 for a
  gluon); 0 without ghost partons.  CMS additionally prefers partons matching the hadron flavour
  in a few corner cases that we do not reproduce.
* Ghost membership comes from fastjet's constituent indices of the multi-event awkward interface
  (``fastjet._pyjet.AwkwardClusterSequence``), never from a ΔR match.
"""

from __future__ import annotations

import awkward as ak
import fastjet
import numpy as np

from flashsim.clustering import cluster_sequence
from flashsim.generation.genpart import GenHistory
from flashsim.pdg import BOTTOM, CHARM, has_quark, is_neutrino

__all__ = ["GHOST_SCALE", "JET_PT_MIN", "genjet_table"]

GHOST_SCALE = 1e-18
JET_PT_MIN = 10.0
_JET_DEF = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)

_PARTICLE, _B_GHOST, _C_GHOST, _PARTON_GHOST = 0, 1, 2, 3


def _last_before_decay(hist: GenHistory, mask: np.ndarray) -> np.ndarray:
    """``mask`` particles none of whose decay products (first-mother links) are in ``mask``."""
    has_child = np.zeros(len(mask), dtype=bool)
    mother = hist.mother[mask]
    has_child[mother[mother >= 0]] = True
    return mask & ~(has_child & mask)


def genjet_table(hist: GenHistory) -> ak.Array:
    """GenJet collection ``N * var * {pt, eta, phi, mass, hadronFlavour, partonFlavour}``."""
    rec = hist.rec
    apdg = np.abs(rec.pdg)
    final = hist.status == 1
    visible = final & ~is_neutrino(rec.pdg)
    b_had = _last_before_decay(hist, has_quark(rec.pdg, BOTTOM) & hist.valid)
    c_had = _last_before_decay(hist, has_quark(rec.pdg, CHARM) & hist.valid)
    parton_status = np.abs(rec.status)
    partons = ((apdg <= 5) | (apdg == 21)) & (apdg > 0) & (parton_status >= 71) & (parton_status <= 79)

    kind = np.full(len(apdg), -1, dtype=np.int8)
    kind[partons] = _PARTON_GHOST
    kind[c_had] = _C_GHOST
    kind[b_had] = _B_GHOST
    kind[visible] = _PARTICLE
    chosen = np.flatnonzero(kind >= 0)  # record order == event order
    scale = np.where(kind[chosen] == _PARTICLE, 1.0, GHOST_SCALE)
    event = np.searchsorted(rec.offsets, chosen, side="right") - 1
    counts = np.bincount(event, minlength=rec.n_events)
    inputs = ak.unflatten(ak.zip({
        "px": rec.px[chosen] * scale, "py": rec.py[chosen] * scale,
        "pz": rec.pz[chosen] * scale, "E": rec.e[chosen] * scale,
    }), counts)

    sequence = cluster_sequence(inputs, _JET_DEF)
    jets = sequence.inclusive_jets(min_pt=JET_PT_MIN)
    members = sequence.constituent_index(min_pt=JET_PT_MIN)

    px, py, pz, e = (ak.to_numpy(ak.flatten(jets[c])) for c in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    jets_per_event = ak.to_numpy(ak.num(jets))

    # constituent indices -> positions in ``chosen`` (global over the batch)
    first_input = np.zeros(rec.n_events, dtype=np.int64)
    np.cumsum(counts[:-1], out=first_input[1:])
    per_jet = ak.flatten(members)  # n_jets_total * var * int
    n_const = ak.to_numpy(ak.num(per_jet))
    jet_event = np.repeat(np.arange(rec.n_events), jets_per_event)
    flat_members = ak.to_numpy(ak.flatten(per_jet)).astype(np.int64) + np.repeat(first_input[jet_event], n_const)
    member = chosen[flat_members]
    member_kind = kind[member]
    jet_of_member = np.repeat(np.arange(len(pt)), n_const)

    has_b = np.zeros(len(pt), dtype=bool)
    has_b[jet_of_member[member_kind == _B_GHOST]] = True
    has_c = np.zeros(len(pt), dtype=bool)
    has_c[jet_of_member[member_kind == _C_GHOST]] = True
    hadron_flavour = np.where(has_b, 5, np.where(has_c, 4, 0)).astype(np.uint8)
    parton_flavour = _parton_flavour(rec, member[member_kind == _PARTON_GHOST],
                                     jet_of_member[member_kind == _PARTON_GHOST], len(pt))

    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    p = np.sqrt(px**2 + py**2 + pz**2)
    eta = np.arctanh(np.divide(pz, p, out=np.zeros_like(p), where=p > 0))
    table = ak.zip({
        "pt": pt.astype(np.float32),
        "eta": eta.astype(np.float32),
        "phi": np.arctan2(py, px).astype(np.float32),
        "mass": mass.astype(np.float32),
        "partonFlavour": parton_flavour.astype(np.int32),
        "hadronFlavour": hadron_flavour,
    })
    table = ak.unflatten(table, jets_per_event)
    return table[ak.argsort(table.pt, axis=1, ascending=False)]


def _parton_flavour(rec, parton: np.ndarray, jet: np.ndarray, n_jets: int) -> np.ndarray:
    """Per jet: hardest b ghost parton, else hardest c, else hardest parton (signed pdgId)."""
    apdg = np.abs(rec.pdg[parton])
    pt = np.hypot(rec.px[parton], rec.py[parton])
    priority = np.where(apdg == 5, 2, np.where(apdg == 4, 1, 0))
    # sort by jet, then priority, then pt: the last entry of each jet is the chosen parton
    order = np.lexsort((pt, priority, jet))
    out = np.zeros(n_jets, dtype=np.int32)
    last = np.r_[jet[order][1:] != jet[order][:-1], True] if len(order) else np.zeros(0, dtype=bool)
    out[jet[order][last]] = rec.pdg[parton][order][last]
    return out
