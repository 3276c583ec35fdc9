"""CMS GenPart from a Pythia event record: HepMC status, the 15 statusFlags, pruning, mothers.

Everything runs columnar on the flat batch arrays of :class:`~flashsim.generation.pythia.Record`
(global indices over all events), following CMSSW exactly where the Pythia history allows:

* ``status`` is the HepMC status CMS stores (Pythia ``Particle::statusHepMC``): 1 final, 2 decayed
  hadron / muon / tau (whose first daughter is not a copy of itself), 4 beam, otherwise
  ``|Pythia status|`` (21-29 hard process, 44 recoil, 51/52 FSR, 62 primordial kT, 71-73 partons
  entering hadronisation, ...).  The "system" line (record position 0) does not exist in HepMC.
* ``statusFlags`` bits 0-14 follow ``CommonTools/CandUtils/interface/MCTruthHelper.h``
  (``fillGenStatusFlags``) on the HepMC graph: ``mother(p)`` is the first mother, a *copy* is a
  mother/daughter with the same pdgId, ``isDecayedLeptonHadron`` = status 2 hadron/mu/tau that is
  its last copy, ``isPrompt`` = no decayed hadron/mu/tau among the ancestors, ``isHardProcess`` =
  status 21-29, or a status 1/2 particle whose mother's first copy has status 22 (resonance decay)
  and whose mother's next copy is not an FSR copy (51-59), ``fromHardProcess`` = a copy above (or
  itself) is hard process, ``fromHardProcessBeforeFSR``, ``isFirstCopy``, ``isLastCopy``,
  ``isLastCopyBeforeFSR`` as in MCTruthHelper (FSR = a daughter with pdgId 21 or 22).  Ancestor
  walks are vectorised by pointer doubling (``O(log depth)`` numpy passes, no loop over particles).
* Pruning composes the two CMS ``GenParticlePruner`` stages: MiniAOD ``prunedGenParticles``
  (``PhysicsTools/PatAlgos/python/slimming/prunedGenParticles_cfi.py``) on the full record, then
  NanoAOD ``finalGenParticles`` (``PhysicsTools/NanoAOD/python/genparticles_cff.py``, NanoAODv6 /
  2018 list) on the survivors, rule by rule in order (later rules override, ``+``/``++`` keep
  mothers / all ancestors, ``keep+``/``keep++`` daughters / all descendants).
* ``genPartIdxMother``: the nearest kept ancestor along the first-mother chain, re-indexed into
  the pruned list, -1 if none; kept particles stay in record order, as GenParticlePruner does.
* ``mass``: kept for mass > 10 GeV, photons with mass > 1 GeV, W, Z and |pdgId| > 1000000, else 0
  (the GenPart_mass doc string).  ``pt``/``eta``/``phi`` are exact float32 (CMS rounds the mantissa
  to 8 bits; we do not); for pt = 0 (incoming partons) eta is +-1e10 instead of ROOT's value.

Deviations from CMS: HepMC "particles_in" of a vertex are approximated by Pythia's mother range
(first mother = ``mother1``); next/previous copies look at the first and last daughter/mother only;
ancestor sets for ``++keep`` use the full mother range, but nearest-kept-ancestor walks (mother
re-indexing, ``+keep`` inside stage 2) follow first mothers only; the MiniAOD rules for SUSY, extra
b/c excited hadrons and protons are reduced to what our processes produce.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim.generation.pythia import Record
from flashsim.pdg import BOTTOM, CHARM, is_charged_lepton, is_hadron, is_neutrino, quark_digits

__all__ = ["STATUS_BITS", "GenHistory", "genpart_table", "hepmc_status", "prune"]

STATUS_BITS = (
    "isPrompt", "isDecayedLeptonHadron", "isTauDecayProduct", "isPromptTauDecayProduct",
    "isDirectTauDecayProduct", "isDirectPromptTauDecayProduct", "isDirectHadronDecayProduct",
    "isHardProcess", "fromHardProcess", "isHardProcessTauDecayProduct",
    "isDirectHardProcessTauDecayProduct", "fromHardProcessBeforeFSR", "isFirstCopy", "isLastCopy",
    "isLastCopyBeforeFSR",
)

_MAX_DEPTH_PASSES = 64  # pointer doubling: 2**64 generations, i.e. also a guard against cycles


def _take(values: np.ndarray, index: np.ndarray, fill) -> np.ndarray:
    """``values[index]`` with ``fill`` where index < 0."""
    out = np.full(index.shape, fill, dtype=values.dtype)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def _nearest(parent: np.ndarray, accept: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
    """For every node, the nearest node up the ``parent`` chain with ``accept`` true (-1 if none).

    Strict ancestors by default; ``inclusive`` lets an accepted node answer itself.  Pointer
    doubling keeps the invariant "every node strictly between x and jump[x] is rejected"; a
    pass replaces a rejected target by the target's own pointer, so the reach doubles per pass."""
    jump = parent.copy()
    for _ in range(_MAX_DEPTH_PASSES):
        pending = np.flatnonzero(jump >= 0)
        pending = pending[~accept[jump[pending]]]
        if len(pending) == 0:
            break
        jump[pending] = jump[jump[pending]].copy()
    else:  # a cycle or an absurdly deep history: no answer
        stuck = jump >= 0
        stuck[stuck] = ~accept[jump[stuck]]
        jump[stuck] = -1
    if inclusive:
        jump = np.where(accept, np.arange(len(parent)), jump)
    return jump


