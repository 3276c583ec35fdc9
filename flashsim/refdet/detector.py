"""The reference detector: GenBatch -> NANOAODSIM RECO collections.

Order of work (all columnar over the batch): pileup overlay -> tracks -> vertices/CHS ->
muons -> PF candidates -> rho -> jets -> muon isolation and jet links -> GEN matching ->
MET -> pT-ordered NanoAOD collections with rebuilt cross-reference indices.
"""

from __future__ import annotations

import time
from collections import defaultdict

import awkward as ak
import numpy as np

from flashsim.nanoaod.muon_working_points import derived_ids
from flashsim.nanoaod.schema import collection_branches
from flashsim.pdg import BOTTOM, CHARM, has_heavy_quark, is_neutrino
from flashsim.refdet.calorimeter import KIND_MU, pf_candidates
from flashsim.refdet.config import DETECTOR_VERSION, DetectorConfig
from flashsim.refdet.jets import cluster_jets
from flashsim.refdet.matching import event_offsets, local_index, match_unique
from flashsim.refdet.met import grid_rho, missing_et
from flashsim.refdet.muons import isolation, muon_ids, reconstruct_muons
from flashsim.refdet.pileup import PileupPool, overlay
from flashsim.refdet.tracker import reconstruct_tracks, reconstruct_vertices

__all__ = ["ReferenceDetector"]

def _flat(array, field) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array[field], axis=None))


def _heavy(aid: np.ndarray, flavour: int) -> np.ndarray:
    """A quark of ``flavour`` (b = 5, c = 4) or a hadron of that heavy flavour."""
    return (aid == flavour) | has_heavy_quark(aid, flavour)


