"""Every number of the reference detector, in one dataclass, with where it comes from.

The detector is a CMS-like (2018) particle-level parametric simulation in the spirit of
Delphes.  Numbers are rounded values of published CMS performance, chosen so that the
*reconstructed* quantities (not each sub-detector) land near CMS's measured performance:

- tracker: CMS tracking paper, JINST 9 (2014) P10009 (efficiency, pT and impact-parameter
  resolution vs pT and eta);
- ECAL/HCAL/HF: CMS ECAL TDR / JINST 3 (2008) S08004 (stochastic, noise, constant terms),
  HF test beam (Eur.Phys.J.C 53 (2008) 139); PF neutral thresholds: JINST 12 (2017) P10003;
- muons: JINST 13 (2018) P06015 (efficiency, resolution, IDs), muon POG ID definitions
  (twiki SWGuideMuonIdRun2);
- jets: JINST 12 (2017) P02014 (JEC/JER), JetID twiki (2018 tight / tightLepVeto),
  PileupJetID (JME-16-003), DeepJet 2018 WPs (BTV twiki, 0.0494/0.2770/0.7264);
- MET: JINST 14 (2019) P07004 (resolution, significance);
- electrons: JINST 10 (2015) P06005 (reconstruction: GSF tracking, superclusters, E-p
  combination, preselection, charge, conversions), JINST 16 (2021) P05032 (Run 2 ECAL
  calibration, electron energy resolution and identification), tracker material budget
  JINST 3 (2008) S08004 Fig. 3.1 and JINST 12 (2017) P10003 (PF electron identification);
  the EGamma identification thresholds themselves live in
  ``flashsim/nanoaod/electron_working_points.py`` (CMSSW Fall17 V2 / HEEP V7.0).

Units: GeV, mm inside the detector (NanoAOD impact parameters are written in cm).
The jet-energy-correction constants (``jec_*``) and the b-tag calibration knots
(``btag_knots_*``) are *derived from this detector* by ``training/calibrate_refdet.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DETECTOR_VERSION", "DetectorConfig"]

DETECTOR_VERSION = 3
"""Version of the reference detector's physics, recorded in every --refsim file's provenance and
in the training-sample names (training/train_defaults.sh), so samples of an older detector are
never mistaken for current ones.  1: the first detector.  2: every copy of an overlaid
minimum-bias event rotated in azimuth and mirrored in z at random, pools keyed by
(seed, chunk), track and muon direction resolution.  3: electrons; PF electrons absorb their
supercluster's photons (no longer in a jet's neutral EM fraction), Jet_nMuons/nElectrons count
the linked NanoAOD leptons."""


@dataclass(frozen=True)
class DetectorConfig:
    """Resolution, efficiency and calibration parameters of the reference detector."""

    # ---------------------------------------------------------------- beam spot, vertices
    beamspot_sigma_z: float = 35.0
    """Luminous region length (mm); CMS 2018 ~3.5 cm."""
    beamspot_sigma_xy: float = 0.010
    """Transverse beam spot size (mm), ~10 um."""
    vertex_track_pt_min: float = 0.4
    """Tracks that can enter a vertex fit (GeV); CMS vertexing uses pT > ~0.4-0.5 tracks."""
    vertex_n_scale: float = 2.0
    """Vertex-finding efficiency eps(n) = 1 - exp(-(n-1)/scale) for n >= 2 fit tracks (DA finder)."""
    vertex_merge: float = 0.8
    """Two vertices closer than this in z (mm) are merged (DA resolves ~1 mm; CMS TRK-11-001)."""
    pv_z_resolution: float = 0.10
    """PV z resolution (mm) for one track; divided by sqrt(n tracks) (~15 um for 50 tracks)."""
    vertex_fit_fraction: float = 0.95
    """Probability that a track of a resolved pileup vertex is used in its fit (CHS removes those)."""

    # ---------------------------------------------------------------- tracker
    tracker_eta_max: float = 2.5
    tracker_radius_max: float = 600.0
    """Tracks are seeded only from particles produced inside this transverse radius (mm)."""
    track_pt_min: float = 0.1
    track_eff_pion_barrel: float = 0.94
    """Charged-pion efficiency plateau |eta|<1.2 (nuclear interactions), P10009 Fig. 13."""
    track_eff_pion_endcap: float = 0.88
    track_eff_lepton: float = 0.99
    """Isolated muon/electron tracking efficiency plateau."""
    track_eff_turnon: float = 0.3
    """Efficiency turn-on scale (GeV): eps * (1 - exp(-(pT - pt_min)/scale))."""
    track_res_const_barrel: float = 0.007
    """sigma(pT)/pT multiple-scattering term, |eta|<0.9 (P10009: 0.7-1% at 1-10 GeV)."""
    track_res_const_endcap: float = 0.020
    track_res_slope_barrel: float = 1.5e-4
    """sigma(pT)/pT = c (+) s*pT, s in 1/GeV (1.5% at 100 GeV in the barrel)."""
    track_res_slope_endcap: float = 4.0e-4
    track_tail_fraction: float = 0.03
    """Fraction of tracks with a 3x wider pT and direction resolution (fakes, kinks)."""
    track_tail_scale: float = 3.0
    track_dir_barrel_eta: float = 1.4
    """Direction resolution: sigma(x) = a (+) b/(pT sin^1/2 theta) for x = phi and eta, i.e. a
    hit-resolution constant term and a multiple-scattering term; sigma(cot theta) =
    sigma(eta)/sin theta.  Constants for |eta| below / above 1.4, fitted to the isolated-muon
    resolutions of JINST 9 P10009 Fig. 15 (|eta| < 0.9, 0.9-1.4, 1.4-2.5 at 1-130 GeV; 20%
    agreement): sigma(phi) 1.7 / 0.2 / 0.1 mrad at 1 / 10 / 100 GeV in the barrel, 4.4 / 0.5 /
    0.2 mrad in the endcaps; sigma(cot theta) 2.0e-3 / 5e-4 / 3e-4 barrel, 1.3e-2 / 2e-3 /
    1.3e-3 endcaps.  Muons inherit the inner track's direction (the muon stations add little
    to the direction at the vertex below a few hundred GeV, JINST 13 P06015)."""
    track_phi_res_const_barrel: float = 1.0e-4
    """a of sigma(phi) (rad), |eta| < 1.4."""
    track_phi_res_const_endcap: float = 2.0e-4
    track_phi_res_ms_barrel: float = 2.1e-3
    """b of sigma(phi) (rad GeV), |eta| < 1.4."""
    track_phi_res_ms_endcap: float = 2.6e-3
    track_eta_res_const_barrel: float = 2.8e-4
    """a of sigma(eta), |eta| < 1.4 (sigma(cot theta) = 3e-4 at eta = 0.45)."""
    track_eta_res_const_endcap: float = 3.5e-4
    track_eta_res_ms: float = 2.0e-3
    """b of sigma(eta) (GeV), all |eta| (the cot theta term grows as 1/sin^3/2 theta)."""
    d0_res_const: float = 0.012
    """sigma(d0) = a (+) b/(pT sin^1/2 theta) in mm; a ~ 12 um, b ~ 50 um GeV (P10009 Fig. 17)."""
    d0_res_slope: float = 0.050
    dz_res_const: float = 0.030
    """sigma(dz) = a (+) b/(pT sin^3/2 theta) in mm; ~30 um + 90 um GeV (P10009 Fig. 17)."""
    dz_res_slope: float = 0.090
    ip_tail_fraction: float = 0.02
    """Fraction of tracks whose impact parameter is mismeasured by 6x (material, wrong hits):
    the light-jet mistag floor of the b-tagger."""
    ip_tail_scale: float = 6.0
    chs_dz_pv: float = 1.0
    """A track closer than this in z (mm) to the PV counts as PV track (fromPV) for beta/puId."""

    # ---------------------------------------------------------------- calorimeters
    ecal_eta_max: float = 3.0
    hcal_eta_max: float = 3.0
    hf_eta_max: float = 5.0
    ecal_barrel_eta: float = 1.479
    ecal_stoch_barrel: float = 0.08
    """PF photons in jets: 8%/sqrt(E) (+) 3% (test beam 2.8% (+) 0.3%; much worse inside jets)."""
    ecal_noise_barrel: float = 0.25
    ecal_const_barrel: float = 0.03
    ecal_stoch_endcap: float = 0.08
    ecal_noise_endcap: float = 0.5
    ecal_const_endcap: float = 0.04
    photon_e_min_barrel: float = 0.5
    """PF photon thresholds (GeV), JINST 12 P10003."""
    photon_e_min_endcap: float = 1.5
    hcal_stoch: float = 1.5
    """PF neutral hadrons: 150%/sqrt(E) (+) 12%: includes PF confusion (charged/neutral overlap),
    tuned so the jet resolution at 100 GeV is ~9-10% as in JINST 12 P02014."""
    hcal_const: float = 0.12
    hcal_resp_a: float = 0.30
    """Residual non-compensation after PF calibration: response = 1 - a/E^p (0.85 at 5 GeV)."""
    hcal_resp_p: float = 0.5
    hcal_tail_fraction: float = 0.08
    """Fraction of hadron deposits losing 10-70% of their energy (cracks, dead material)."""
    neutral_had_e_min_barrel: float = 1.0
    neutral_had_e_min_endcap: float = 3.0
    hf_had_stoch: float = 2.8
    """HF hadrons: 280%/sqrt(E) (+) 11%; electromagnetic: 198%/sqrt(E) (+) 9% (EPJC 53, 139)."""
    hf_had_const: float = 0.11
    hf_em_stoch: float = 1.98
    hf_em_const: float = 0.09
    hf_e_min: float = 6.0
    """HF PF-candidate energy threshold (GeV)."""
    calo_reach_pt: float = 0.7
    """Untracked charged particles below this pT (GeV) loop in the 3.8 T field and deposit nothing."""
    ecal_pos_res: float = 0.005
    hcal_pos_res: float = 0.03
    hf_pos_res: float = 0.05

    # ---------------------------------------------------------------- muons
    muon_eta_max: float = 2.4
    muon_p_min: float = 2.5
    """Muons need p > ~2.5-3 GeV to reach the muon stations."""
    muon_pt_min: float = 3.0
    """NanoAOD muon selection: pt > 3 and (looseId or softId or highPtId)."""
    muon_global_eff: float = 0.975
    """Plateau probability that a reconstructable muon is also global (P06015 Fig. 9)."""
    muon_tracker_eff: float = 0.995
    muon_pf_eff: float = 0.995
    muon_res_const_barrel: float = 0.011
    """Combined muon sigma(pT)/pT = c(eta) (+) s(eta)*pT: 1.3-2% barrel at 20-100 GeV (P06015)."""
    muon_res_const_overlap: float = 0.018
    muon_res_const_endcap: float = 0.025
    muon_res_slope_barrel: float = 1.0e-4
    muon_res_slope_endcap: float = 2.5e-4
    muon_tail_fraction: float = 0.04
    """Fraction of muons with 4x worse curvature resolution (non-Gaussian tail, charge flips at high pT)."""
    muon_tail_scale: float = 4.0
    muon_dif_k_pion: float = 0.012
    """Decay in flight before the calorimeter: P = k/p (GeV) per tracked pion with p > 5 GeV;
    k = L/(c tau) * m * (fraction reaching the stations) ~ 1.3 m/7.8 m * 0.14 GeV * 0.5."""
    muon_dif_k_kaon: float = 0.060
    """Same for kaons: 1.3 m/3.7 m * 0.494 GeV * BR(K->mu nu)=0.64 * 0.5."""
    muon_punch_prob: float = 0.001
    """Hadron punch-through to the muon stations for p > 10 GeV (CMS: ~0.1-0.3%)."""

    # ---------------------------------------------------------------- electrons
    ecal_radius: float = 1290.0
    """Transverse radius of the ECAL barrel front face (mm), JINST 3 S08004."""
    ecal_endcap_z: float = 3170.0
    """|z| of the ECAL endcap front face (mm), behind the preshower."""
    bfield: float = 3.8
    """Solenoid field (T): bending angle sin(alpha) = 0.3 B R / (2 pT) at radius R (m)."""
    material_eta: tuple = (0.0, 0.8, 1.2, 1.5, 1.8, 2.2, 2.5)
    """Tracker material in front of the ECAL in radiation lengths vs |eta| (S08004 Fig. 3.1:
    0.4 X0 at eta = 0, about 1.8 X0 at the barrel-endcap transition, 1 X0 at 2.5)."""
    material_x0: tuple = (0.40, 0.55, 1.05, 1.75, 1.45, 1.0, 0.85)
    pixel_layer_radii: tuple = (29.0, 68.0, 109.0, 160.0)
    """Phase-1 barrel pixel layers (mm; 2017+); ``lostHits`` counts those a track should have
    crossed before its production radius (conversions) or missed (hit inefficiency)."""
    pixel_barrel_half_length: float = 270.0
    pixel_disk_z: tuple = (291.0, 396.0, 516.0)
    pixel_disk_radii: tuple = (45.0, 161.0)
    pixel_inner_miss: float = 0.02
    """Probability that the first expected pixel hit is missing (and so on for the next one)."""
    electron_track_pt_min: float = 2.0
    """GSF tracks are seeded down to pT ~ 2 GeV (P06005 Sec. 3.2)."""
    electron_pt_min: float = 5.0
    """NanoAOD keeps slimmedElectrons with pT > 5 GeV."""
    electron_eta_max: float = 2.5
    ecal_lambda_int: float = 1.1
    """ECAL depth in nuclear interaction lengths (23 cm PbWO4, lambda_I = 20.3 cm): a hadron
    starts its shower in the ECAL with probability 1 - exp(-1.1) = 0.67."""
    hadron_pi0_beta: tuple = (1.5, 3.5)
    """Beta law of the EM (pi0) fraction of a hadron shower's first interaction (mean 0.3)."""
    hadron_ecal_mip: float = 0.3
    """Energy a non-interacting charged hadron leaves in the ECAL (GeV)."""
    sc_window_deta: float = 0.05
    sc_window_dphi: float = 0.15
    """Supercluster road around the electron impact (|d eta|, |d phi|): collects brem and
    nearby photons (the 'mustache' of P05032 Sec. 4, simplified to a box)."""
    hoe_cone: float = 0.15
    """H/E: HCAL energy within Delta R < 0.15 behind the supercluster (P06005)."""
    hcal_hoe_noise: float = 0.15
    """HCAL noise in the H/E cone (GeV), scaled by sqrt(1 + nPU/20)."""
    hcal_hoe_threshold: float = 0.8
    """HCAL sums below this are not recorded (tower thresholds): H/E = 0 exactly."""
    electron_leakage: float = 0.003
    """Mean fraction of an electron shower leaking into the HCAL (exponential law)."""
    ele_stoch_barrel: float = 0.03
    """Supercluster energy resolution S/sqrt(E) (+) N/E (+) C (+) b fbrem after the
    regression, barrel and endcap (P05032: 1.5-2% barrel, 2.5-4% endcap for Z electrons)."""
    ele_noise_barrel: float = 0.35
    ele_const_barrel: float = 0.008
    ele_brem_barrel: float = 0.025
    ele_stoch_endcap: float = 0.055
    ele_noise_endcap: float = 0.7
    ele_const_endcap: float = 0.014
    ele_brem_endcap: float = 0.03
    ele_gap_res: float = 0.06
    """Extra resolution (and 3% scale loss) of superclusters in the barrel-endcap gap
    1.4442 < |eta_SC| < 1.566, which the regression cannot fully correct."""
    ele_tail_fraction: float = 0.04
    """Fraction (times fbrem) of superclusters losing 0-15% of their energy (non-Gaussian tail)."""
    gsf_brem_res: float = 0.06
    """GSF momentum resolution term per unit fbrem (the Bethe-Heitler mixture's width)."""
    gsf_ip_scale: float = 1.6
    """GSF impact-parameter resolution relative to a pion's (brem in the first layers)."""
    ele_smear_barrel: float = 0.010
    """Scale-and-smearing applied to simulated electron energies (eCorr), barrel/endcap."""
    ele_smear_endcap: float = 0.020
    sieie_em: tuple = (0.0091, 0.0265)
    """Intrinsic sigma_ieta_ieta of an electromagnetic shower (barrel, endcap)."""
    sieie_spread: float = 0.06
    """Log-normal spread of the intrinsic shower width."""
    sieie_had: tuple = (0.016, 0.040)
    """Intrinsic width of the ECAL part of a hadron shower (barrel, endcap)."""
    deta_in_res: tuple = (0.0011, 0.0022)
    """Track-seed cluster matching resolution in eta (barrel, endcap)."""
    dphi_in_res: tuple = (0.004, 0.006)
    """Track-supercluster matching resolution in phi (barrel, endcap)."""
    hadron_position_spread: float = 0.012
    """Offset of a hadron's ECAL energy centroid from its track impact (eta and phi)."""
    gsf_flip: float = 0.012
    """GSF charge flip from an early brem photon converting, P = k t^2 (t = X0 in front):
    0.2% in the central barrel, 3% near |eta| = 1.5 (P06005 Sec. 7)."""
    ctf_missing: float = 0.05
    """Probability that no KF (CTF) track shares the electron's inner hits."""
    sc_phi_res: float = 0.003
    """Supercluster phi resolution used by the SC-pixel charge estimate."""
    preselection_et: float = 4.0
    preselection_hoe: float = 0.15
    preselection_deta: float = 0.02
    preselection_dphi: float = 0.15
    """ECAL-driven GsfElectron preselection: E_T,SC > 4 GeV, H/E < 0.15, |dEtaIn| < 0.02,
    |dPhiIn| < 0.15 (P06005 Sec. 4)."""
    pf_electron_distance: float = 30.0
    """PF electron identification (tracker-driven seeding, isPFcand): the identification
    distance D (electrons.py) below this value."""
    conversion_pt_min: float = 2.0
    conversion_radius_min: float = 22.0
    conversion_radius_max: float = 600.0
    """Photons convert between the beam pipe (22 mm) and the outer tracker (mm), with
    probability 1 - exp(-7/9 t(eta))."""
    conversion_track_scale: float = 250.0
    """A conversion leg is tracked with probability exp(-R/250 mm) (fewer hits further out)."""
    conversion_partner_pt_min: float = 0.5
    conversion_vertex_eff: float = 0.85
    """The conversion veto fires when the partner leg (pT > 0.5 GeV) is tracked and the
    vertex fit converges (prob. 0.85)."""
    conversion_veto_fake: float = 0.01
    """Probability that an electron from the vertex fails the conversion veto by accident."""
    electron_mva_q80: float = 3.8
    electron_mva_q90: float = 7.0
    """Quantiles 80% / 90% of the identification distance D of prompt electrons with
    pT > 20 GeV: mvaFall17V2noIso = tanh(raw) maps them onto the Fall17 V2 WP80/WP90 cuts, so
    those working points keep their nominal efficiencies on prompt electrons. Derived with
    `python training/calibrate_refdet.py --electrons --events 1000 --seed 3` (dy_ee, PU 30)."""
    electron_mva_iso_q80: float = 6.5
    electron_mva_iso_q90: float = 12.0
    """Same for the isolation-including distance (mvaFall17V2Iso)."""
    mva_v1_scale: float = 0.34
    """Fall17 V1 MVA: tanh(0.34 raw_V2 + noise): V1's cuts sit at about a third of V2's raw
    values at the same efficiency."""
    electron_match_dr: float = 0.3
    electron_match_dpt: float = 0.5
    """NanoAOD electron MC matching: status-1 electrons or photons, Delta R < 0.3, |dpT|/pT < 0.5."""

    # ---------------------------------------------------------------- jets
    jet_r: float = 0.4
    jet_raw_pt_min: float = 5.0
    jet_pt_min: float = 15.0
    """NanoAOD stores AK4 CHS jets with corrected pT > 15 GeV."""
    jet_area_mean: float = 0.497
    """Mean active area of AK4 jets (pi R^2 x 0.99); parametrised, not measured with ghosts."""
    jet_area_sigma: float = 0.02
    jet_constant_term: float = 0.065
    """Jet-level Gaussian constant term of the pT resolution (PF confusion, non-uniformity):
    6.4% / 2.9% particle-level at 100 / 300 GeV (+) 6.5% gives about 9% / 7%, as CMS."""
    jec_offset_eta_edges: tuple = (0.0, 1.3, 2.5, 3.0, 5.2)
    jec_offset: tuple = (0.49, 0.43, 0.79, 1.12)
    """L1 offset: pT_L1 = pT_raw - c(eta) * rho * A (CHS removes charged PU, so c < 1)."""
    jec_resp_p0: tuple = (1.008, 1.0, 1.01, 0.984)
    """L2L3 response R(pT_L1) = p0 - p1 / pT_L1^p2 per eta bin (numerical inversion).
    Derived with `python training/calibrate_refdet.py --events 1000 --seed 3` (ttbar, PU 30)."""
    jec_resp_p1: tuple = (0.558, 1.566, 2.217, 0.12)
    jec_resp_p2: tuple = (0.65, 1.0, 1.0, 0.3)
    jer_noise: float = 3.0
    """Jet resolution model for MET covariance (JINST 12 P02014): N/pT (+) S/sqrt(pT) (+) C."""
    jer_stoch: float = 1.0
    jer_const: float = 0.05
    jet_phi_res: float = 0.03
    btag_knots_x: tuple = (0.0, 2.028, 2.836, 3.929, 5.63)
    """Light-jet quantiles (0, 90%, 99%, 99.9% on ttbar, max) of the b-tag score, mapped to
    DeepJet 2018 WPs (0, 0.0494, 0.2770, 0.7264, 1) so light-jet mistags are 10%/1%/0.1%
    (same calibration run, 3407 light jets: the 99.9% knot is statistically rough)."""
    btag_knots_y: tuple = (0.0, 0.0494, 0.2770, 0.7264, 1.0)
    puid_tight: tuple = (0.25, 0.12, 0.02)
    """PileupJetID-like score thresholds (tight, medium, loose) below 50 GeV (|eta| < 2.5);
    the score is the PV charged-pT fraction corrected by jet width."""
    puid_forward: tuple = (0.45, 0.35, 0.2)
    """Thresholds of the width-only score outside the tracker (|eta| > 2.5)."""

    # ---------------------------------------------------------------- MET
    met_uncl_const: float = 1.5
    """Unclustered MET resolution per axis: sigma^2 = c^2 + s^2 * sum pT(unclustered)."""
    met_uncl_stoch: float = 0.6

    # ---------------------------------------------------------------- rho
    rho_eta_max: float = 5.0
    rho_cell: float = 0.55
    """fixedGridRhoFastjetAll: median pT density over a 0.55 x 0.55 grid of PF candidates, |eta| < 5."""

    # ---------------------------------------------------------------- matching
    jet_match_dr: float = 0.2
    muon_match_dr: float = 0.3
    muon_match_dpt: float = 0.5
    """|pT_reco - pT_gen| / pT_gen below which a reco muon may match a GEN muon."""