def hepmc_status(rec: Record) -> np.ndarray:
    """HepMC status as Pythia's ``statusHepMC`` (see module doc); 0 for system lines."""
    st = rec.status
    pdg = rec.pdg
    first_daughter = _take(pdg, rec.daughter1, 0)
    decays = (is_hadron(pdg) | np.isin(np.abs(pdg), (13, 15))) & (first_daughter != pdg)
    out = np.where(st > 0, 1, np.where(st == -12, 4, np.where(decays, 2, np.abs(st))))
    out[rec.offsets[:-1]] = 0
    return out.astype(np.int32)


class GenHistory:
    """HepMC-graph view of a :class:`Record`: status, first mother, copies and statusFlags."""

    def __init__(self, rec: Record):
        self.rec = rec
        pdg = rec.pdg
        n = len(pdg)
        self.status = hepmc_status(rec)
        valid = self.status != 0
        self.valid = valid
        # the system line is not a HepMC particle: links to it are "no link"
        m1 = np.where(_take(valid, rec.mother1, False), rec.mother1, -1)
        m2 = np.where(_take(valid, rec.mother2, False), rec.mother2, -1)
        self.mother = m1
        self.mother2 = m2
        d1, d2 = rec.daughter1, rec.daughter2
        # copies: first / last mother or daughter with the same pdgId (MCTruthHelper previous/nextCopy)
        prev = np.where(_take(pdg, m1, 0) == pdg, m1, -1)
        prev = np.where((prev < 0) & (_take(pdg, m2, 0) == pdg), m2, prev)
        nxt = np.where(_take(pdg, d1, 0) == pdg, d1, -1)
        nxt = np.where((nxt < 0) & (_take(pdg, d2, 0) == pdg), d2, nxt)
        prev[~valid] = -1
        nxt[~valid] = -1
        self.prev_copy, self.next_copy = prev, nxt
        self.first_copy = _nearest(prev, prev < 0, inclusive=True)
        dpdg1, dpdg2 = _take(pdg, d1, 0), _take(pdg, d2, 0)
        self.has_fsr = np.isin(dpdg1, (21, 22)) | np.isin(dpdg2, (21, 22))
        self.pt = np.hypot(rec.px, rec.py)
        self.flags = self._flags(n)

    def _flags(self, n: int) -> np.ndarray:
        st, pdg = self.status, self.rec.pdg
        apdg = np.abs(pdg)
        mother, prev, nxt = self.mother, self.prev_copy, self.next_copy
        is_first = prev < 0
        is_last = nxt < 0
        hadron = is_hadron(pdg)
        dlh = (st == 2) & (hadron | (apdg == 13) | (apdg == 15)) & is_last

        decayed_mother = _nearest(mother, dlh)
        tau_mother = _nearest(mother, dlh & (apdg == 15))
        prompt = decayed_mother < 0
        tau_prod = tau_mother >= 0
        tau_prompt = tau_prod & _take(prompt, tau_mother, False)
        tau_direct = tau_prod & (tau_mother == decayed_mother)

        # uniqueMother: first ancestor with a pdgId different from the particle's own
        same_parent = np.where(_take(pdg, mother, 0) == pdg, mother, -1)
        top = _nearest(same_parent, same_parent < 0, inclusive=True)
        unique_mother = _take(mother, top, -1)
        direct_hadron = _take(hadron & dlh, unique_mother, False)

        # isHardProcess
        hp = (st > 20) & (st < 30)
        mother_first = _take(self.first_copy, mother, -1)
        from_resonance = _take(st, mother_first, 0) == 22
        mother_next_st = _take(st, _take(nxt, mother, -1), 0)
        fsr_branching = (mother_next_st > 50) & (mother_next_st < 60)
        hp |= ((st == 1) | (st == 2)) & from_resonance & ~fsr_branching
        hp &= self.valid
        hpc = _nearest(prev, hp, inclusive=True)
        from_hp = hpc >= 0

        # last copy before FSR, walking down the copy chain from a given copy
        stop_down = self.has_fsr | is_last
        last_before_fsr_from = _nearest(nxt, stop_down, inclusive=True)
        last_copy_before_fsr = _take(last_before_fsr_from, self.first_copy, -2)
        is_last_before_fsr = last_copy_before_fsr == np.arange(n)

        hpc_st = _take(st, hpc, 0)
        idx = np.arange(n)
        before_fsr = (hpc_st == 21) & (hpc == idx)
        before_fsr |= (hpc_st == 22) & is_last
        before_fsr |= ((hpc_st == 23) | (hpc_st == 1)) & (_take(last_before_fsr_from, hpc, -2) == idx)
        before_fsr &= from_hp
        dlh_from_hp = dlh & from_hp
        tau_hp = tau_prod & _take(dlh_from_hp, tau_mother, False)
        tau_direct_hp = tau_direct & _take(from_hp, tau_mother, False)

        bits = (prompt, dlh, tau_prod, tau_prompt, tau_direct, tau_direct & tau_prompt,
                direct_hadron, hp, from_hp, tau_hp, tau_direct_hp, before_fsr, is_first, is_last,
                is_last_before_fsr)
        flags = np.zeros(n, dtype=np.int32)
        for bit, value in enumerate(bits):
            flags |= value.astype(np.int32) << bit
        flags[~self.valid] = 0
        return flags

    def flag(self, name: str) -> np.ndarray:
        """Boolean array of one status flag by its CMS name."""
        return (self.flags >> STATUS_BITS.index(name)) & 1 == 1


