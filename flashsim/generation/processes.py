"""The Pythia 8 processes flashsim can generate, in one readable table.

Every process runs at sqrt(s) = 13 TeV with the CMS CP5 tune as far as Pythia alone allows:
CP5 (CMSSW ``Configuration/Generator/python/MCTunes2017/PythiaCP5Settings_cfi.py``) is the Monash
tune (``Tune:pp = 14``) with the NNPDF3.1 NNLO PDF, alpha_s = 0.118 at second order everywhere and
retuned MPI / colour-reconnection parameters.  CMS reads NNPDF31_nnlo_as_0118 from LHAPDF; here the
same set comes from Pythia's built-in copy (``PDF:pSet = 20``, NNPDF3.1 QCD+LUXQED NNLO, 0.118), so
no LHAPDF installation is needed.  The common block follows CMSSW ``Pythia8CommonSettings_cfi``,
including ``ParticleDecays:limitTau0 = on`` with ``tau0Max = 10`` mm: particles with c*tau > 10 mm
are left stable for the detector (K0S, Lambda, charged pions and kaons), shorter-lived ones (B and D
hadrons, taus) decay in the generator with displaced production vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMON_SETTINGS", "CP5_SETTINGS", "PROCESSES", "Process"]

#: Pythia settings shared by every process (CMSSW Pythia8CommonSettings + quiet output).
COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:eCM = 13000.",
    "Main:timesAllowErrors = 10000",
    "Check:epTolErr = 0.01",
    "Beams:setProductionScalesFromLHEF = off",
    "SLHA:minMassSM = 1000.",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Random:setSeed = on",
)

#: CMS CP5 underlying-event tune (PDF from Pythia's built-in NNPDF3.1 NNLO, see module doc).
CP5_SETTINGS: tuple[str, ...] = (
    "Tune:pp = 14",
    "Tune:ee = 7",
    "MultipartonInteractions:ecmPow = 0.03344",
    "MultipartonInteractions:bProfile = 2",
    "MultipartonInteractions:pT0Ref = 1.41",
    "MultipartonInteractions:coreRadius = 0.7634",
    "MultipartonInteractions:coreFraction = 0.63",
    "ColourReconnection:range = 5.176",
    "SigmaTotal:zeroAXB = off",
    "SpaceShower:alphaSorder = 2",
    "SpaceShower:alphaSvalue = 0.118",
    "SigmaProcess:alphaSvalue = 0.118",
    "SigmaProcess:alphaSorder = 2",
    "MultipartonInteractions:alphaSvalue = 0.118",
    "MultipartonInteractions:alphaSorder = 2",
    "TimeShower:alphaSorder = 2",
    "TimeShower:alphaSvalue = 0.118",
    "SigmaTotal:mode = 0",
    "SigmaTotal:sigmaEl = 21.89",
    "SigmaTotal:sigmaTot = 100.309",
    "PDF:pSet = 20",
)


@dataclass(frozen=True)
class Process:
    """A generator process: ``summary`` is the one-line description shown by ``--list``,
    ``settings`` the process-specific Pythia strings (added after the common and CP5 blocks),
    ``cross_section_pb`` the reference σ·BR at 13 TeV in pb that normalises analyses of its
    events (``None``: the process has no reference value here)."""

    name: str
    summary: str
    settings: tuple[str, ...]
    cross_section_pb: float | None = None

    @property
    def all_settings(self) -> tuple[str, ...]:
        """Every Pythia string for this process: common block, CP5 tune, process block."""
        return COMMON_SETTINGS + CP5_SETTINGS + self.settings


#: Keep only top pairs whose two W decays are exactly {mu nu, q q'}, both charge combinations
#: (Pythia's ResonanceDecayFilterHook, which vetoes at the resonance-decay stage, before the
#: shower: the veto costs little). :func:`flashsim.generation.pythia.make_pythia` installs the
#: hook for every process that sets ``ResonanceDecayFilter:*``.
_ONE_W_TO_MUON = ("ResonanceDecayFilter:filter = on", "ResonanceDecayFilter:exclusive = on",
                  "ResonanceDecayFilter:udscbAsEquivalent = on",
                  "ResonanceDecayFilter:mothers = 24", "ResonanceDecayFilter:daughters = 13,14,1,1")

_HIGGS_TO_MUMU = ("25:m0 = 125.0", "25:onMode = off", "25:onIfMatch = 13 -13")
#: BR(H -> mu mu) at mH = 125 GeV (LHC Higgs cross section WG, Yellow Report 4, CERN-2017-002-M).
_BR_H_MUMU = 2.176e-4
#: sigma(pp -> Z/gamma* -> mu mu, m > 50 GeV): a third of the NNLO 6077.22 pb for l = e, mu, tau
#: (the value CMS normalises DYJetsToLL_M-50 with).
_DY_MUMU_PB = 6077.22 / 3
#: Share of the m > 50 GeV Drell-Yan line shape in 105 < m < 160 GeV: 0.02209 +- 0.00008 (Pythia 8
#: hard process with these settings, 40k events each).
_DY_WINDOW_105_160 = 0.02209

PROCESSES: dict[str, Process] = {
    p.name: p
    for p in (
        Process("vbf_hmumu", "VBF Higgs (W and Z fusion), mH = 125 GeV, H -> mu mu",
                ("HiggsSM:ff2Hff(t:ZZ) = on", "HiggsSM:ff2Hff(t:WW) = on", *_HIGGS_TO_MUMU),
                # VBF H, mH = 125 GeV: 3.782 pb (YR4, NNLO QCD + NLO EW)
                cross_section_pb=3.782 * _BR_H_MUMU),
        Process("ggh_hmumu", "gluon-fusion Higgs gg -> H, mH = 125 GeV, H -> mu mu",
                ("HiggsSM:gg2H = on", *_HIGGS_TO_MUMU)),
        Process("dy_mumu", "Drell-Yan Z/gamma* -> mu mu, m(mu mu) > 50 GeV",
                ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfMatch = 13 -13",
                 "PhaseSpace:mHatMin = 50."), cross_section_pb=_DY_MUMU_PB),
        Process("dy_ee", "Drell-Yan Z/gamma* -> e e, m(e e) > 50 GeV",
                ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfMatch = 11 -11",
                 "PhaseSpace:mHatMin = 50."), cross_section_pb=_DY_MUMU_PB),  # lepton universality
        Process("dy_mumu_105_160",
                "Drell-Yan Z/gamma* -> mu mu, 105 < m(mu mu) < 160 GeV (the H -> mu mu fit window)",
                ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfMatch = 13 -13",
                 "PhaseSpace:mHatMin = 105.", "PhaseSpace:mHatMax = 160."),
                cross_section_pb=_DY_MUMU_PB * _DY_WINDOW_105_160),
        Process("ttbar", "inclusive top-pair production (gg, qqbar -> t tbar), all decays",
                ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")),
        Process("ttbar_mujets",
                "semi-leptonic top pairs, muon channel: one W -> mu nu, the other W -> q q'",
                ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on",
                 "24:onMode = off", "24:onIfAny = 1 2 3 4 5 13", *_ONE_W_TO_MUON)),
        Process("qcd_dijet",
                "QCD 2 -> 2 (HardQCD:all), pT-hat > 30 GeV: quark and gluon jets over the whole "
                "calorimeter, forward jets of high energy included",
                ("HardQCD:all = on", "PhaseSpace:pTHatMin = 30.")),
        Process("minbias", "minimum bias: inelastic non-diffractive pp (SoftQCD:nonDiffractive)",
                ("SoftQCD:nonDiffractive = on",)),
    )
}
