r"""Task ``dimuon``: Drell-Yan :math:`Z/\gamma^* \to \mu\mu` unfolded to the hard process.

The OTUS Z example (Howard et al. 2022, arXiv:2101.08944), on the ``dy_mumu`` process.

GEN (what is unfolded): the two muons of the hard process (``GenPart``, ``|pdgId| = 13``,
``isHardProcess`` and ``isFirstCopy``, mother the :math:`Z/\gamma^*`, ``pdgId`` 23: before
final-state radiation) and the boson, their sum (equal to the ``isLastCopy`` boson of
``GenPart`` to float precision). Targets: ``mu1``/``mu2`` (the harder/softer muon)
:math:`p_T, \eta, \phi` and ``Z`` :math:`p_T, \eta, \phi, m`.

Latent coordinates of the flow (6, no constraint): the boson's :math:`\log m`,
:math:`\log(1 + p_T)`, rapidity and :math:`\phi`, and the :math:`\mu^-` direction
:math:`\cos\theta^*, \phi^*` in the boson rest frame.

RECO selection: two opposite-charge muons with ``tightId``, :math:`p_T > 20` GeV,
:math:`|\eta| < 2.4` (the leading two such muons are used). No isolation: Drell-Yan muons are
prompt, and at the reference detector's pileup an isolation cut would drop a third of them.
RECO features: both muons, the dimuon system, MET and up to four jets
(:math:`p_T > 20` GeV, :math:`|\eta| < 4.7`, :math:`\Delta R > 0.4` from the muons), azimuths
relative to the leading muon. RECO proxies (for IBU): every target, from the two muons.
Tilt variable of the model-dependence test: the boson :math:`p_T`.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi, delta_r
from flashsim.models.transforms import ColumnSpec
from flashsim.unfold import kinematics as kin
from flashsim.unfold.task import Particles, Target, UnfoldingTask, collection, status_flag

__all__ = ["TASK"]

_MUON_FIELDS = ("pt", "eta", "phi", "charge", "tightId")
_JET_FIELDS = ("pt", "eta", "phi", "mass")
N_JETS = 4
_MUON_MASS = 0.10566

TARGETS = (
    *(Target(f"{mu}_{v}", unit, f"{doc} of the {rank} hard-process muon")
      for mu, rank in (("mu1", "harder"), ("mu2", "softer"))
      for v, unit, doc in (("pt", "GeV", "pT"), ("eta", "", "pseudorapidity"),
                           ("phi", "rad", "azimuth"))),
    Target("Z_pt", "GeV", "pT of the Z/gamma* (sum of the hard-process muons)"),
    Target("Z_eta", "", "pseudorapidity of the Z/gamma*"),
    Target("Z_phi", "rad", "azimuth of the Z/gamma*"),
    Target("Z_m", "GeV", "mass of the Z/gamma*"),
)

LATENT = (
    ColumnSpec("Z_m", transform="log", spikes=False),
    ColumnSpec("Z_pt", transform="log", offset=1.0, spikes=False),
    ColumnSpec("Z_y", spikes=False),
    ColumnSpec("Z_phi", spikes=False),
    ColumnSpec("mum_cos", spikes=False),
    ColumnSpec("mum_phi", spikes=False),
)

FEATURES = (
    *(ColumnSpec(f"mu{i}_{v}") for i in (1, 2) for v in ("logpt", "eta", "charge")),
    ColumnSpec("mu2_dphi"),
    *(ColumnSpec(f"mumu_{v}") for v in ("logm", "logpt", "y", "dphi")),
    ColumnSpec("met_logpt"), ColumnSpec("met_dphi"),
    *(ColumnSpec(f"jet{i}_{v}") for i in range(N_JETS)
      for v in ("present", "logpt", "eta", "dphi")),
    ColumnSpec("n_jets"),
)

RECO_BRANCHES = (*(f"Muon_{f}" for f in _MUON_FIELDS), *(f"Jet_{f}" for f in _JET_FIELDS),
                 "MET_pt", "MET_phi")


def _good_muons(chunk: dict) -> ak.Array:
    mu = collection(chunk, "Muon", _MUON_FIELDS)
    good = mu[(mu.tightId == 1) & (mu.pt > 20) & (abs(mu.eta) < 2.4)]
    return good[ak.argsort(good.pt, axis=1, ascending=False)]


def select(chunk: dict) -> np.ndarray:
    """Two good opposite-charge muons (see module doc)."""
    good = _good_muons(chunk)
    two = ak.num(good) >= 2
    padded = ak.pad_none(good.charge, 2, axis=1)
    opposite = ak.fill_none(padded[:, 0] * padded[:, 1] < 0, False)
    return ak.to_numpy(two & opposite)


def _muon_vectors(chunk: dict) -> tuple[np.ndarray, np.ndarray, ak.Array]:
    good = _good_muons(chunk)[:, :2]
    vec = [kin.from_pt_eta_phi_m(ak.to_numpy(good.pt[:, i]), ak.to_numpy(good.eta[:, i]),
                                 ak.to_numpy(good.phi[:, i]), _MUON_MASS) for i in (0, 1)]
    return vec[0], vec[1], good


def reco_features(chunk: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RECO features of selected events and the reference azimuth (leading muon)."""
    mu1, mu2, good = _muon_vectors(chunk)
    frame = kin.phi(mu1)
    pair = mu1 + mu2
    jets = collection(chunk, "Jet", _JET_FIELDS)
    clean = (delta_r(jets.eta, jets.phi, good.eta[:, 0], good.phi[:, 0]) > 0.4) & (
        delta_r(jets.eta, jets.phi, good.eta[:, 1], good.phi[:, 1]) > 0.4)
    jets = jets[(jets.pt > 20) & (abs(jets.eta) < 4.7) & clean]
    jets = jets[ak.argsort(jets.pt, axis=1, ascending=False)]
    features = {
        "mu1_logpt": np.log(kin.pt(mu1)), "mu1_eta": kin.pseudorapidity(mu1),
        "mu1_charge": ak.to_numpy(good.charge[:, 0]).astype(np.float64),
        "mu2_logpt": np.log(kin.pt(mu2)), "mu2_eta": kin.pseudorapidity(mu2),
        "mu2_charge": ak.to_numpy(good.charge[:, 1]).astype(np.float64),
        "mu2_dphi": delta_phi(kin.phi(mu2), frame),
        "mumu_logm": np.log(kin.mass(pair)), "mumu_logpt": np.log(kin.pt(pair)),
        "mumu_y": kin.resonance_coordinates(pair)["y"],
        "mumu_dphi": delta_phi(kin.phi(pair), frame),
        "met_logpt": np.log1p(np.asarray(chunk["MET_pt"], dtype=np.float64)),
        "met_dphi": delta_phi(np.asarray(chunk["MET_phi"], dtype=np.float64), frame),
        "n_jets": ak.to_numpy(ak.num(jets)).astype(np.float64),
    }
    features.update(padded_objects(jets, N_JETS, frame, ("logpt", "eta", "dphi"), "jet"))
    return features, frame


