r"""The whole event's DCTR weight: one classifier of full against flash events.

``flashsim simulate --weights`` gives every flash event a weight ``flashsimWeight`` that moves
the flash sample toward the full simulation. Two estimates exist:

* **The product** of the objects' DCTR weights (:func:`flashsim.objects.event_weight`). It is
  the event's density ratio only if every object's classifier were exact and the objects
  independent given the GEN event. Its log-variance is the sum of the objects', so its
  effective sample size falls with the number of objects (3% on the VBF benchmark, whose
  events hold a dozen jets), and it cannot see what no flow samples: efficiencies and
  multiplicities.
* **The event classifier** of this module (DCTR, Andreassen & Nachman, arXiv:1907.08209,
  on whole events). An MLP :math:`f(x, g)` learns to tell full-simulation events (label 1)
  from flash events of the *same* GEN events (label 0) from the event's RECO summary
  :math:`x` and its GEN summary :math:`g` (:data:`EVENT_FEATURES`): multiplicities, the two
  leading muons, jets and their pair masses, the leading electron, HT, MET (and its angle to
  GenMET), the vertex count and ρ, given the GenJets, GenMET, GEN muons and pileup. Then
  :math:`w = f/(1-f) = p_\text{full}(x \mid g)/p_\text{flash}(x \mid g)` for the optimal
  classifier. One weight per event: its spread is set by how far the *event* differs, not by
  how many objects it has. The weight is :math:`s \min(w, w_\text{max})`, with
  :math:`s` = 1 / its mean on the fitting events (as for the objects' weights,
  :mod:`flashsim.models.refinement`), so the sample's normalisation does not move.

It is fitted by ``flashsim refine`` (:func:`flashsim.objects.refinement.refine_directory`)
beside the flows' refiners, on the same full-simulation files and event splits, and stored as
``refiners/event.pt``/``.json`` (kind ``classifier``, object ``event``). Its artifact records the
manifest's weights of every model it was fitted to (``models_sha256``); loading refuses it
beside other models. Where a model directory has it, ``--weights`` writes its weight as
``flashsimWeight``; without, the product. The objects' own weights
(``Muon_flashsimWeight``, ...) are written either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi
from flashsim.models.artifact import Model
from flashsim.models.transforms import ColumnSpec
from flashsim.objects.lepton import GEN_ETA_MAX, GEN_PT_MIN

__all__ = ["EVENT_FEATURES", "EVENT_WEIGHT_MODEL", "event_features", "event_dctr_weights",
           "models_digest"]

EVENT_WEIGHT_MODEL = "event"
"""Name of the event classifier's artifact in a model directory's ``refiners/``."""

_MOMENTA = ("mu1_pt", "mu2_pt", "m_mumu", "jet1_pt", "jet2_pt", "m_jj", "HT", "MET_pt",
            "e1_pt", "rho", "genjet1_pt", "genjet2_pt", "GenMET_pt", "genmu1_pt")
_COUNTS_AND_ANGLES = ("nMuon", "nJet", "nElectron", "mu1_eta", "mu2_eta", "jet1_eta",
                      "jet2_eta", "e1_eta", "MET_dphi_GenMET", "npvsGood", "nGenJet", "nGenMuon",
                      "nTrueInt")
EVENT_FEATURES: tuple[ColumnSpec, ...] = (
    *(ColumnSpec(name, transform="log", offset=1.0) for name in _MOMENTA),
    *(ColumnSpec(name) for name in _COUNTS_AND_ANGLES),
)
"""The classifier's inputs: RECO summary and GEN summary of the event. Absent objects give
their leading values 0 (the multiplicities tell them apart); momenta and masses in GeV enter
as log(1 + x)."""


def _leading(collection: ak.Array, field: str, i: int) -> np.ndarray:
    padded = ak.pad_none(collection[field], i + 1, axis=1)[:, i]
    return ak.to_numpy(ak.fill_none(padded, 0.0)).astype(np.float64)


def _pair_mass(collection: ak.Array) -> np.ndarray:
    """Mass of the two leading objects, massless approximation; 0 with fewer than two."""
    pt, eta, phi = (ak.pad_none(collection[f], 2, axis=1) for f in ("pt", "eta", "phi"))
    m2 = 2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1])
                                     - np.cos(phi[:, 0] - phi[:, 1]))
    return np.sqrt(np.maximum(ak.to_numpy(ak.fill_none(m2, 0.0)).astype(np.float64), 0.0))


def event_features(chunk: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """:data:`EVENT_FEATURES` of every event of a chunk that holds the GEN collections and
    the RECO ones (``Muon``, ``Jet``, ``MET``, ``PV``, ``fixedGridRhoFastjetAll``; ``Electron``
    optional: without it the electron features are 0), as a NANOAODSIM file reads
    (:func:`flashsim.nanoaod.reader.read_chunk`) and as the simulation writes."""
    mu, jet, met, gen_jet = chunk["Muon"], chunk["Jet"], chunk["MET"], chunk["GenJet"]
    part = chunk["GenPart"]
    gen_mu = part[(part.status == 1) & (abs(part.pdgId) == 13) & (part.pt > GEN_PT_MIN)
                  & (abs(part.eta) < GEN_ETA_MAX)]
    gen_mu = gen_mu[ak.argsort(gen_mu.pt, axis=1, ascending=False)]
    n = len(chunk["event"])
    electron = chunk.get("Electron")
    columns = {
        "nMuon": ak.num(mu), "nJet": ak.num(jet),
        "nElectron": np.zeros(n) if electron is None else ak.num(electron),
        "mu1_pt": _leading(mu, "pt", 0), "mu1_eta": _leading(mu, "eta", 0),
        "mu2_pt": _leading(mu, "pt", 1), "mu2_eta": _leading(mu, "eta", 1),
        "m_mumu": _pair_mass(mu),
        "jet1_pt": _leading(jet, "pt", 0), "jet1_eta": _leading(jet, "eta", 0),
        "jet2_pt": _leading(jet, "pt", 1), "jet2_eta": _leading(jet, "eta", 1),
        "m_jj": _pair_mass(jet), "HT": ak.sum(jet.pt, axis=1),
        "e1_pt": np.zeros(n) if electron is None else _leading(electron, "pt", 0),
        "e1_eta": np.zeros(n) if electron is None else _leading(electron, "eta", 0),
        "MET_pt": met.pt, "MET_dphi_GenMET": delta_phi(met.phi, chunk["GenMET"].phi),
        "npvsGood": chunk["PV"].npvsGood, "rho": chunk["fixedGridRhoFastjetAll"],
        "nGenJet": ak.num(gen_jet), "genjet1_pt": _leading(gen_jet, "pt", 0),
        "genjet2_pt": _leading(gen_jet, "pt", 1), "GenMET_pt": chunk["GenMET"].pt,
        "nGenMuon": ak.num(gen_mu), "genmu1_pt": _leading(gen_mu, "pt", 0),
        "nTrueInt": chunk["Pileup"].nTrueInt,
    }
    return {name: np.asarray(ak.to_numpy(value), dtype=np.float64)
            for name, value in columns.items()}


def event_dctr_weights(model: Model, chunk: Mapping[str, Any]) -> np.ndarray:
    r"""The event weight :math:`s \min(w, w_\text{max})` (module doc) of every event of
    ``chunk`` (GEN and flash RECO collections) from the event classifier ``model``."""
    f = model.probability(event_features(chunk))
    with np.errstate(divide="ignore"):  # f = 1 in float32: the clip bounds it
        w = f / (1.0 - f)
    return model.meta["weight_scale"] * np.minimum(w, model.meta["weight_clip"])


def models_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 over the weights' digests of every model of a manifest: what an event
    classifier was fitted to."""
    entries = sorted((name, entry["sha256"]) for name, entry in manifest["models"].items())
    return hashlib.sha256(repr(entries).encode()).hexdigest()
