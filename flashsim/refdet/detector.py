"""The reference detector: GenBatch -> NANOAODSIM RECO collections.

Order of work (all columnar over the batch): pileup overlay -> tracks -> vertices/CHS ->
muons -> calorimeter deposits and electron candidates -> PF candidates (PF electrons absorb
their supercluster photons) -> rho -> jets -> lepton isolation, identification and jet links
-> GEN matching -> MET -> pT-ordered NanoAOD collections with rebuilt cross-reference indices.
"""

from __future__ import annotations

import time
from collections import defaultdict

import awkward as ak
import numpy as np

from flashsim.nanoaod.mc_match import gen_match
from flashsim.nanoaod.muon_working_points import derived_ids, multi_iso_id
from flashsim.nanoaod.schema import reco_branches
from flashsim.pdg import is_neutrino
from flashsim.refdet import electrons as electron_reco
from flashsim.refdet.calorimeter import KIND_MU, pf_candidates
from flashsim.refdet.config import DETECTOR_VERSION, DetectorConfig
from flashsim.refdet.jets import cluster_jets
from flashsim.refdet.leptons import (
    impact_parameters,
    jet_links,
    jet_variables,
    mva_tth,
    pf_index_of,
)
from flashsim.refdet.matching import match_unique
from flashsim.refdet.met import grid_rho, missing_et
from flashsim.refdet.muons import isolation, muon_ids, reconstruct_muons
from flashsim.refdet.pileup import PileupPool, overlay
from flashsim.refdet.tracker import reconstruct_tracks, reconstruct_vertices

__all__ = ["ReferenceDetector"]

def _flat(array, field) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array[field], axis=None))


