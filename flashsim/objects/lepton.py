r"""What the muon and electron models share: the GEN lepton and its context, the pairing of
RECO with GEN leptons for training, and the efficiency -> flow sampling.

GEN lepton (the same in training and simulation): ``GenPart`` with ``status == 1``, the
lepton's :math:`|\text{pdgId}|`, :math:`p_T > 3` GeV and :math:`|\eta| < 2.5`.

Conditioning :math:`c` (:data:`CONTEXT`): GEN :math:`p_T, \eta, \phi`, charge;
``statusFlags`` bits (isPrompt, isTauDecayProduct, isDirectHadronDecayProduct,
fromHardProcess); whether the mother is a b or c hadron; the nearest GenJet
(:math:`\Delta R`, :math:`p_T` ratio within 0.4, its b/c hadron flavour) as the GEN
environment; ``Pileup_nTrueInt``.

A GEN lepton is reconstructed when a RECO lepton's ``genPartIdx`` points to it; the flow
learns the RECO lepton of a reconstructed GEN lepton through
:math:`p_T^{reco}/p_T^{gen}`, :math:`\Delta\eta`, :math:`\Delta\phi`, the charge flip
:math:`q^{reco} q^{gen}` and the lepton's own branches (:func:`kinematic_targets`).
"""

from __future__ import annotations

from collections.abc import Callable

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi
from flashsim.models.spec import TrainingTable
from flashsim.models.transforms import ColumnSpec
from flashsim.objects.common import event_keys, event_weights, flat, nearest, region_columns
from flashsim.pdg import BOTTOM, CHARM, has_heavy_quark

__all__ = [
    "CONTEXT",
    "flow_targets",
    "gen_flavour",
    "gen_leptons",
    "hadron_flavour",
    "impact_parameter_3d",
    "ip3d_error_ratio",
    "kinematic_targets",
    "momentum_delta",
    "neutral_isolation_targets",
    "row_table",
    "sample_reconstructed",
    "simulate_matched",
    "significance_3d",
    "training_pairs",
    "with_total_isolations",
]

#: total PF isolation -> (its charged part, the sampled target for the rest). NanoAOD's total
#: is the charged sum plus the pileup-corrected neutral sum clipped at 0, e.g.
#: ``(ch + max(0, nh + ph - 0.5 pu)) / pT``, so it is never below its charged part and equals it
#: where the neutral part vanishes: 55% (mini) and 31% (cone 0.3) of the reference detector's
#: VBF muons, 56% and 78% of the muons of ``nano_dy.root``, 80% and 72% of its electrons.
#: Sampled as two numbers, flash had the total below its charged part for 10-14% of the muons
#: and equal to it for 24-33% (mini) and 5% (cone 0.3). The flows sample the neutral
#: part, ``log`` with its spike at 0, and the total follows.
NEUTRAL_ISOLATIONS = {"miniPFRelIso_all": ("miniPFRelIso_chg", "miniPFRelIso_neutral"),
                      "pfRelIso03_all": ("pfRelIso03_chg", "pfRelIso03_neutral")}
GEN_PT_MIN = 3.0
GEN_ETA_MAX = 2.5
_FLAG_BITS = {"is_prompt": 0, "is_tau_decay": 2, "is_hadron_decay": 6, "from_hard": 8}

CONTEXT = (
    ColumnSpec("gen_pt", transform="log"),
    ColumnSpec("gen_eta"),
    ColumnSpec("gen_phi"),
    ColumnSpec("gen_charge"),
    *(ColumnSpec(name) for name in _FLAG_BITS),
    ColumnSpec("mother_b"),
    ColumnSpec("mother_c"),
    ColumnSpec("jet_dr"),
    ColumnSpec("jet_ptratio", transform="log", offset=1.0),
    ColumnSpec("jet_b"),
    ColumnSpec("jet_c"),
    ColumnSpec("pileup"),
)


def hadron_flavour(pdg_id):
    """5 for b hadrons, 4 for c hadrons, else 0 (:func:`flashsim.pdg.has_heavy_quark`)."""
    return ak.where(has_heavy_quark(pdg_id, BOTTOM), 5,
                    ak.where(has_heavy_quark(pdg_id, CHARM), 4, 0))