def padded_objects(objects: ak.Array, n: int, frame: np.ndarray, variables: tuple[str, ...],
                   prefix: str) -> dict[str, np.ndarray]:
    """The first ``n`` objects as ``{prefix}{i}_{variable}`` columns, 0 where absent, with a
    ``{prefix}{i}_present`` flag. Variables: ``logpt``, ``eta``, ``dphi`` (to ``frame``),
    ``logmass`` (:math:`\\log(1 + m)`) or any field name of ``objects``."""
    padded = ak.pad_none(objects, n, axis=1, clip=True)
    out = {}
    for i in range(n):
        obj = padded[:, i]
        present = ak.to_numpy(ak.is_none(obj, axis=0)) == 0
        out[f"{prefix}{i}_present"] = present.astype(np.float64)
        for v in variables:
            if v == "logpt":
                value = np.log(ak.fill_none(obj.pt, 1.0))
            elif v == "dphi":
                value = delta_phi(ak.fill_none(obj.phi, 0.0), frame)
            elif v == "logmass":
                value = np.log1p(np.maximum(ak.fill_none(obj.mass, 0.0), 0.0))
            else:
                value = ak.fill_none(obj[v], 0.0)
            out[f"{prefix}{i}_{v}"] = np.where(present, ak.to_numpy(value), 0.0)
    return out