class ReferenceDetector:
    """CMS-like parametric detector; see ``flashsim.refdet`` for the physics model.

    ``pileup_pool``: minimum-bias particle records (``flashsim.generation.minbias_pool``), or
    None for events without pileup (``Pileup_nPU`` = 0).
    ``timing``: seconds spent per stage, accumulated over calls (overlay, tracking,
    electrons, pf, clustering, rest) -- for speed measurements.
    """

    VERSION = DETECTOR_VERSION

    def __init__(self, pileup_pool: ak.Array | None, *, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.pool = PileupPool(pileup_pool)
        self.timing: dict[str, float] = defaultdict(float)

    def reconstruct(self, batch, rng: np.random.Generator) -> dict:
        """RECO chunk (Muon, Electron, Jet, MET, RawMET, PV, fixedGridRhoFastjetAll) for ``batch``."""
        cfg = self.config
        clock = time.perf_counter()

        def lap(stage):
            nonlocal clock
            now = time.perf_counter()
            self.timing[stage] += now - clock
            clock = now

        nano = batch.nano
        n_pu = ak.to_numpy(nano["Pileup"]["nPU"]).astype(np.int64)
        ov = overlay(batch.particles, self.pool, n_pu, rng, cfg.beamspot_sigma_z)
        n = ov.n_events
        cols = ov.cols
        pt = np.hypot(cols["px"], cols["py"])
        kin = {"pt": pt, "eta": np.arcsinh(cols["pz"] / np.maximum(pt, 1e-9)),
               "phi": np.arctan2(cols["py"], cols["px"])}
        lap("overlay")

        tracks = reconstruct_tracks(cols, kin, cfg, rng)
        vertices = reconstruct_vertices(tracks, cols, ov.vertex_evt, ov.vertex_z, ov.hard_z, cfg, rng)
        mu = reconstruct_muons(cols, kin, tracks, cfg, rng)
        pf_mu = mu["isPFcand"]
        lap("tracking")
        deposits = electron_reco.calorimeter_deposits(cols, kin, ov.hard_z, cfg, rng)
        ele = electron_reco.reconstruct_electrons(cols, kin, tracks, deposits, n_pu, cfg, rng)
        lap("electrons")
        pf = pf_candidates(cols, kin, tracks, mu["src"][pf_mu], mu["pt"][pf_mu], cfg, rng,
                           electrons=self._pf_electrons(ele, mu["src"][pf_mu]))
        pf_chs = np.where(pf["trk"] >= 0, vertices.chs_removed[np.maximum(pf["trk"], 0)], False)
        rho = grid_rho(pf, n, cfg)
        lap("pf")

        jets, pf_jet = cluster_jets(pf, ~pf_chs, tracks.dxy, tracks.dxy_err, tracks.dz, rho, n, cfg, rng)
        lap("clustering")

        mu.update(isolation(mu, pf, pf_chs, rho))
        mu.update(muon_ids(mu))
        muons = self._muon_variables(mu, pf, pf_jet, jets, rng)
        pf_dz = np.where(pf["trk"] >= 0, tracks.dz[np.maximum(pf["trk"], 0)], 0.0)
        electrons = self._electron_variables(ele, pf, pf_chs, pf_dz, pf_jet, jets, rho, rng)
        muons = self._order(muons)
        electrons = self._order(electrons)
        jets = dict(jets)
        for lepton, prefix in ((muons, "muon"), (electrons, "electron")):
            lepton["jetIdx"], index, count = jet_links(lepton, jets, n)
            jets[f"{prefix}Idx1"], jets[f"{prefix}Idx2"] = index[:, 0], index[:, 1]
            jets[f"n{prefix.capitalize()}s"] = count
        jets["cleanmask"] = np.ones(len(jets["evt"]), np.uint8)
        gp = nano["GenPart"]
        muons["genPartIdx"], muons["genPartFlav"] = gen_match(
            muons, gp, n, (13,), cfg.muon_match_dr, cfg.muon_match_dpt)
        electrons["genPartIdx"], electrons["genPartFlav"] = gen_match(
            electrons, gp, n, (11, 22), cfg.electron_match_dr, cfg.electron_match_dpt)
        self._match_jets(jets, nano, n)
        met, raw = missing_et(pf, pf_jet, jets, n, cfg)
        # neutrinos of the hard interaction give the fiducial GEN MET
        nu = (cols["vtx"] < n) & is_neutrino(cols["pdgId"])
        gx = np.bincount(cols["evt"][nu], weights=cols["px"][nu], minlength=n)
        gy = np.bincount(cols["evt"][nu], weights=cols["py"][nu], minlength=n)
        met["fiducialGenPt"], met["fiducialGenPhi"] = np.hypot(gx, gy), np.arctan2(gy, gx)
        chunk = {
            "Muon": self._collection(muons, "Muon", n),
            "Electron": self._collection(electrons, "Electron", n),
            "Jet": self._collection(jets, "Jet", n),
            "MET": ak.zip({k: v.astype(np.float32) for k, v in met.items()}),
            "RawMET": ak.zip({k: v.astype(np.float32) for k, v in raw.items()}),
            "PV": ak.zip({k: (v.astype(np.int32) if k.startswith("npvs") else v.astype(np.float32))
                          for k, v in vertices.pv_fields.items()}),
            "fixedGridRhoFastjetAll": rho.astype(np.float32),
        }
        lap("rest")
        return chunk

    # ------------------------------------------------------------------ muons
    @staticmethod
    def _muon_variables(mu, pf, pf_jet, jets, rng) -> dict:
        """Keep NanoAOD-selected muons; add jet link, lepton-in-jet and MVA-like variables."""
        m = {k: v[mu["selected"]] for k, v in mu.items()}
        cand = pf_index_of(pf, m["src"])
        is_pf_mu = (cand >= 0) & (pf["kind"][np.maximum(cand, 0)] == KIND_MU)
        m.update(jet_variables(m, np.where(is_pf_mu, cand, -1), pf_jet, jets, m["pfRelIso04_all"]))
        m.update(impact_parameters(m))
        k = len(m["pt"])
        m["mass"] = np.full(k, 0.10566)
        m["pdgId"] = (-13 * m["charge"]).astype(np.int32)
        m["mvaTTH"] = mva_tth(m, m["mediumId"], rng.standard_normal(k))
        m["softMva"] = np.tanh(2.5 * m["segmentComp"] - 1.2 + 0.6 * m["isGlobal"] - 0.1 * m["_chi2"]
                               + 0.1 * rng.standard_normal(k))
        m.update(derived_ids(m))
        m["mvaLowPt"] = np.tanh(3.0 * (m["segmentComp"] - 0.5) + 0.2 * rng.standard_normal(k))
        m["multiIsoId"] = multi_iso_id(m["miniPFRelIso_all"], m["_pt_ratio"], m["jetPtRelv2"])
        m["tunepRelPt"] = 1.0 + np.where(m["pt"] > 200, 0.02, 0.003) * rng.standard_normal(k)
        m["inTimeMuon"] = rng.random(k) < 0.999
        m["fsrPhotonIdx"] = np.full(k, -1, np.int32)
        m["cleanmask"] = np.ones(k, np.uint8)
        return m

    # ------------------------------------------------------------------ electrons
    @staticmethod
    def _pf_electrons(ele: dict, pf_muon_src: np.ndarray) -> dict:
        """PF electrons (PF-identified candidates not already PF muons) and the photons their
        superclusters absorb, for :func:`~flashsim.refdet.calorimeter.pf_candidates`."""
        pf_e = ele["isPFcand"] & ele["_candidate"] & ~np.isin(ele["src"], pf_muon_src)
        members_e, members_p = ele["_members"]
        absorbed = np.unique(members_p[pf_e[members_e]])
        pf = {name: ele[name][pf_e] for name in ("src", "pt", "eta", "phi", "charge")}
        pf["absorbed"] = absorbed[~np.isin(absorbed, pf["src"])]
        return pf

    def _electron_variables(self, ele, pf, pf_chs, pf_dz, pf_jet, jets, rho, rng) -> dict:
        """Keep NanoAOD-selected electrons; add isolation, identification, jet variables."""
        cfg = self.config
        keep = ele["_candidate"] & (ele["pt"] > cfg.electron_pt_min)
        index = np.full(len(keep), -1, np.int64)
        index[keep] = np.arange(int(keep.sum()))
        members_e, members_p = ele["_members"]
        inside = keep[members_e]
        e = {k: v[keep] for k, v in ele.items() if k not in ("_members", "_non_pf_iso")}
        e["_members"] = (index[members_e[inside]], members_p[inside])
        e["_non_pf_iso"] = {k: v[keep] for k, v in ele["_non_pf_iso"].items()}
        e.update(electron_reco.isolation(e, pf, pf_chs, pf_dz, rho, cfg))
        e.update(electron_reco.identification(e, rho, cfg, rng))
        e.update(jet_variables(e, pf_index_of(pf, e["src"]), pf_jet, jets, e["_pfRelIso04_all"]))
        e.update(impact_parameters(e))
        k = len(e["pt"])
        e["pdgId"] = (-11 * e["charge"]).astype(np.int32)
        e["mvaTTH"] = mva_tth(e, e["cutBased"] >= 3, rng.standard_normal(k))
        e["seedGain"] = np.where(e["_e_sc"] * 0.8 < 150.0, 12, np.where(e["_e_sc"] * 0.8 < 300.0, 6, 1))
        e["photonIdx"] = np.full(k, -1, np.int32)
        e["cleanmask"] = np.ones(k, np.uint8)
        return e

    # ------------------------------------------------------------------ ordering
    @staticmethod
    def _order(lepton: dict) -> dict:
        """Leptons pT-ordered within events (the jet links need this order)."""
        order = np.lexsort((-lepton["pt"], lepton["evt"]))
        return {k: v[order] for k, v in lepton.items() if isinstance(v, np.ndarray)}

    # ------------------------------------------------------------------ GEN matching of jets
    def _match_jets(self, jets: dict, nano: dict, n: int) -> None:
        gj = nano["GenJet"]
        jcount = ak.to_numpy(ak.num(gj, axis=1))
        joff = np.concatenate([[0], np.cumsum(jcount)])
        jevt = np.repeat(np.arange(n), jcount)
        j_eta, j_phi = _flat(gj, "eta").astype(np.float64), _flat(gj, "phi").astype(np.float64)
        hit = match_unique(jets["evt"], jets["eta"], jets["phi"], jevt, j_eta, j_phi, n,
                           self.config.jet_match_dr)
        jets["genJetIdx"] = np.where(hit >= 0, hit - joff[jets["evt"]], -1).astype(np.int32)
        h = np.maximum(hit, 0)
        for field in ("hadronFlavour", "partonFlavour"):
            values = _flat(gj, field).astype(np.int32) if len(j_eta) else np.zeros(1, np.int32)
            jets[field] = np.where(hit >= 0, values[h] if len(j_eta) else 0, 0).astype(np.int32)

    # ------------------------------------------------------------------ output
    @staticmethod
    def _collection(table: dict, name: str, n: int) -> ak.Array:
        """Collection ``name`` with every branch a reconstruction writes
        (:func:`~flashsim.nanoaod.schema.reco_branches`), in schema dtypes."""
        counts = np.bincount(table["evt"], minlength=n)
        out = {field: np.asarray(table[field]).astype(spec.dtype)
               for field, spec in reco_branches(name).items()}
        return ak.unflatten(ak.zip(out), counts)