def gen_leptons(gen: dict, pdg_id: int, eta_edges: tuple[float, ...] = ()) -> ak.Array:
    """The GEN leptons of ``|pdgId| == pdg_id`` (module doc) with every context column,
    the :func:`~flashsim.objects.common.region_context` of ``eta_edges`` and ``index`` into GenPart."""
    part = gen["GenPart"]
    index = ak.local_index(part.pt, axis=1)
    select = ((part.status == 1) & (abs(part.pdgId) == pdg_id) & (part.pt > GEN_PT_MIN)
              & (abs(part.eta) < GEN_ETA_MAX))
    lep, index = part[select], index[select]
    mother = lep.genPartIdxMother
    mother_flavour = hadron_flavour(ak.fill_none(part.pdgId[ak.mask(mother, mother >= 0)], 0))
    jets = gen["GenJet"]
    dr, jet_index = nearest(lep.eta, lep.phi, jets.eta, jets.phi)
    jet_index = ak.mask(jet_index, dr < 0.4)
    jet_pt = ak.fill_none(jets.pt[jet_index], 0.0)
    jet_flavour = ak.fill_none(jets.hadronFlavour[jet_index], 0)
    pileup = ak.broadcast_arrays(np.asarray(gen["Pileup"].nTrueInt, np.float64), lep.pt)[0]
    fields = {
        "gen_pt": lep.pt, "gen_eta": lep.eta, "gen_phi": lep.phi,
        "gen_charge": -np.sign(lep.pdgId),
        **{name: (lep.statusFlags >> bit) & 1 for name, bit in _FLAG_BITS.items()},
        "mother_b": 1 * (mother_flavour == 5), "mother_c": 1 * (mother_flavour == 4),
        "jet_dr": np.minimum(dr, 1.0), "jet_ptratio": jet_pt / lep.pt,
        "jet_b": 1 * (jet_flavour == 5), "jet_c": 1 * (jet_flavour == 4),
        "pileup": pileup, "index": index, **region_columns(lep.eta, eta_edges),
    }
    return ak.zip(fields)


def impact_parameter_3d(dxy: np.ndarray, dz: np.ndarray, eta: np.ndarray) -> np.ndarray:
    r"""``ip3d`` = :math:`\sqrt{d_{xy}^2 + (d_z \sin\theta)^2}`, :math:`\sin\theta = 1/\cosh\eta`:
    the 3D impact parameter from the transverse and longitudinal ones. Not sampled: CMS
    NanoAOD follows it to its float precision (``nano_dy.root``: largest relative
    difference 6e-4 for muons, 1.1e-3 for electrons), the reference detector exactly. The
    same projection of ``dxyErr`` and ``dzErr`` is the track's own 3D error
    :math:`\sigma_{trk}` (:func:`ip3d_error_ratio`). Numpy or awkward arrays."""
    return np.hypot(dxy, dz / np.cosh(eta))


