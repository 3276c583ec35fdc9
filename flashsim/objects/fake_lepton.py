r"""RECO leptons without a GEN lepton ("fakes"), shared by electrons and muons: their models,
training rows and sampling.

A RECO lepton whose ``genPartIdx`` points to no selected GEN lepton
(:func:`flashsim.objects.lepton.training_pairs`, ``others``) is either

* *from a jet* — within :math:`\Delta R <` :data:`JET_CONE` of a GenJet (the nearest one
  owns it): hadrons passing the lepton preselection, decays in flight, conversions. Per GenJet,
  ``fake_{lepton}_multiplicity`` learns their number :math:`n \in \{0, 1, \ldots, n_{max}\}`
  (the last class is :math:`\ge n_{max}`) given the GenJet context of
  :mod:`flashsim.objects.jet` (:data:`JET_CONTEXT`: for electrons with the jet's leading GEN
  photon, :data:`flashsim.objects.jet.PHOTON_CONTEXT`, whose conversion is an electron),
  and ``fake_{lepton}_flow`` their properties given that context
  and :math:`n` (``n_fake``), with :math:`p_T` as a ratio to the GenJet's, :math:`\phi` as an
  offset from it and :math:`\eta` as its position in the jet's acceptance window
  (:func:`eta_window`);
* or *from pileup* — near no GenJet: per event, ``pileup_{lepton}_multiplicity`` learns their
  number given the event's pileup and GEN activity
  (:func:`flashsim.objects.fake_jet.event_activity`), ``pileup_{lepton}_flow`` their
  absolute :math:`p_T, \phi`, :math:`\eta` as a position in the acceptance and their
  properties given that and their count, as fake jets are (:mod:`flashsim.objects.fake_jet`).

A lepton is reconstructed only inside its :data:`ACCEPTANCE` (an electron needs a track, a
muon the muon system too), a sharp edge that a spline flow's continuous density cannot
draw: sampling :math:`\eta` as an offset or as itself, 5.1% of the electrons of held-out VBF
H→μμ (nearly all fakes; forward tag jets host them) lay beyond 2.5, where the reference
detector has none, and 41% too few at :math:`2.3 < |\eta| < 2.5`. So :math:`\eta` is
sampled as its position :math:`u = (\eta - \eta_{lo})/(\eta_{hi} - \eta_{lo})` in the
window :math:`[\eta_{lo}, \eta_{hi}]` it can lie in (:func:`eta_window`: the acceptance,
cut to the cone of :data:`JET_CONE` around the GenJet for fakes from jets), on a ``logit``
scale, which every sample maps back inside. A GenJet whose window is empty
(:math:`|\eta| \ge` acceptance + cone) hosts no fake: its count is 0, not drawn. Loading a
fake flow trained before (on :math:`\Delta\eta` or :math:`\eta`) is an error that says to
re-train it.

The charge is a target of its own (there is no GEN charge to flip). In simulation the fakes
of an event come after its GEN-matched leptons' draws, from jets first, then from pileup
(:func:`sample_fakes`), and NanoAOD's MC matching (:func:`flashsim.nanoaod.mc_match.gen_match`)
gives them ``genPartIdx`` and ``genPartFlav`` against the GEN particles the matched leptons
did not take; :func:`pt_ordered` merges them with the matched ones.
"""

from __future__ import annotations

from collections.abc import Callable

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.nanoaod.mc_match import gen_match
from flashsim.objects import fake_jet, jet
from flashsim.objects.common import flat, nearest, sample_counted, typed
from flashsim.objects.lepton import flow_targets, row_table

__all__ = ["ACCEPTANCE", "ETA_POSITION", "JET_CONE", "JET_CONTEXT", "PILEUP_CONTEXT",
           "eta_window", "fake_models", "fake_tables", "joined", "pt_ordered", "sample_fakes"]

JET_CONE = 0.4
#: Per lepton, the :math:`|\eta|` below which it is reconstructed: the tracker for electrons
#: (GSF track), the muon system for muons (the reference detector's ``muon_eta_max``).
ACCEPTANCE = {"electron": jet.TRACKER_ETA, "muon": 2.4}
#: The fakes' flow target for :math:`\eta`: its position in :func:`eta_window` (module doc).
ETA_POSITION = "eta_position"
#: Per lepton, the GenJet context of its fakes from jets (module doc).
JET_CONTEXT = {"electron": (*jet.CONTEXT, *jet.PHOTON_CONTEXT), "muon": jet.CONTEXT}
PILEUP_CONTEXT = (*fake_jet.EVENT_CONTEXT, ColumnSpec("n_fake"))


