"""The reference detector: a CMS-like parametric full-simulation stand-in.

``ReferenceDetector(pileup_pool, config=None).reconstruct(batch, rng)`` turns a
``flashsim.generation.GenBatch`` (stable particles with production vertices + GEN NanoAOD)
into NANOAODSIM RECO collections: ``Muon``, ``Electron``, ``Jet``, ``MET``, ``RawMET``, ``PV``
and ``fixedGridRhoFastjetAll``, with GEN cross-references (``Muon_genPartIdx``,
``Electron_genPartIdx``, their ``genPartFlav``, ``Jet_genJetIdx``, flavours) and the lepton-jet
links ``Muon_jetIdx``/``Jet_muonIdx1/2``, ``Electron_jetIdx``/``Jet_electronIdx1/2``.

Model in one paragraph: ``Pileup_nPU`` minimum-bias events are overlaid at vertices spread
along z, each copy rotated in azimuth and mirrored in z at random; the tracker (|eta| < 2.5)
reconstructs charged particles with pT/eta-dependent efficiency, curvature, direction and
impact-parameter resolutions with non-Gaussian tails; vertices
are found with a track-multiplicity-dependent efficiency and tracks of resolved pileup
vertices are removed by CHS; ECAL/HCAL/HF deposits of everything else are smeared with
stochastic/noise/constant terms, a hadronic non-compensation and thresholds; muons get
an efficiency, a combined resolution with tails, quality variables and the POG cut-based
IDs, plus decay-in-flight/punch-through fakes, and PF isolation from the candidates
around them; electrons are GSF tracks matched to ECAL superclusters built from the deposits
of every particle (brem, conversions, hadron showers), with an E-p combined energy, shower
shapes, charge estimates, the EGamma IDs and fakes that follow from those deposits; AK4 CHS jets are clustered with fastjet, calibrated with constants derived
from the detector itself, and described by energy fractions, jet ID, a pileup ID, an
impact-parameter b/c tagger mapped onto DeepJet working points and a q/g likelihood;
MET is the negative PF pT sum with the type-1 correction and a resolution-based
covariance.  All numbers live in :class:`DetectorConfig`.
"""

from __future__ import annotations

from flashsim.refdet.config import DETECTOR_VERSION, DetectorConfig
from flashsim.refdet.detector import ReferenceDetector

__all__ = ["DETECTOR_VERSION", "DetectorConfig", "ReferenceDetector"]
