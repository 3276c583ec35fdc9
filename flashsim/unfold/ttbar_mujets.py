r"""Task ``ttbar_mujets``: semi-leptonic :math:`t\bar t \to b\,q\bar q'\;\bar b\,\mu\nu` unfolded
to parton level, the benchmark of Shmakov et al. 2023 (arXiv:2305.10399), on the
``ttbar_mujets`` process.

GEN (from ``GenPart``): the tops and W bosons are the ``isLastCopy`` ones (the copies that
decay); the six partons are their hard-process decay products (``isHardProcess`` and
``isFirstCopy``): the b quark of each top, the quark and antiquark of the hadronic W, the
muon and neutrino of the leptonic W. The muon's charge tells the sides apart (a
:math:`\mu^-` comes from the :math:`\bar t`). Targets, each as
(M, log E, px, py, pz) with E, p in GeV as in that paper: ``b_had``, ``q1``, ``q2`` (the
harder and softer light quark), ``b_lep``, ``nu``, ``mu`` (massless in GenPart, which
stores masses only above 10 GeV: their M is 0 and not a target), ``W_had``, ``W_lep``,
``t_had``, ``t_lep`` and ``ttbar``, the composites as sums of their partons.

Latent coordinates of the flow (18 for 18 parton momenta, no constraint): per side, the
top's :math:`\log m`, :math:`\log(1 + p_T)`, :math:`y`, :math:`\phi`; :math:`m_W/m_t`
(logit); the b direction in the top rest frame (:math:`\cos\theta^*, \phi^*`); the quark
(hadronic side) or muon (leptonic side) direction in the W rest frame.

RECO selection (the paper's): exactly one muon with ``tightId``, ``pfRelIso04_all < 0.15``
(the tight isolation working point), :math:`p_T > 25` GeV, :math:`|\eta| < 2.4`; at least four
jets with :math:`p_T > 25` GeV, :math:`|\eta| < 2.5`, :math:`\Delta R > 0.4` from the muon; at
least two of them b-tagged (``btagDeepFlavB`` > 0.2770, medium). RECO features: the muon,
MET and up to 10 of those jets (:math:`p_T, \eta, \phi, m`, b-tag score), azimuths relative
to the muon. RECO proxies (for IBU): the muon's (log E, px, py, pz), the neutrino's px, py
from MET. Tilt variable of the model-dependence test: :math:`p_T` of the hadronic top.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.kinematics import delta_phi, delta_r
from flashsim.models.transforms import ColumnSpec
from flashsim.objects.jet import DEEPJET_WORKING_POINTS
from flashsim.unfold import kinematics as kin
from flashsim.unfold.dimuon import padded_objects
from flashsim.unfold.task import Particles, Target, UnfoldingTask, collection, status_flag

__all__ = ["TASK"]

BTAG_MEDIUM = DEEPJET_WORKING_POINTS[1]
N_JETS = 10
_MUON_MASS = 0.10566
_MUON_FIELDS = ("pt", "eta", "phi", "charge", "tightId", "pfRelIso04_all")
_JET_FIELDS = ("pt", "eta", "phi", "mass", "btagDeepFlavB")
PARTONS = ("b_had", "q1", "q2", "b_lep", "nu", "mu")
COMPOSITES = ("W_had", "W_lep", "t_had", "t_lep", "ttbar")
_COMPONENTS = {"m": ("GeV", "mass"), "logE": ("", "log(E/GeV)"), "px": ("GeV", "px"),
               "py": ("GeV", "py"), "pz": ("GeV", "pz")}
_DOCS = {"b_had": "b quark of the hadronic top", "q1": "harder quark of the hadronic W",
         "q2": "softer quark of the hadronic W", "b_lep": "b quark of the leptonic top",
         "nu": "neutrino", "mu": "muon of the leptonic W (hard process)",
         "W_had": "hadronic W", "W_lep": "leptonic W", "t_had": "hadronic top",
         "t_lep": "leptonic top", "ttbar": "top-antitop system"}

TARGETS = tuple(
    Target(f"{p}_{c}", unit, f"{doc} of the {_DOCS[p]}")
    for p in (*PARTONS, *COMPOSITES) for c, (unit, doc) in _COMPONENTS.items()
    if not (c == "m" and p in PARTONS))

LATENT = tuple(
    ColumnSpec(f"{name}_{side}", transform=transform, offset=offset, spikes=False)
    for side in ("had", "lep")
    for name, transform, offset in (
        ("t_m", "log", 0.0), ("t_pt", "log", 1.0), ("t_y", "none", 0.0), ("t_phi", "none", 0.0),
        ("w_fraction", "logit", 0.0), ("b_cos", "none", 0.0), ("b_phi", "none", 0.0),
        ("d_cos", "none", 0.0), ("d_phi", "none", 0.0)))

FEATURES = (
    ColumnSpec("mu_logpt"), ColumnSpec("mu_eta"), ColumnSpec("mu_charge"),
    ColumnSpec("met_logpt"), ColumnSpec("met_dphi"), ColumnSpec("n_jets"),
    ColumnSpec("n_bjets"),
    *(ColumnSpec(f"jet{i}_{v}") for i in range(N_JETS)
      for v in ("present", "logpt", "eta", "dphi", "logmass", "btagDeepFlavB")),
)

RECO_BRANCHES = (*(f"Muon_{f}" for f in _MUON_FIELDS), *(f"Jet_{f}" for f in _JET_FIELDS),
                 "MET_pt", "MET_phi")


def _objects(chunk: dict) -> tuple[ak.Array, ak.Array]:
    """Tight isolated muons and the selected jets (module doc), pT-ordered."""
    mu = collection(chunk, "Muon", _MUON_FIELDS)
    mu = mu[(mu.tightId == 1) & (mu.pfRelIso04_all < 0.15) & (mu.pt > 25) & (abs(mu.eta) < 2.4)]
    mu = mu[ak.argsort(mu.pt, axis=1, ascending=False)]
    jets = collection(chunk, "Jet", _JET_FIELDS)
    lead = ak.firsts(mu)
    distance = delta_r(jets.eta, jets.phi, ak.fill_none(lead.eta, 0.0),
                       ak.fill_none(lead.phi, 0.0))
    jets = jets[(jets.pt > 25) & (abs(jets.eta) < 2.5) & ((distance > 0.4) | ak.is_none(lead))]
    return mu, jets[ak.argsort(jets.pt, axis=1, ascending=False)]


def select(chunk: dict) -> np.ndarray:
    """One tight isolated muon, at least four jets, at least two medium b tags."""
    mu, jets = _objects(chunk)
    return ak.to_numpy((ak.num(mu) == 1) & (ak.num(jets) >= 4)
                       & (ak.sum(jets.btagDeepFlavB > BTAG_MEDIUM, axis=1) >= 2))


def _muon_vector(mu: ak.Array) -> np.ndarray:
    return kin.from_pt_eta_phi_m(ak.to_numpy(mu.pt[:, 0]), ak.to_numpy(mu.eta[:, 0]),
                                 ak.to_numpy(mu.phi[:, 0]), _MUON_MASS)


def reco_features(chunk: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RECO features of selected events and the reference azimuth (the muon's)."""
    mu, jets = _objects(chunk)
    muon = _muon_vector(mu)
    frame = kin.phi(muon)
    features = {
        "mu_logpt": np.log(kin.pt(muon)), "mu_eta": kin.pseudorapidity(muon),
        "mu_charge": ak.to_numpy(mu.charge[:, 0]).astype(np.float64),
        "met_logpt": np.log1p(np.asarray(chunk["MET_pt"], dtype=np.float64)),
        "met_dphi": delta_phi(np.asarray(chunk["MET_phi"], dtype=np.float64), frame),
        "n_jets": ak.to_numpy(ak.num(jets)).astype(np.float64),
        "n_bjets": ak.to_numpy(ak.sum(jets.btagDeepFlavB > BTAG_MEDIUM, axis=1))
        .astype(np.float64),
    }
    features.update(padded_objects(jets, N_JETS, frame,
                                   ("logpt", "eta", "dphi", "logmass", "btagDeepFlavB"), "jet"))
    return features, frame