def fake_models(lepton: str, obj: str, properties: tuple[ColumnSpec, ...], max_per_jet: int,
                max_pileup: int) -> dict[str, ModelSpec]:
    """The four fake models of ``lepton`` (``electron``, ``muon``; module doc), trained with
    object ``obj``, whose flows generate ``properties`` beside the kinematics and charge."""
    context = JET_CONTEXT[lepton]
    position = ColumnSpec(ETA_POSITION, transform="logit", spikes=False)

    def targets(relative: bool) -> tuple[ColumnSpec, ...]:
        return tuple(position if c.name in ("deta", "eta") else c
                     for c in flow_targets(relative, "charge", properties))

    return {
        f"fake_{lepton}_multiplicity": ModelSpec(f"fake_{lepton}_multiplicity", obj,
                                                 "multiplicity", context,
                                                 max_count=max_per_jet),
        f"fake_{lepton}_flow": ModelSpec(f"fake_{lepton}_flow", obj, "flow",
                                         (*context, ColumnSpec("n_fake")), targets(True),
                                         required=(ETA_POSITION,)),
        f"pileup_{lepton}_multiplicity": ModelSpec(f"pileup_{lepton}_multiplicity", obj,
                                                   "multiplicity", fake_jet.EVENT_CONTEXT,
                                                   max_count=max_pileup),
        f"pileup_{lepton}_flow": ModelSpec(f"pileup_{lepton}_flow", obj, "flow", PILEUP_CONTEXT,
                                           targets(False), required=(ETA_POSITION,)),
    }


def fake_tables(chunk: dict, lepton: str, others: ak.Array,
                properties: Callable[[ak.Array], dict], max_per_jet: int,
                max_pileup: int) -> dict[str, TrainingTable]:
    """Training rows of the fake models of ``lepton`` from the RECO leptons ``others``
    (``N * var``) that have no GEN lepton; ``properties`` gives the flows' non-kinematic
    targets of a set of them."""
    jets = jet.gen_jets(chunk)
    dr, owner = nearest(others.eta, others.phi, jets.gen_eta, jets.gen_phi)
    inside = dr < JET_CONE
    fakes, owner = others[inside], owner[inside]
    counts = ak.sum(owner[:, None, :] == ak.local_index(jets.gen_pt, axis=1)[:, :, None], axis=2)
    multiplicity = row_table(chunk, {c.name: jets[c.name] for c in JET_CONTEXT[lepton]},
                             {"n": np.minimum(counts, max_per_jet)}, jets.gen_pt)
    host = jets[owner]
    context = {c.name: host[c.name] for c in JET_CONTEXT[lepton]}
    context["n_fake"] = counts[owner]
    targets = {"pt_ratio": fakes.pt / host.gen_pt,
               ETA_POSITION: _position(fakes.eta, *eta_window(lepton, host.gen_eta)),
               "dphi": delta_phi(fakes.phi, host.gen_phi), "charge": fakes.charge,
               **properties(fakes)}
    fake_flow = row_table(chunk, context, targets, fakes.pt)

    pileup = others[~inside]
    activity = fake_jet.event_activity(chunk)
    n_pileup = np.asarray(ak.num(pileup.pt), dtype=np.float64)
    pileup_multiplicity = row_table(chunk, activity, {"n": np.minimum(n_pileup, max_pileup)},
                                    None)
    per_lepton = {k: ak.broadcast_arrays(v, pileup.pt)[0]
                  for k, v in {**activity, "n_fake": n_pileup}.items()}
    pileup_flow = row_table(chunk, per_lepton,
                            {"pt": pileup.pt,
                             ETA_POSITION: _position(pileup.eta, *eta_window(lepton)),
                             "phi": pileup.phi,
                             "charge": pileup.charge, **properties(pileup)}, pileup.pt)
    return {f"fake_{lepton}_multiplicity": multiplicity, f"fake_{lepton}_flow": fake_flow,
            f"pileup_{lepton}_multiplicity": pileup_multiplicity,
            f"pileup_{lepton}_flow": pileup_flow}


def eta_window(lepton: str, host_eta=None) -> tuple:
    r""":math:`(\eta_{lo}, \eta_{hi})` where a fake ``lepton`` can lie: its
    :data:`ACCEPTANCE`, cut to :math:`|\eta - \eta_{jet}| <` :data:`JET_CONE` around the
    GenJet of pseudorapidity ``host_eta`` (arrays) for fakes from jets. Empty
    (:math:`\eta_{lo} \ge \eta_{hi}`) for a GenJet beyond acceptance + cone."""
    edge = ACCEPTANCE[lepton]
    if host_eta is None:
        return -edge, edge
    return np.maximum(-edge, host_eta - JET_CONE), np.minimum(edge, host_eta + JET_CONE)