def hard_process_muons(chunk: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four-vectors of the hard-process :math:`\\mu^-` and :math:`\\mu^+`; whether both exist."""
    part = collection(chunk, "GenPart", ("pt", "eta", "phi", "pdgId", "statusFlags",
                                         "genPartIdxMother"))
    mother = part.genPartIdxMother
    mother_id = ak.where(mother >= 0, part.pdgId[ak.where(mother >= 0, mother, 0)], 0)
    hard = (status_flag(part.statusFlags, "isHardProcess")
            & status_flag(part.statusFlags, "isFirstCopy") & (mother_id == 23))
    out = []
    ok = np.ones(len(part), dtype=bool)
    for pdg in (13, -13):
        mu = part[hard & (part.pdgId == pdg)]
        ok &= ak.to_numpy(ak.num(mu)) == 1
        first = ak.firsts(mu)
        out.append(kin.from_pt_eta_phi_m(ak.to_numpy(ak.fill_none(first.pt, 1.0)),
                                         ak.to_numpy(ak.fill_none(first.eta, 0.0)),
                                         ak.to_numpy(ak.fill_none(first.phi, 0.0)), 0.0))
    return out[0], out[1], ok


def gen_particles(chunk: dict) -> tuple[Particles, np.ndarray]:
    """The hard-process muons (``mum``, ``mup``) and whether they were found."""
    mum, mup, ok = hard_process_muons(chunk)
    return {"mum": mum, "mup": mup}, ok


def encode(particles: Particles) -> dict[str, np.ndarray]:
    """Latent coordinates (module doc) of the muon pair."""
    boson = particles["mum"] + particles["mup"]
    res = kin.resonance_coordinates(boson)
    angles = kin.decay_angles(boson, particles["mum"])
    return {"Z_m": res["m"], "Z_pt": res["pt"], "Z_y": res["y"], "Z_phi": res["phi"],
            "mum_cos": angles["cos"], "mum_phi": angles["phi"]}


def decode(latent: dict[str, np.ndarray]) -> Particles:
    """Inverse of :func:`encode`."""
    boson = kin.from_resonance_coordinates(latent["Z_m"], latent["Z_pt"], latent["Z_y"],
                                           latent["Z_phi"])
    mum, mup = kin.decay(boson, 0.0, latent["mum_cos"], latent["mum_phi"])
    return {"mum": mum, "mup": mup}


def _kinematics(prefix: str, p: np.ndarray) -> dict[str, np.ndarray]:
    return {f"{prefix}_pt": kin.pt(p), f"{prefix}_eta": kin.pseudorapidity(p),
            f"{prefix}_phi": kin.phi(p)}


def _targets(first: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    harder = (kin.pt(first) >= kin.pt(second))[:, None]
    mu1, mu2 = np.where(harder, first, second), np.where(harder, second, first)
    boson = mu1 + mu2
    return {**_kinematics("mu1", mu1), **_kinematics("mu2", mu2), **_kinematics("Z", boson),
            "Z_m": kin.mass(boson)}


def observables(particles: Particles) -> dict[str, np.ndarray]:
    """The targets (module doc) of the hard-process muons."""
    return _targets(particles["mum"], particles["mup"])


def reco_observables(chunk: dict) -> dict[str, np.ndarray]:
    """The targets' RECO counterparts, from the two selected muons."""
    mu1, mu2, _ = _muon_vectors(chunk)
    return _targets(mu1, mu2)


TASK = UnfoldingTask(
    name="dimuon", summary="Drell-Yan Z/gamma* -> mu mu: hard-process muons and boson",
    process="dy_mumu", reco_branches=RECO_BRANCHES, features=FEATURES, latent=LATENT,
    targets=TARGETS, select=select, reco_features=reco_features, gen_particles=gen_particles,
    encode=encode, decode=decode, observables=observables, reco_observables=reco_observables,
    tilt=lambda targets: targets["Z_pt"],
    z_odd=("mu1_eta", "mu2_eta", "mumu_y", *(f"jet{i}_eta" for i in range(N_JETS)), "Z_y",
           "mum_cos"))
