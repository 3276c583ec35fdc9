#!/usr/bin/env bash
# Produce the shipped models in flashsim/pretrained/ (one command, resumable).
#
#   training/train_defaults.sh [N_EVENTS_PER_PROCESS] [DEVICE]
#
# 1. generates NANOAODSIM training samples with the reference detector (Drell-Yan for
#    muons, VBF H->mumu and QCD-like processes for jets; see `flashsim generate --list`);
# 2. trains every model with training/configs/default.yaml;
# 3. exports ONNX next to the artifacts (flashsim/pretrained/onnx/) and checks parity.
# Re-running resumes: existing samples are kept, interrupted trainings restart from
# flashsim/pretrained/checkpoint/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
DEVICE=${2:-cpu}
SAMPLES=training/samples
OUT=flashsim/pretrained
mkdir -p "$SAMPLES"
files=()
for process in $(flashsim generate --list | awk '{print $1}'); do
  file="$SAMPLES/${process}_refsim.root"
  [ -f "$file" ] || flashsim generate "$process" -n "$N" -o "$file" --refsim --seed 1 --jobs "$(nproc)"
  files+=(--data "$file")
done
flashsim train all "${files[@]}" -o "$OUT" --config training/configs/default.yaml --device "$DEVICE"
flashsim export-onnx "$OUT" -o "$OUT"