def _position(eta, lo, hi):
    return (eta - lo) / (hi - lo)


def _from_position(position: np.ndarray, lo, hi) -> np.ndarray:
    return lo + np.clip(position, 0.0, 1.0) * (hi - lo)


def _from_jets(gen: dict, lepton: str, models, rng: np.random.Generator
               ) -> tuple[dict, np.ndarray]:
    """Fakes from jets: flat fields (grouped by event) and counts per event."""
    jets = jet.gen_jets(gen)
    per_event = np.asarray(ak.num(jets.gen_pt))
    columns = {c.name: flat(jets[c.name]) for c in JET_CONTEXT[lepton]}
    lo, hi = eta_window(lepton, columns["gen_eta"])
    per_jet, context, out = sample_counted(
        models[f"fake_{lepton}_multiplicity"], models[f"fake_{lepton}_flow"], columns, rng,
        possible=lo < hi)
    lo, hi = eta_window(lepton, context["gen_eta"])
    out.update(pt=context["gen_pt"] * out.pop("pt_ratio"),
               eta=_from_position(out.pop(ETA_POSITION), lo, hi),
               phi=delta_phi(context["gen_phi"] + out.pop("dphi"), 0.0))
    event_of_jet = np.repeat(np.arange(len(per_event)), per_event)
    return out, np.bincount(event_of_jet, weights=per_jet, minlength=len(per_event)).astype(np.int64)


def sample_fakes(gen: dict, lepton: str, models, rng: np.random.Generator,
                 matched_event: np.ndarray, matched_index: np.ndarray,
                 pdg_ids: tuple[int, ...]) -> tuple[dict, np.ndarray]:
    """The fakes of ``lepton`` of every event (module doc): their sampled fields (float64,
    pt/eta/phi/charge absolute) with ``genPartIdx`` and ``genPartFlav`` from the MC matching to
    status-1 GEN particles of ``pdg_ids`` that the matched leptons (in events
    ``matched_event``, at ``genPartIdx`` ``matched_index``) did not take; and the event of
    each fake, ascending."""
    n_events = len(gen["event"])
    fakes, fake_counts = _from_jets(gen, lepton, models, rng)
    pileup_counts, _, pileup = sample_counted(models[f"pileup_{lepton}_multiplicity"],
                                              models[f"pileup_{lepton}_flow"],
                                              fake_jet.event_activity(gen), rng)
    pileup["eta"] = _from_position(pileup.pop(ETA_POSITION), *eta_window(lepton))
    # each event's fakes from jets first, then those from pileup
    order = np.argsort(np.concatenate([np.repeat(np.arange(n_events), fake_counts),
                                       np.repeat(np.arange(n_events), pileup_counts)]),
                       kind="stable")
    fields = {k: v[order] for k, v in joined(fakes, pileup).items()}
    event = np.repeat(np.arange(n_events), fake_counts + pileup_counts)
    offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(gen["GenPart"].pt)))])
    taken = (offsets[matched_event] + matched_index).astype(np.int64)
    fields["genPartIdx"], fields["genPartFlav"] = gen_match(
        {"evt": event, **{k: fields[k] for k in ("pt", "eta", "phi")}}, gen["GenPart"],
        n_events, pdg_ids, taken=taken)
    return fields, event


def joined(first: dict, second: dict) -> dict[str, np.ndarray]:
    """The fields both flat ``first`` and ``second`` have, in ``first``'s order, as float64:
    ``first``'s objects, then ``second``'s."""
    return {k: np.concatenate([np.asarray(first[k], np.float64), np.asarray(second[k], np.float64)])
            for k in first if k in second}


def pt_ordered(collection: str, fields: dict[str, np.ndarray], event: np.ndarray,
               keep: np.ndarray, n_events: int) -> ak.Array:
    """``N * var`` records of ``collection`` (schema dtypes) from flat ``fields`` of the
    objects in events ``event``: those with ``keep``, pT-ordered within each event."""
    order = np.lexsort((-fields["pt"], event))
    order = order[keep[order]]
    record = ak.zip(typed(collection, {k: v[order] for k, v in fields.items()}))
    return ak.unflatten(record, np.bincount(event[order], minlength=n_events))