def ip3d_error_ratio(lepton: ak.Array) -> ak.Array:
    r"""The flow target that carries ``sip3d``: :math:`r = \sigma_{3D} / \sigma_{trk}` with
    :math:`\sigma_{3D}` = ``ip3d / sip3d``, the error ``sip3d`` divides by.

    ``sip3d`` is not sampled beside ``dxy, dz, dxyErr, dzErr``: the ratio of a sampled
    ``sip3d`` to the derived ``ip3d`` would be an error unrelated to the sampled ones, the
    branch that gave flash leptons away most (held-out AUC lost without it 0.13). CMS divides
    by the full 3D error of the track-vertex pair, so :math:`r` is a distribution (median 0.78
    for muons, 0.70 for electrons in ``nano_dy.root``); the reference detector divides by
    :math:`\sigma_{trk}` (:math:`r = 1` to float precision). Where ``sip3d`` is 0 (no
    impact parameter) :math:`r` = 1."""
    sigma = impact_parameter_3d(lepton["dxyErr"], lepton["dzErr"], lepton["eta"])
    ip3d, sip3d = lepton["ip3d"], lepton["sip3d"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return ak.where((sip3d > 0) & (ip3d > 0) & (sigma > 0), ip3d / (sip3d * sigma), 1.0)


def neutral_isolation_targets(reco: ak.Array) -> dict:
    """The neutral parts of the :data:`NEUTRAL_ISOLATIONS` that ``reco`` has (training)."""
    fields = set(ak.fields(reco))
    return {neutral: np.maximum(reco[total] - reco[charged], 0.0)
            for total, (charged, neutral) in NEUTRAL_ISOLATIONS.items()
            if {total, charged} <= fields}


def with_total_isolations(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``fields`` with each sampled neutral part replaced by its total (charged + neutral)."""
    for total, (charged, neutral) in NEUTRAL_ISOLATIONS.items():
        if neutral in fields:
            fields[total] = fields[charged] + fields.pop(neutral)
    return fields


def significance_3d(fields: dict[str, np.ndarray], ratio: np.ndarray) -> np.ndarray:
    r"""``sip3d`` = ``ip3d`` / (:math:`r\,\sigma_{trk}`) from the sampled ``dxyErr``,
    ``dzErr``, :math:`\eta` in ``fields`` and the sampled :math:`r` = ``ratio``
    (:func:`ip3d_error_ratio`)."""
    sigma = np.asarray(ratio) * impact_parameter_3d(np.asarray(fields["dxyErr"]),
                                                    np.asarray(fields["dzErr"]), fields["eta"])
    return np.divide(fields["ip3d"], sigma, out=np.zeros(len(sigma)), where=sigma > 0)


def gen_flavour(lep: ak.Array):
    """``genPartFlav`` of a RECO lepton matched to GEN lepton ``lep`` (1, 15, 5, 4 or 3)."""
    return ak.where(lep.is_prompt == 1, 1, ak.where(lep.is_tau_decay == 1, 15,
                    ak.where(lep.mother_b == 1, 5, ak.where(lep.mother_c == 1, 4, 3))))


def _match(reco_idx, gen_idx):
    """For every RECO object, whether its gen index is a selected GEN object, and where."""
    same = reco_idx[:, :, None] == gen_idx[:, None, :]
    return ak.any(same, axis=2), ak.fill_none(ak.argmax(same, axis=2), 0)


def training_pairs(chunk: dict, gen: ak.Array, reco: ak.Array,
                   efficiency_context: tuple[ColumnSpec, ...] = CONTEXT
                   ) -> tuple[TrainingTable, ak.Array, ak.Array, ak.Array]:
    """The efficiency table of the GEN leptons ``gen`` (target ``reconstructed``, context
    ``efficiency_context``), and the RECO leptons paired with them by ``genPartIdx``:
    ``(table, matched RECO, their GEN, unmatched RECO)``."""
    weight, key = event_weights(chunk), event_keys(chunk)
    reconstructed = ak.any(gen.index[:, :, None] == reco.genPartIdx[:, None, :], axis=2)
    per_gen = ak.broadcast_arrays(weight, gen.gen_pt)[0], ak.broadcast_arrays(key, gen.gen_pt)[0]
    table = TrainingTable(
        {c.name: flat(gen[c.name]) for c in efficiency_context},
        {"reconstructed": flat(reconstructed)},
        flat(per_gen[0]), np.asarray(ak.flatten(per_gen[1]), dtype=np.uint64))
    matched, position = _match(reco.genPartIdx, gen.index)
    return table, reco[matched], gen[position[matched]], reco[~matched]


def flow_targets(relative: bool, charge: str, properties: tuple[ColumnSpec, ...]
                 ) -> tuple[ColumnSpec, ...]:
    """Flow target columns: pT, eta, phi (as ratio and offsets to a GEN object when
    ``relative``), the charge column (``charge_flip`` relative to a GEN lepton, or ``charge``)
    and the lepton's ``properties``."""
    kinematics = ("pt_ratio", "deta", "dphi") if relative else ("pt", "eta", "phi")
    return (ColumnSpec(kinematics[0], transform="log"), ColumnSpec(kinematics[1], spikes=False),
            ColumnSpec(kinematics[2], spikes=False),
            ColumnSpec(charge, "discrete", values=(-1.0, 1.0)), *properties)


def kinematic_targets(reco: ak.Array, g: ak.Array) -> dict:
    """Flow targets relative to the GEN lepton: pT ratio, eta and phi offsets, charge flip."""
    return {"pt_ratio": reco.pt / g.gen_pt, "deta": reco.eta - g.gen_eta,
            "dphi": delta_phi(reco.phi, g.gen_phi), "charge_flip": reco.charge * g.gen_charge}


def row_table(chunk: dict, context: dict, targets: dict, like: ak.Array | None,
              info: dict | None = None) -> TrainingTable:
    """A :class:`TrainingTable` with one row per object of ``like`` (``N * var``), or per
    event with ``like=None``."""
    weight, key = event_weights(chunk), event_keys(chunk)
    if like is not None:
        weight, key = ak.broadcast_arrays(weight, like)[0], ak.broadcast_arrays(key, like)[0]
    return TrainingTable({n: flat(v) for n, v in context.items()},
                         {n: flat(v) for n, v in targets.items()}, flat(weight),
                         np.asarray(ak.to_numpy(ak.flatten(key, axis=None)), dtype=np.uint64),
                         info or {})


def momentum_delta(reco, g) -> tuple[np.ndarray, np.ndarray]:
    """Per-event :math:`\\sum (\\vec p_T^{reco} - \\vec p_T^{gen})` over matched leptons."""
    dx = ak.sum(reco.pt * np.cos(reco.phi) - g.gen_pt * np.cos(g.gen_phi), axis=1)
    dy = ak.sum(reco.pt * np.sin(reco.phi) - g.gen_pt * np.sin(g.gen_phi), axis=1)
    return np.asarray(dx, dtype=np.float64), np.asarray(dy, dtype=np.float64)


def sample_reconstructed(gen: ak.Array, efficiency, flow, rng: np.random.Generator,
                         efficiency_context: tuple[ColumnSpec, ...] = CONTEXT
                         ) -> tuple[ak.Array, dict, dict, np.ndarray]:
    """Draw which GEN leptons are reconstructed (``efficiency``, given
    ``efficiency_context``) and sample their RECO properties (``flow``): ``(kept GEN leptons
    flat, their context columns, flow output with pt/eta/phi/charge rebuilt, counts per
    event)``."""
    columns = {name: flat(gen[name])
               for name in dict.fromkeys(c.name for c in (*CONTEXT, *efficiency_context))}
    p = efficiency.probability(columns)
    keep = rng.uniform(size=len(p)) < p
    counts = np.asarray(ak.sum(ak.unflatten(keep, ak.num(gen)), axis=1))
    kept = ak.flatten(gen)[keep]
    g = {k: v[keep] for k, v in columns.items()}
    out = flow.sample(g, rng)
    pt = g["gen_pt"] * out.pop("pt_ratio")
    out.update(pt=pt, eta=g["gen_eta"] + out.pop("deta"),
               phi=delta_phi(g["gen_phi"] + out.pop("dphi"), 0.0),
               charge=out.pop("charge_flip") * g["gen_charge"])
    return kept, g, out, counts


def simulate_matched(gen: ak.Array, efficiency, flow, rng: np.random.Generator,
                     assemble: Callable[[dict], dict],
                     efficiency_context: tuple[ColumnSpec, ...] = CONTEXT
                     ) -> tuple[dict, np.ndarray]:
    """The RECO leptons of the GEN leptons ``gen`` (:func:`sample_reconstructed`), their
    sampled targets made branches by ``assemble``, with ``genPartIdx`` and ``genPartFlav``
    (:func:`gen_flavour`); and the event of each."""
    kept, _, sampled, counts = sample_reconstructed(gen, efficiency, flow, rng,
                                                    efficiency_context)
    fields = assemble(sampled)
    fields["genPartIdx"] = flat(kept.index)
    fields["genPartFlav"] = flat(gen_flavour(kept))
    return fields, np.repeat(np.arange(len(counts)), counts)