class ReferenceDetector:
    """CMS-like parametric detector; see ``flashsim.refdet`` for the physics model.

    ``pileup_pool``: minimum-bias particle records (``flashsim.generation.minbias_pool``), or
    None for events without pileup (``Pileup_nPU`` = 0).
    ``timing``: seconds spent per stage, accumulated over calls (overlay, tracking,
    clustering, rest) -- for speed measurements.
    """

    VERSION = DETECTOR_VERSION

    def __init__(self, pileup_pool: ak.Array | None, *, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.pool = PileupPool(pileup_pool)
        self.timing: dict[str, float] = defaultdict(float)

    def reconstruct(self, batch, rng: np.random.Generator) -> dict:
        """RECO chunk (Muon, Jet, MET, RawMET, PV, fixedGridRhoFastjetAll) for ``batch``."""
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
        pf = pf_candidates(cols, kin, tracks, mu["src"][pf_mu], mu["pt"][pf_mu], cfg, rng)
        pf_chs = np.where(pf["trk"] >= 0, vertices.chs_removed[np.maximum(pf["trk"], 0)], False)
        rho = grid_rho(pf, n, cfg)
        lap("tracking_pf")

        jets, pf_jet = cluster_jets(pf, ~pf_chs, tracks.dxy, tracks.dxy_err, tracks.dz, rho, n, cfg, rng)
        lap("clustering")

        mu.update(isolation(mu, pf, pf_chs, rho, n))
        mu.update(muon_ids(mu))
        muons = self._muon_jet_variables(mu, pf, pf_jet, jets, rng)
        muons, jets = self._order_and_link(muons, jets, n)
        self._match(muons, jets, nano, n)
        met, raw = missing_et(pf, pf_jet, jets, n, cfg)
        # neutrinos of the hard interaction give the fiducial GEN MET
        nu = (cols["vtx"] < n) & is_neutrino(cols["pdgId"])
        gx = np.bincount(cols["evt"][nu], weights=cols["px"][nu], minlength=n)
        gy = np.bincount(cols["evt"][nu], weights=cols["py"][nu], minlength=n)
        met["fiducialGenPt"], met["fiducialGenPhi"] = np.hypot(gx, gy), np.arctan2(gy, gx)
        chunk = {
            "Muon": self._collection(muons, "Muon", n),
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
    def _muon_jet_variables(self, mu, pf, pf_jet, jets, rng) -> dict:
        """Keep NanoAOD-selected muons; add jet link, lepton-in-jet and MVA-like variables."""
        pf_of_particle = np.full(int(pf["src"].max(initial=0)) + 1 if len(pf["src"]) else 1, -1, np.int64)
        pf_of_particle[pf["src"]] = np.arange(len(pf["src"]))
        keep = mu["selected"]
        m = {k: v[keep] for k, v in mu.items()}
        cand = np.where(m["src"] < len(pf_of_particle), pf_of_particle[np.minimum(m["src"], len(pf_of_particle) - 1)], -1)
        is_pf_mu = (cand >= 0) & (pf["kind"][np.maximum(cand, 0)] == KIND_MU)
        jet = np.where(is_pf_mu, pf_jet[np.maximum(cand, 0)], -1)
        m["_jet_global"] = jet
        has = jet >= 0
        j = np.maximum(jet, 0)
        jpt = np.where(has, jets["pt"][j] if len(jets["pt"]) else 0.0, 0.0)
        pt, eta, phi = m["pt"], m["eta"], m["phi"]
        ratio = np.where(has, pt / np.maximum(jpt, 1e-9), 1.0)
        m["jetRelIso"] = np.where(has, 1.0 / ratio - 1.0, m["pfRelIso04_all"])
        # pT of the muon relative to the (jet - muon) axis
        if len(jets["pt"]):
            jx, jy, jz = (jets["pt"][j] * np.cos(jets["phi"][j]), jets["pt"][j] * np.sin(jets["phi"][j]),
                          jets["pt"][j] * np.sinh(jets["eta"][j]))
        else:
            jx = jy = jz = np.zeros(len(pt))
        mx, my, mz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        ax, ay, az = jx - mx, jy - my, jz - mz
        cross = np.sqrt((my * az - mz * ay) ** 2 + (mz * ax - mx * az) ** 2 + (mx * ay - my * ax) ** 2)
        m["jetPtRelv2"] = np.where(has, cross / np.maximum(np.sqrt(ax**2 + ay**2 + az**2), 1e-9), 0.0)
        sin_theta = 1.0 / np.cosh(eta)
        m["ip3d"] = np.hypot(m["dxy"], m["dz"] * sin_theta)
        m["sip3d"] = m["ip3d"] / np.hypot(m["dxyErr"], m["dzErr"] * sin_theta)
        k = len(pt)
        m["mass"] = np.full(k, 0.10566)
        m["pdgId"] = (-13 * m["charge"]).astype(np.int32)
        m["mvaTTH"] = np.tanh(1.8 - 8.0 * m["miniPFRelIso_all"] - 0.25 * m["sip3d"]
                              - 1.2 * np.minimum(m["jetRelIso"], 2.0) + 0.4 * m["mediumId"]
                              + 0.1 * rng.standard_normal(k))
        m["softMva"] = np.tanh(2.5 * m["segmentComp"] - 1.2 + 0.6 * m["isGlobal"] - 0.1 * m["_chi2"]
                               + 0.1 * rng.standard_normal(k))
        m.update(derived_ids(m))
        m["mvaLowPt"] = np.tanh(3.0 * (m["segmentComp"] - 0.5) + 0.2 * rng.standard_normal(k))
        mini, rel = m["miniPFRelIso_all"], np.where(has, ratio, 1.0)
        ptrel = m["jetPtRelv2"]
        m["multiIsoId"] = ((mini < 0.16) & ((rel > 0.76) | (ptrel > 7.2))).astype(np.uint8) + (
            (mini < 0.12) & ((rel > 0.80) | (ptrel > 7.2)))
        m["tunepRelPt"] = 1.0 + np.where(pt > 200, 0.02, 0.003) * rng.standard_normal(k)
        m["inTimeMuon"] = rng.random(k) < 0.999
        m["fsrPhotonIdx"] = np.full(k, -1, np.int32)
        m["cleanmask"] = np.ones(k, np.uint8)
        return m

    # ------------------------------------------------------------------ ordering and links
    def _order_and_link(self, m: dict, jets: dict, n: int) -> tuple[dict, dict]:
        """pT-order muons; muon <-> jet indices as event-local indices of the ordered collections."""
        order = np.lexsort((-m["pt"], m["evt"]))
        m = {k: v[order] for k, v in m.items()}
        jet_off = event_offsets(jets["evt"], n)
        jg = m["_jet_global"]
        m["jetIdx"] = np.where(jg >= 0, jg - jet_off[m["evt"]], -1).astype(np.int32)
        mu_local = local_index(m["evt"], n)
        nj = len(jets["evt"])
        idx = np.full((nj, 2), -1, np.int64)
        linked = np.flatnonzero(jg >= 0)  # already in muon pT order, so the first two are leading
        lj = jg[linked]
        o = np.argsort(lj, kind="stable")
        lj_sorted, lm = lj[o], linked[o]
        start = np.ones(len(lj_sorted), dtype=bool)
        start[1:] = lj_sorted[1:] != lj_sorted[:-1]
        first_pos = np.maximum.accumulate(np.where(start, np.arange(len(lj_sorted)), 0))
        rank = np.arange(len(lj_sorted)) - first_pos
        two = rank < 2
        idx[lj_sorted[two], rank[two]] = mu_local[lm[two]]
        jets = dict(jets)
        jets["muonIdx1"], jets["muonIdx2"] = idx[:, 0], idx[:, 1]
        jets["electronIdx1"] = jets["electronIdx2"] = np.full(nj, -1, np.int32)
        jets["cleanmask"] = np.ones(nj, np.uint8)
        return m, jets

    # ------------------------------------------------------------------ GEN matching
    def _match(self, m: dict, jets: dict, nano: dict, n: int) -> None:
        cfg = self.config
        gp = nano["GenPart"]
        gcount = ak.to_numpy(ak.num(gp, axis=1))
        goff = np.concatenate([[0], np.cumsum(gcount)])
        gevt = np.repeat(np.arange(n), gcount)
        g_pt, g_eta, g_phi = (_flat(gp, f).astype(np.float64) for f in ("pt", "eta", "phi"))
        g_id, g_status = _flat(gp, "pdgId"), _flat(gp, "status")
        g_flags, g_mother = _flat(gp, "statusFlags"), _flat(gp, "genPartIdxMother")
        gmu = np.flatnonzero((np.abs(g_id) == 13) & (g_status == 1))

        def compatible(ia, ib):
            return np.abs(m["pt"][ia] - g_pt[gmu][ib]) < cfg.muon_match_dpt * g_pt[gmu][ib]

        hit = match_unique(m["evt"], m["eta"], m["phi"], gevt[gmu], g_eta[gmu], g_phi[gmu], n,
                           cfg.muon_match_dr, compatible)
        gidx = np.where(hit >= 0, gmu[np.maximum(hit, 0)], -1)
        m["genPartIdx"] = np.where(gidx >= 0, gidx - goff[m["evt"]], -1).astype(np.int32)
        # flavour of origin: walk up the mother chain (a bounded loop over generations)
        flav = np.zeros(len(gidx), np.uint8)
        matched = gidx >= 0
        flags = g_flags[np.maximum(gidx, 0)]
        prompt = matched & ((flags & 1) != 0)
        from_tau = matched & ~prompt & ((flags & (1 << 5)) != 0)
        has_b = np.zeros(len(gidx), bool)
        has_c = np.zeros(len(gidx), bool)
        cur = np.where(matched, g_mother[np.maximum(gidx, 0)], -1)
        base = goff[m["evt"]]
        for _ in range(64):
            alive = cur >= 0
            if not alive.any():
                break
            aid = np.abs(g_id[np.where(alive, base + cur, 0)])
            has_b |= alive & _heavy(aid, BOTTOM)
            has_c |= alive & _heavy(aid, CHARM)
            cur = np.where(alive, g_mother[np.where(alive, base + cur, 0)], -1)
        flav[matched] = 3
        flav[matched & has_c] = 4
        flav[matched & has_b] = 5
        flav[from_tau] = 15
        flav[prompt] = 1
        m["genPartFlav"] = flav

        gj = nano["GenJet"]
        jcount = ak.to_numpy(ak.num(gj, axis=1))
        joff = np.concatenate([[0], np.cumsum(jcount)])
        jevt = np.repeat(np.arange(n), jcount)
        j_eta, j_phi = _flat(gj, "eta").astype(np.float64), _flat(gj, "phi").astype(np.float64)
        hit = match_unique(jets["evt"], jets["eta"], jets["phi"], jevt, j_eta, j_phi, n, cfg.jet_match_dr)
        jets["genJetIdx"] = np.where(hit >= 0, hit - joff[jets["evt"]], -1).astype(np.int32)
        h = np.maximum(hit, 0)
        for field in ("hadronFlavour", "partonFlavour"):
            values = _flat(gj, field).astype(np.int32) if len(j_eta) else np.zeros(1, np.int32)
            jets[field] = np.where(hit >= 0, values[h] if len(j_eta) else 0, 0).astype(np.int32)

    # ------------------------------------------------------------------ output
    @staticmethod
    def _collection(table: dict, name: str, n: int) -> ak.Array:
        """Collection ``name`` with every schema branch of it, in schema dtypes."""
        counts = np.bincount(table["evt"], minlength=n)
        out = {field: np.asarray(table[field]).astype(spec.dtype)
               for field, spec in collection_branches(name).items()}
        return ak.unflatten(ak.zip(out), counts)