def gen_particles(chunk: dict) -> tuple[Particles, np.ndarray]:
    """The six hard-process partons (module doc) and whether every one was found once."""
    part = collection(chunk, "GenPart", ("pt", "eta", "phi", "pdgId", "statusFlags",
                                         "genPartIdxMother"))
    flags = part.statusFlags
    mother = part.genPartIdxMother
    mother_id = ak.where(mother >= 0, part.pdgId[ak.where(mother >= 0, mother, 0)], 0)
    hard = status_flag(flags, "isHardProcess") & status_flag(flags, "isFirstCopy")
    from_w = hard & (abs(mother_id) == 24)
    muon = part[from_w & (abs(part.pdgId) == 13)]
    ok = ak.to_numpy(ak.num(muon)) == 1
    # a mu- comes from the W- of the tbar: the leptonic top is then the tbar (sign -1)
    lep_sign = -np.sign(ak.to_numpy(ak.fill_none(ak.firsts(muon.pdgId), 13)))
    lep_sign_per_particle = ak.broadcast_arrays(lep_sign, part.pdgId)[0]

    def one(mask) -> np.ndarray:
        nonlocal ok
        chosen = part[mask]
        ok &= ak.to_numpy(ak.num(chosen)) == 1
        first = ak.firsts(chosen)
        return kin.from_pt_eta_phi_m(ak.to_numpy(ak.fill_none(first.pt, 1.0)),
                                     ak.to_numpy(ak.fill_none(first.eta, 0.0)),
                                     ak.to_numpy(ak.fill_none(first.phi, 0.0)), 0.0)

    b = hard & (abs(part.pdgId) == 5) & (abs(mother_id) == 6)
    # the b of the leptonic top has the sign of the leptonic top: b from t, bbar from tbar
    b_sign = np.sign(part.pdgId)
    quark = from_w & (abs(part.pdgId) <= 5)
    particles = {
        "b_had": one(b & (b_sign != lep_sign_per_particle)),
        "b_lep": one(b & (b_sign == lep_sign_per_particle)),
        "q": one(quark & (part.pdgId > 0)),
        "qbar": one(quark & (part.pdgId < 0)),
        "mu": one(from_w & (abs(part.pdgId) == 13)),
        "nu": one(from_w & (abs(part.pdgId) == 14)),
    }
    return particles, ok


