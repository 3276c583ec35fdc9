#!/usr/bin/env bash
# Reproduce the shipped models in flashsim/pretrained/ with one command:
#
#   training/train_defaults.sh [DEVICE [MODEL_DIR]]
#
# (MODEL_DIR defaults to flashsim/pretrained; train elsewhere and copy to keep the shipped
# models whole while a training runs.)
#
# 1. generates the NANOAODSIM training samples with the reference detector:
#    Drell-Yan -> mumu, ttbar and gluon-fusion H -> mumu, default pileup (mean 30).
#    Never vbf_hmumu: the VBF H->mumu benchmark must show that the models generalise
#    to a process they did not see. Seeds 101-103; the benchmark uses 1000000 + seed.
# 2. trains every model with training/configs/default.yaml, in two parallel groups of
#    about equal length, one core each (each model has its own seed); muon and MET models
#    on the three samples above, jet and electron models on those and two more, Drell-Yan ->
#    ee and ttbar (seeds 104-105); the matched-jet models on QCD dijets too (seed 106).
#
# How the shipped set was made (each artifact's metadata records its commit, samples, seeds,
# epochs, time and device): every model with this script's commands and settings, on
# reference-detector v3 samples, on the 2-core development machine, one process per core:
# pv_flow (`flashsim train met --model pv_flow`, 7 min) at d369610 (the hard activity in the tracker); the jet
# step (`flashsim train jet`, QCD dijets included): jet_efficiency (26 s with OMP_NUM_THREADS=2)
# at e118957 (the calorimeter region), jet_btag_working_point (1 min, one thread) at a04c4cf and
# jet_flow (86 min with OMP_NUM_THREADS=2) at efa1a29 (the same training tables as a04c4cf: the
# flow given the DeepJet working point the classifier draws); met_flow (`--model met_flow`, 5 min with OMP_NUM_THREADS=2) at bf0331e (the
# muons no RECO muon took, the covariance's correlation);
# muon_efficiency (`--model muon_efficiency`, 4 s) at 46cc655 (the muon system's regions); muon_flow (`--model muon_flow`, 48 min) and
# electron_efficiency (1 min) at 8b020d0, beside other runs at the lowest priority; the four
# fake models of each lepton (the `fakes` steps: 5 min for muons, 25 min for electrons, one
# beside the other) at d306d57 (eta as its position in the acceptance), then electron_flow
# (8 min), fake_electron_flow and pileup_electron_flow (25 min) at a7e792c (mvaTTH as its
# atanh; the same rows and seeds, so the multiplicities did not change). fake_jet_flow
# (`--model fake_jet_flow`, 11 min) at 1aab197 (branch rules, the jets' electrons) with OMP_NUM_THREADS=2, one after the other on
# the idle machine, their region constants then recomputed as 06152b5 computes them (derived
# targets too; the flows' training does not read them, so a rerun gives the same weights and
# this metadata; each artifact records it); fake_jet_multiplicity at 666b7c0. Later commits change nothing these
# models read. Two threads give the same recipe, not the same bytes, as this script's one.
# ONNX files are not shipped (size): the onnx backend exports each model in memory when
# it loads, and `flashsim export-onnx flashsim/pretrained -o DIR` writes them out.
# The unfolding models (flashsim/pretrained/unfold/) have their own recipe,
# training/train_unfold.sh, run after this one (it needs no simulation models).
# Re-running resumes: existing samples are kept (their names carry events, seed and the
# reference-detector version, so samples of an older detector are never reused),
# interrupted trainings restart from their checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
SAMPLES=training/samples
OUT=${2:-flashsim/pretrained}
JOBS=$(nproc)
REFDET=$(python -c "from flashsim.refdet import DETECTOR_VERSION; print(DETECTOR_VERSION)")
mkdir -p "$SAMPLES"

sample() {  # ARRAY process events seed: generate if needed, append --data FILE to ARRAY
  local -n into=$1
  local file="$SAMPLES/$2_$3_seed$4_refdet$REFDET.root"
  [ -f "$file" ] || flashsim generate "$2" -n "$3" --seed "$4" --jobs "$JOBS" --refsim -o "$file"
  into+=(--data "$file")
}
data=()
sample data dy_mumu 60000 101
sample data ttbar 20000 102
sample data ggh_hmumu 20000 103
electron_data=()
sample electron_data dy_ee 12000 104
sample electron_data ttbar 6000 105

train() { local obj=$1; shift
          OMP_NUM_THREADS=1 flashsim train "$obj" "$@" -o "$OUT" \
            --config training/configs/default.yaml --device "$DEVICE"; }
# Jets and electrons learn from all five: jets that hold a prompt electron (Z -> ee), and
# electrons from jets and pileup, which every process has (the electron samples alone hold
# too few of them: 2k and 0.7k).
all_data=("${data[@]}" "${electron_data[@]}")
# Matched jets learn from QCD dijets too: the five samples above hold few forward jets of high
# energy (10k beyond |eta| 3 above 30 GeV, 1.4k of them above 1.5 TeV), where the VBF tag jets
# live, and the flow had underfit them.
jet_data=("${all_data[@]}")
sample jet_data qcd_dijet 40000 106
# Leptons without a GEN lepton are rare (the fake-electron flow had 8.3k rows from the five
# samples, the fake-muon flow 0.6k): the four fake models of each lepton learn from every
# sample above and 30 000 more ttbar events, the richest in them.
fake_data=("${jet_data[@]}")
sample fake_data ttbar 30000 107
fakes() {  # --model flags of the four fake models of lepton $1
  local kind
  for kind in fake_$1_multiplicity fake_$1_flow pileup_$1_multiplicity pileup_$1_flow; do
    printf -- '--model %s ' "$kind"
  done; }
(train jet "${jet_data[@]}" && train fake_jet "${all_data[@]}") & jets=$!
# shellcheck disable=SC2046  # fakes gives separate words
(train muon --model muon_efficiency --model muon_flow "${data[@]}" && train met "${data[@]}" \
  && train muon $(fakes muon) "${fake_data[@]}" \
  && train electron --model electron_efficiency --model electron_flow "${all_data[@]}" \
  && train electron $(fakes electron) "${fake_data[@]}") & others=$!
wait "$jets"; wait "$others"
rm -rf "$OUT/checkpoint"
mkdir -p runs/loss_curves && mv "$OUT"/*_loss.png runs/loss_curves/  # loss curves are not shipped
