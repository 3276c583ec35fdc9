#!/usr/bin/env bash
# Reproduce the shipped unfolding models in flashsim/pretrained/unfold/ and the README's
# `flashsim unfold` numbers:
#
#   training/train_unfold.sh [MODEL_DIR]
#
# 1. samples (reference detector, default pileup): dy_mumu and ttbar_mujets, 15 000 events
#    each for training (seeds 201, 202) and 5 000 each held out for validation (seeds
#    1000201, 1000202: never trained on);
# 2. per task, the cINN (training/configs/unfold.yaml, one core) and the IBU responses into
#    MODEL_DIR (default flashsim/pretrained/unfold: both are shipped, 1 MB together);
# 3. OmniFold's stored simulation (not shipped: it is the training sample itself, a few MB)
#    and the validation reports, into runs/unfold/.
# On the shared 2-core development machine (other jobs running) the samples took about 25
# minutes (one process per task), the dimuon cINN 110 s, the ttbar_mujets cINN about a
# minute, each validation about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-flashsim/pretrained/unfold}
SAMPLES=training/samples
RUNS=runs/unfold
mkdir -p "$SAMPLES" "$OUT" "$RUNS/models"
export OMP_NUM_THREADS=1
REFDET=$(python -c "from flashsim.refdet import DETECTOR_VERSION; print(DETECTOR_VERSION)")

sample() {  # process events seed -> path
  local file="$SAMPLES/$1_$2_seed$3_refdet$REFDET.root"
  [ -f "$file" ] || flashsim generate "$1" -n "$2" --seed "$3" --jobs 1 --refsim -o "$file" >&2
  echo "$file"
}
for task in dimuon:dy_mumu:201 ttbar_mujets:ttbar_mujets:202; do
  IFS=: read -r name process seed <<< "$task"
  train=$(sample "$process" 15000 "$seed")
  held_out=$(sample "$process" 5000 $((1000000 + seed)))
  flashsim unfold train "$name" --data "$train" -o "$OUT" --config training/configs/unfold.yaml
  flashsim unfold train "$name" --method ibu --data "$train" -o "$OUT"
  cp "$OUT/${name}"_* "$RUNS/models/"
  flashsim unfold train "$name" --method omnifold --data "$train" -o "$RUNS/models"
  flashsim unfold validate "$name" --data "$held_out" --models "$RUNS/models" -o "$RUNS/$name"
  flashsim unfold apply "$name" "$held_out" --models "$OUT" -o "$RUNS/${name}_unfolded.root"
done
rm -rf "$OUT/checkpoint"
mv "$OUT"/*_loss.png "$RUNS/"  # loss curves are not shipped
