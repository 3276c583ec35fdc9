"""The VBF H→μμ selection as a coffea processor: cuts, cut flow, event weights, observables.

Selection (CMS HIG-19-006, VBF category, 2018 conventions):

1. two muons with ``tightId``, ``pfRelIso04_all < 0.25``, pT > 20 GeV, |η| < 2.4 (the two
   leading ones form the pair);
2. opposite charge, leading muon pT > 26 GeV;
3. 110 < m_μμ < 150 GeV;
4. no b jet: no selected jet with |η| < 2.4 and ``btagDeepFlavB`` > 0.2770 (medium DeepJet);
5. two selected jets, leading pT > 35 GeV. Selected jets: pT > 25 GeV, |η| < 4.7, tight ID
   (``jetId & 2``), loose pileup ID (``puId & 4``, 2018 NanoAODv6 bits) for pT < 50 GeV,
   ΔR > 0.4 from both muons;
6. m_jj > 400 GeV and |Δη_jj| > 2.5.

Reported after the cut flow but not applied, so the VBF selection stays as above
(:data:`ELECTRON_VETO`): the electron veto of the analysis' lepton categories — no electron
with pT > 20 GeV, |η| < 2.5, ``mvaFall17V2Iso_WP90``, ΔR > 0.4 from both muons (unknown for
files without electrons).

Regions: signal 115 < m_μμ < 135 GeV, sidebands 110–115 and 135–150 GeV.

For simulated files the columns also say whether both leading selected jets have a GenJet
(``jets_with_genjet``): the benchmark then compares the observables of those events alone,
which separates the jet response from jets that no GEN jet made (pileup, noise).

The cuts are a coffea :class:`~coffea.analysis_tools.PackedSelection` and the cut flow is
its ``cutflow``, weighted with a :class:`~coffea.analysis_tools.Weights` of
``genWeight · σ · L / Σ genEventSumw`` (:func:`event_scales`, from the Runs trees). Flash
files with K replicas per GEN event carry ``genEventSumw`` scaled by K, so each replica
weighs 1/K. Flash files written with ``flashsim simulate --weights`` also carry the DCTR event
weight ``flashsimWeight``, which multiplies the event's weight: the analysis of such a file is
that of the reweighted flash sample. Kinematics use coffea's vector methods (four-vector sums, ``nearest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor
from coffea.analysis_tools import PackedSelection, Weights
from coffea.nanoevents.methods import vector

from flashsim.errors import FlashSimError
from flashsim.nanoaod.reader import read_runs
from flashsim.runtime import QuietNanoAODSchema, quiet_coffea
from flashsim.validation.metrics import DEEPJET_2018_WPS

__all__ = [
    "BTAG_MEDIUM",
    "CUTS",
    "ELECTRON_VETO",
    "MASS_WINDOW",
    "OBSERVABLES",
    "SIGNAL_REGION",
    "HmumuProcessor",
    "event_scales",
    "run_analysis",
    "select_vbf_hmumu",
    "vbf_hmumu_selection",
]

BTAG_MEDIUM = DEEPJET_2018_WPS["medium"]
#: The cut flow: every event, then the cuts in the order they are applied.
CUTS = ("all events", "2 tight isolated muons", "opposite sign, leading pT > 26",
        "110 < m_mumu < 150", "b-jet veto", "2 jets, leading pT > 35", "m_jj > 400, |deta_jj| > 2.5")
#: The row reported after the cut flow, not applied.
ELECTRON_VETO = "electron veto (reported, not applied)"
SIGNAL_REGION = (115.0, 135.0)
MASS_WINDOW = (110.0, 150.0)
#: name -> (axis label, bin edges) of the analysis observables.
OBSERVABLES = {
    "m_mumu": ("$m_{\\mu\\mu}$ [GeV]", np.linspace(110, 150, 21)),
    "pt_mumu": ("$p_T^{\\mu\\mu}$ [GeV]", np.linspace(0, 300, 16)),
    "eta_mumu": ("$\\eta_{\\mu\\mu}$", np.linspace(-5, 5, 21)),
    "m_jj": ("$m_{jj}$ [GeV]", np.linspace(400, 3000, 14)),
    "deta_jj": ("$|\\Delta\\eta_{jj}|$", np.linspace(2.5, 9, 14)),
    "zstar": ("Zeppenfeld $z^*$", np.linspace(-3, 3, 13)),
    "j1_pt": ("leading jet $p_T$ [GeV]", np.linspace(35, 435, 17)),
    "j1_eta": ("leading jet $\\eta$", np.linspace(-4.7, 4.7, 19)),
    "j2_pt": ("subleading jet $p_T$ [GeV]", np.linspace(25, 225, 17)),
    "j2_eta": ("subleading jet $\\eta$", np.linspace(-4.7, 4.7, 19)),
    "pt_balance": ("$p_T$ balance", np.linspace(0, 1, 11)),
}


def _double_precision(objects: ak.Array) -> ak.Array:
    """``objects`` as coffea ``PtEtaPhiMLorentzVector`` in float64.

    NanoAOD stores float32; the sums and ΔR are taken in double precision so that which
    events sit on either side of a cut value (m_μμ, m_jj, ΔR = 0.4) does not depend on
    float32 rounding.
    """
    return ak.zip({f: ak.values_astype(objects[f], np.float64)
                   for f in ("pt", "eta", "phi", "mass")},
                  with_name="PtEtaPhiMLorentzVector", behavior=vector.behavior)


def _numpy(values: ak.Array) -> np.ndarray:
    """One value per event as float64 numpy, NaN where it is not defined."""
    return ak.to_numpy(ak.fill_none(values, np.nan)).astype(np.float64)


def vbf_hmumu_selection(events: ak.Array) -> tuple[PackedSelection, dict[str, np.ndarray]]:
    """The cuts of the selection and the observables of NanoEvents (or any array with Muon
    and Jet records).

    Returns a :class:`~coffea.analysis_tools.PackedSelection` with one boolean per event for
    each cut of :data:`CUTS` after the first (each cut on its own; the cut flow applies them
    in order), and numpy columns: ``region`` (1 signal region, 2 sideband, 0 outside
    110–150 GeV), ``electron_veto`` (1 no veto electron, 0 one, -1 no Electron collection),
    ``jets_with_genjet`` (1 both leading selected jets have a GenJet, 0 one has not, -1 fewer
    than two jets or no ``Jet_genJetIdx``) and the :data:`OBSERVABLES` (NaN where not defined).
    """
    mu = events.Muon
    good = mu[mu.tightId & (mu.pfRelIso04_all < 0.25) & (abs(mu.eta) < 2.4) & (mu.pt > 20)]
    pair = ak.pad_none(good[:, :2], 2, axis=1)
    m1, m2 = _double_precision(pair[:, 0]), _double_precision(pair[:, 1])
    dimuon = m1 + m2
    two_muons = ak.to_numpy(ak.num(good)) >= 2
    opposite = two_muons & (_numpy(pair[:, 0].charge * pair[:, 1].charge) < 0) \
        & (_numpy(m1.pt) > 26)
    m_mumu = _numpy(dimuon.mass)
    in_window = opposite & (m_mumu > MASS_WINDOW[0]) & (m_mumu < MASS_WINDOW[1])

    jet = events.Jet
    # ΔR to the nearer of the two leading good muons; no muon: nothing to clean against
    _, muon_dr = _double_precision(jet).nearest(_double_precision(good[:, :2]),
                                                return_metric=True)
    clean = ak.fill_none(muon_dr > 0.4, True)
    jets = jet[(jet.pt > 25) & (abs(jet.eta) < 4.7) & ((jet.jetId & 2) > 0)
               & ((jet.pt >= 50) | ((jet.puId & 4) > 0)) & clean]
    b_veto = ~ak.to_numpy(ak.any((abs(jets.eta) < 2.4) & (jets.btagDeepFlavB > BTAG_MEDIUM),
                                 axis=1))
    leading = ak.pad_none(jets[:, :2], 2, axis=1)
    j1, j2 = _double_precision(leading[:, 0]), _double_precision(leading[:, 1])
    dijet = j1 + j2
    jet_pair = ak.to_numpy(ak.num(jets)) >= 2
    two_jets = jet_pair & (_numpy(j1.pt) > 35)
    deta = np.abs(_numpy(j1.eta) - _numpy(j2.eta))
    vbf = two_jets & (_numpy(dijet.mass) > 400) & (deta > 2.5)
    with_genjet = np.full(len(jet_pair), -1, np.int8)
    if "genJetIdx" in ak.fields(jets):
        matched = (_numpy(leading[:, 0].genJetIdx) >= 0) & (_numpy(leading[:, 1].genJetIdx) >= 0)
        with_genjet[jet_pair] = matched[jet_pair]

    selection = PackedSelection()
    electron_veto = _electron_veto(events, good)
    for cut, passed in zip(CUTS[1:], (two_muons, opposite, in_window, b_veto, two_jets, vbf),
                           strict=True):
        selection.add(cut, passed)

    y_mumu, y1, y2 = _numpy(dimuon.rapidity), _numpy(j1.rapidity), _numpy(j2.rapidity)
    pt_mumu, pt1, pt2 = _numpy(dimuon.pt), _numpy(j1.pt), _numpy(j2.pt)
    with np.errstate(divide="ignore", invalid="ignore"):
        zstar = (y_mumu - 0.5 * (y1 + y2)) / np.abs(y1 - y2)
        balance = _numpy((dimuon + j1 + j2).pt) / (pt_mumu + pt1 + pt2)
    mass = np.where(opposite, m_mumu, np.nan)
    region = np.where((mass > SIGNAL_REGION[0]) & (mass < SIGNAL_REGION[1]), 1,
                      np.where((mass > MASS_WINDOW[0]) & (mass < MASS_WINDOW[1]), 2, 0))
    columns = {"region": region.astype(np.int8), "electron_veto": electron_veto, "m_mumu": mass,
               "pt_mumu": np.where(opposite, pt_mumu, np.nan),
               "eta_mumu": np.where(opposite, _numpy(dimuon.eta), np.nan),
               "m_jj": _numpy(dijet.mass), "deta_jj": deta, "zstar": zstar,
               "j1_pt": pt1, "j1_eta": _numpy(j1.eta), "j2_pt": pt2, "j2_eta": _numpy(j2.eta),
               "pt_balance": balance, "jets_with_genjet": with_genjet}
    return selection, columns


def _electron_veto(events: ak.Array, muons: ak.Array) -> np.ndarray:
    """1 where no :data:`ELECTRON_VETO` electron is present, 0 where one is, -1 without an
    Electron collection; electrons within ΔR 0.4 of the two leading ``muons`` do not count."""
    if "Electron" not in events.fields or "pt" not in events.Electron.fields:
        return np.full(len(events), -1, np.int8)
    ele = events.Electron
    ele = ele[(ele.pt > 20) & (abs(ele.eta) < 2.5) & ele.mvaFall17V2Iso_WP90]
    _, muon_dr = _double_precision(ele).nearest(_double_precision(muons[:, :2]),
                                                return_metric=True)
    vetoing = ak.fill_none(muon_dr > 0.4, True)
    return (~ak.to_numpy(ak.any(vetoing, axis=1))).astype(np.int8)


def select_vbf_hmumu(events: ak.Array) -> dict[str, np.ndarray]:
    """:func:`vbf_hmumu_selection` as numpy columns, one entry per event: its ``region`` and
    :data:`OBSERVABLES`, and ``stage``, the number of :data:`CUTS` after the first that the
    event passes in sequence (``len(CUTS) - 1`` = fully selected)."""
    selection, columns = vbf_hmumu_selection(events)
    return {"stage": _stage(selection.cutflow(*CUTS[1:]).result()), **columns}


def _stage(cutflow) -> np.ndarray:
    """Per event, how many cuts of a cut-flow result it passes in sequence."""
    return np.sum(cutflow.maskscutflow, axis=0, dtype=np.int8)


class HmumuProcessor(processor.ProcessorABC):
    """coffea processor: per dataset, the event ids, weights and :func:`select_vbf_hmumu`
    columns (accumulated as lists of per-chunk dicts) and the weighted cut flow.

    ``scales`` maps dataset → factor that turns ``genWeight`` into an expected yield
    (see :func:`event_scales`); datasets not in it get weight ``genWeight``.
    """

    def __init__(self, scales: dict[str, float] | None = None) -> None:
        self.scales = dict(scales or {})

    def process(self, events: ak.Array) -> dict:
        """Select one chunk of NanoEvents."""
        dataset = events.metadata["dataset"]
        n = len(events)
        selection, columns = vbf_hmumu_selection(events)
        weights = Weights(n)
        if "genWeight" in events.fields:
            weights.add("genWeight", ak.to_numpy(events.genWeight).astype(np.float64))
        if "flashsimWeight" in events.fields:
            weights.add("flashsimWeight", ak.to_numpy(events.flashsimWeight).astype(np.float64))
        weights.add("normalisation", np.full(n, self.scales.get(dataset, 1.0)))
        cutflow = selection.cutflow(*CUTS[1:], weights=weights).result()
        columns["stage"] = _stage(cutflow)
        columns["weight"] = weights.weight()
        columns["run"] = ak.to_numpy(events.run).astype(np.uint32)
        columns["luminosityBlock"] = ak.to_numpy(events.luminosityBlock).astype(np.uint32)
        columns["event"] = ak.to_numpy(events.event).astype(np.uint64)
        columns["replica"] = (ak.to_numpy(events.flashsimReplica).astype(np.uint32)
                              if "flashsimReplica" in events.fields else np.zeros(n, np.uint32))
        return {dataset: {"columns": [columns], "entries": n,
                          "cutflow": dict(zip(CUTS, map(float, cutflow.wgtevcutflow),
                                              strict=True))}}

    def postprocess(self, accumulator: dict) -> dict:
        """Nothing to do: columns are concatenated by :func:`run_analysis`."""
        return accumulator


def _check_exist(fileset: dict[str, Sequence[str | Path]]) -> None:
    for dataset, paths in fileset.items():
        for path in map(Path, paths):
            if not path.is_file():
                raise FlashSimError(f"{path} does not exist: check the sample paths of {dataset}")


def event_scales(fileset: dict[str, Sequence[str | Path]], cross_sections_pb: dict[str, float],
                 lumi_fb: float) -> dict[str, float]:
    """Per dataset σ[pb] · 1000 · L[fb⁻¹] / Σ genEventSumw (Runs trees of its files).

    Raises :class:`FlashSimError` for missing files or files without a Runs tree.
    """
    _check_exist(fileset)
    scales = {}
    for dataset, paths in fileset.items():
        total = 0.0
        for path in paths:
            runs = read_runs(path)
            if runs is None:
                raise FlashSimError(f"{path} has no Runs tree with genEventSumw: pass NanoAOD files "
                                    "written by flashsim or CMSSW")
            total += float(np.sum(runs["genEventSumw"]))
        if total == 0:
            raise FlashSimError(f"the files of {dataset} have genEventSumw = 0: they hold no events")
        scales[dataset] = cross_sections_pb[dataset] * 1000.0 * lumi_fb / total
    return scales


def run_analysis(fileset: dict[str, Sequence[str | Path]], scales: dict[str, float] | None = None,
                 *, chunksize: int = 100_000) -> dict[str, dict]:
    """Run :class:`HmumuProcessor` over ``fileset`` (dataset → files) with coffea's
    ``Runner`` and iterative executor; return dataset → {"columns": {name: array},
    "cutflow": {cut: sumw}}."""
    _check_exist(fileset)
    runner = processor.Runner(executor=processor.IterativeExecutor(),
                              schema=QuietNanoAODSchema, chunksize=chunksize)
    with quiet_coffea():
        output = runner({d: [str(p) for p in paths] for d, paths in fileset.items()},
                        processor_instance=HmumuProcessor(scales), treename="Events")
    result = {}
    for dataset in fileset:
        if dataset not in output:  # only empty files: no chunk was processed
            empty = {k: np.empty(0) for k in ("stage", "region", "electron_veto", "weight",
                                               "jets_with_genjet", *OBSERVABLES)}
            result[dataset] = {"columns": empty, "cutflow": dict.fromkeys(CUTS, 0.0)}
            continue
        parts = output[dataset]["columns"]
        result[dataset] = {"columns": {k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
                           "cutflow": output[dataset]["cutflow"]}
    return result