def encode(particles: Particles) -> dict[str, np.ndarray]:
    """Latent coordinates (module doc) of the six partons."""
    out = {}
    sides = {"had": ("b_had", "q", "qbar"), "lep": ("b_lep", "mu", "nu")}
    for side, (b, first, second) in sides.items():
        w = particles[first] + particles[second]
        top = particles[b] + w
        res = kin.resonance_coordinates(top)
        b_angles = kin.decay_angles(top, particles[b])
        d_angles = kin.decay_angles(w, particles[first])
        out.update({f"t_m_{side}": res["m"], f"t_pt_{side}": res["pt"], f"t_y_{side}": res["y"],
                    f"t_phi_{side}": res["phi"],
                    f"w_fraction_{side}": kin.mass(w) / np.maximum(res["m"], 1e-12),
                    f"b_cos_{side}": b_angles["cos"], f"b_phi_{side}": b_angles["phi"],
                    f"d_cos_{side}": d_angles["cos"], f"d_phi_{side}": d_angles["phi"]})
    return out


def decode(latent: dict[str, np.ndarray]) -> Particles:
    """Inverse of :func:`encode`."""
    out = {}
    names = {"had": ("b_had", "q", "qbar"), "lep": ("b_lep", "mu", "nu")}
    for side, (b, first, second) in names.items():
        m_top = latent[f"t_m_{side}"]
        top = kin.from_resonance_coordinates(m_top, latent[f"t_pt_{side}"],
                                             latent[f"t_y_{side}"], latent[f"t_phi_{side}"])
        m_w = np.clip(latent[f"w_fraction_{side}"], 0.0, 1.0) * m_top
        out[b], w = kin.decay(top, m_w, latent[f"b_cos_{side}"], latent[f"b_phi_{side}"])
        out[first], out[second] = kin.decay(w, 0.0, latent[f"d_cos_{side}"],
                                            latent[f"d_phi_{side}"])
    return out


def _components(name: str, p: np.ndarray, with_mass: bool) -> dict[str, np.ndarray]:
    out = {f"{name}_logE": kin.log_energy(p), f"{name}_px": p[..., 1], f"{name}_py": p[..., 2],
           f"{name}_pz": p[..., 3]}
    if with_mass:
        out = {f"{name}_m": kin.mass(p), **out}
    return out


def observables(particles: Particles) -> dict[str, np.ndarray]:
    """The targets (module doc) of the six partons."""
    harder = (kin.pt(particles["q"]) >= kin.pt(particles["qbar"]))[:, None]
    p = {"b_had": particles["b_had"],
         "q1": np.where(harder, particles["q"], particles["qbar"]),
         "q2": np.where(harder, particles["qbar"], particles["q"]),
         "b_lep": particles["b_lep"], "nu": particles["nu"], "mu": particles["mu"]}
    p["W_had"] = p["q1"] + p["q2"]
    p["W_lep"] = p["mu"] + p["nu"]
    p["t_had"] = p["b_had"] + p["W_had"]
    p["t_lep"] = p["b_lep"] + p["W_lep"]
    p["ttbar"] = p["t_had"] + p["t_lep"]
    out: dict[str, np.ndarray] = {}
    for name, vector in p.items():
        out.update(_components(name, vector, name in COMPOSITES))
    return {t.name: out[t.name] for t in TARGETS}


def reco_observables(chunk: dict) -> dict[str, np.ndarray]:
    """RECO counterparts: the muon's (log E, px, py, pz) and MET as the neutrino's px, py."""
    mu, _ = _objects(chunk)
    muon = _muon_vector(mu)
    met, met_phi = (np.asarray(chunk[n], dtype=np.float64) for n in ("MET_pt", "MET_phi"))
    return {**_components("mu", muon, False), "nu_px": met * np.cos(met_phi),
            "nu_py": met * np.sin(met_phi)}


TASK = UnfoldingTask(
    name="ttbar_mujets", summary="semi-leptonic ttbar, muon channel: partons, W, tops",
    process="ttbar_mujets", reco_branches=RECO_BRANCHES, features=FEATURES, latent=LATENT,
    targets=TARGETS, select=select, reco_features=reco_features, gen_particles=gen_particles,
    encode=encode, decode=decode, observables=observables, reco_observables=reco_observables,
    tilt=lambda targets: np.hypot(targets["t_had_px"], targets["t_had_py"]),
    z_odd=("mu_eta", *(f"jet{i}_eta" for i in range(N_JETS)),
           *(f"{v}_{side}" for side in ("had", "lep") for v in ("t_y", "b_cos", "d_cos"))))