def _mother_sets(hist: GenHistory, nodes: np.ndarray) -> np.ndarray:
    """All HepMC mothers of ``nodes``: Pythia's mother1..mother2 range, or the two mothers."""
    m1 = hist.mother[nodes]
    m2 = hist.mother2[nodes]
    ranged = (m1 >= 0) & (m2 > m1)
    lengths = np.where(ranged, m2 - m1 + 1, 1)
    starts = np.repeat(m1, lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = starts + within
    two = (m2 >= 0) & (m2 < m1)
    return np.concatenate([out, m2[two]])


def _with_ancestors(hist: GenHistory, seed: np.ndarray) -> np.ndarray:
    marked = seed.copy()
    frontier = np.flatnonzero(seed)
    while len(frontier):
        mothers = _mother_sets(hist, frontier)
        mothers = np.unique(mothers[mothers >= 0])
        frontier = mothers[~marked[mothers]]
        marked[frontier] = True
    return marked


def _with_descendants(parent: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Seed plus every node whose ``parent`` chain passes through a seed node."""
    return seed | (_nearest(parent, seed) >= 0)


def _with_children(parent: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return seed | _take(seed, parent, False)


def _with_mothers(parent: np.ndarray, seed: np.ndarray) -> np.ndarray:
    out = seed.copy()
    m = parent[seed]
    out[m[m >= 0]] = True
    return out


def prune(hist: GenHistory) -> np.ndarray:
    """Boolean mask of the particles CMS NanoAOD keeps in GenPart (two pruning stages, see doc)."""
    rec, st, pdg = hist.rec, hist.status, hist.rec.pdg
    apdg = np.abs(pdg)
    pt = hist.pt
    eta = np.arcsinh(np.divide(rec.pz, pt, out=np.full_like(pt, 1e10), where=pt > 0))
    flag = hist.flag
    lepton = is_charged_lepton(pdg)
    neutrino = is_neutrino(pdg)
    heavy_hadron = ((apdg > 400) & (apdg < 600)) | ((apdg > 4000) & (apdg < 6000))
    hard_summary = (st == 3) | ((st > 20) & (st < 30))
    prompt_final = (st == 1) & flag("isPrompt")
    from_hp = flag("fromHardProcess")
    hp_keep = (flag("isHardProcess") | ((st == 1) & from_hp) | (flag("isDecayedLeptonHadron") & from_hp)
               | (from_hp & flag("isLastCopy")))

    # ---- stage 1: MiniAOD prunedGenParticles on the full record ----
    k = _with_ancestors(hist, lepton & hist.valid)                       # ++keep leptons
    k |= neutrino                                                        # keep neutrinos
    k &= st != 2                                                         # drop status 2
    photon = (pdg == 22) & (st == 1) & ((pt > 10) | prompt_final)
    k = _with_mothers(hist.mother, photon) | k                           # +keep photons
    electron = (apdg == 11) & (st == 1) & ((pt > 3) | prompt_final)
    k = _with_mothers(hist.mother, electron) | k                         # +keep electrons
    k |= _with_descendants(hist.mother, apdg == 15)                      # keep++ taus
    k &= ~((st > 30) & (st < 70))                                        # drop pythia8 garbage
    k &= ~((pdg == 21) & (pt < 5))
    k &= ~((st == 2) & (apdg == 21))
    k |= np.isin(apdg, (23, 24, 25, 6, 37))                              # VIPs
    k |= (apdg == 310) & (np.abs(eta) < 2.5) & (pt > 1)                  # K0S
    pre_had = np.isin(st, (2, 11, 71, 72))
    k |= (apdg >= 4) & (apdg <= 5) & pre_had                             # heavy-flavour quarks
    k |= ((apdg <= 3) | (pdg == 21)) & pre_had & (pt > 5)                # light partons
    k |= heavy_hadron | (is_hadron(pdg) & np.isin(quark_digits(pdg)[1], (CHARM, BOTTOM))
                         & (apdg > 10000))                               # b/c hadrons (+excited)
    k |= hard_summary                                                    # event summary
    k |= hp_keep | flag("fromHardProcessBeforeFSR")
    k |= (st > 70) & (st < 80) & (pt > 15)
    k &= hist.valid & (st != 4)
    stage1 = k

    # ---- stage 2: NanoAOD finalGenParticles on the stage-1 collection ----
    parent1 = _nearest(hist.mother, stage1)                              # mothers inside stage 1
    parent1[~stage1] = -1
    tau = stage1 & (apdg == 15)
    k = _with_descendants(parent1, tau & ((pt > 15) | (flag("isDecayedLeptonHadron") & flag("isPrompt"))))
    k |= _with_children(parent1, tau)                                    # keep+ taus
    k = _with_mothers(parent1, stage1 & photon) | k                      # +keep photons
    k = _with_mothers(parent1, stage1 & lepton) | k                      # +keep leptons
    k &= ~((apdg == 2212) & (np.abs(rec.pz) > 1000))
    k |= heavy_hadron | neutrino | hard_summary | hp_keep
    k |= (st > 70) & (st < 80) & (pt > 15)
    k |= np.isin(apdg, (23, 24, 25, 37))
    return k & stage1


def genpart_table(hist: GenHistory, keep: np.ndarray) -> tuple[ak.Array, np.ndarray]:
    """The GenPart collection (``N * var * {pt, eta, phi, mass, pdgId, status, statusFlags,
    genPartIdxMother}``) of the kept particles, and for every record particle its index in the
    pruned GenPart of its event (-1 if pruned away)."""
    rec = hist.rec
    kept = np.flatnonzero(keep)
    event = np.searchsorted(rec.offsets, kept, side="right") - 1
    counts = np.bincount(event, minlength=rec.n_events)
    first = np.zeros(rec.n_events, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    local = np.full(len(keep), -1, dtype=np.int64)
    local[kept] = np.arange(len(kept)) - first[event]
    mother = _nearest(hist.mother, keep)[kept]
    px, py, pz = rec.px[kept], rec.py[kept], rec.pz[kept]
    pt = np.hypot(px, py)
    eta = np.where(pt > 0, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pt), where=pt > 0)),
                   np.copysign(1e10, pz))
    pdg = rec.pdg[kept]
    m = rec.m[kept]
    apdg = np.abs(pdg)
    store_mass = (m > 10) | ((pdg == 22) & (m > 1)) | (apdg == 24) | (pdg == 23) | (apdg > 1_000_000)
    table = ak.zip({
        "pt": pt.astype(np.float32),
        "eta": eta.astype(np.float32),
        "phi": np.arctan2(py, px).astype(np.float32),
        "mass": np.where(store_mass, m, 0.0).astype(np.float32),
        "pdgId": pdg.astype(np.int32),
        "status": hist.status[kept],
        "statusFlags": hist.flags[kept],
        "genPartIdxMother": _take(local, mother, -1).astype(np.int32),
    })
    return ak.unflatten(table, counts), local
