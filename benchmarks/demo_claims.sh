#!/usr/bin/env bash
# The demo's learning claims, reproduced: `maro fit` (configs/demo.yaml) on seeds 0, 1 and 2, the cloning-only
# control (the same config and steps with the warm start never ending), then one paired `maro evaluate` per seed
# over the teacher, the warm start, the final policy and the control, on the same 400 held-out games.
#
#   bash benchmarks/demo_claims.sh [OUT]          # default OUT: runs/claims; about 10 minutes a run on 2 cores
#
# Resumable per cell: a run whose last.ckpt exists is not run again, an evaluation whose evaluation.json exists is
# not played again. Two runs go at once (JOBS=1 for one at a time). Each run's wall time goes to OUT/NAME/wall.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/claims}
JOBS=${JOBS:-2}
read -ra MARO <<< "${MARO:-.venv/bin/maro}"  # a command with its arguments
mkdir -p "$OUT"
sed 's/imitation_rounds: [0-9]*/imitation_rounds: 100000/' configs/demo.yaml > "$OUT/clone_only.yaml"

run() {  # NAME CONFIG SEED: one training run in OUT/NAME, skipped when it has finished before
    local name=$1 config=$2 seed=$3 dir="$OUT/$1"
    if compgen -G "$dir/lightning_logs/version_*/checkpoints/last.ckpt" > /dev/null; then
        echo "$name: done before, skipped"; return
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    local start=$SECONDS
    OMP_NUM_THREADS=1 "${MARO[@]}" fit -c "$config" --seed_everything "$seed" --trainer.default_root_dir "$dir" \
        > "$dir/fit.log" 2>&1
    echo "$((SECONDS - start)) s" > "$dir/wall.txt"
    echo "$name: $(cat "$dir/wall.txt")"
}

cells=("seed0 configs/demo.yaml 0" "seed1 configs/demo.yaml 1" "seed2 configs/demo.yaml 2"
       "clone_only $OUT/clone_only.yaml 0")
for cell in "${cells[@]}"; do
    # shellcheck disable=SC2086
    run $cell &
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n; done
done
wait

for seed in 0 1 2; do
    dir=$(dirname "$(compgen -G "$OUT/seed$seed/lightning_logs/version_*/checkpoints/last.ckpt" | head -1)")
    control=$(compgen -G "$OUT/clone_only/lightning_logs/version_*/checkpoints/last.ckpt" | head -1)
    [ -f "$OUT/seed$seed/paired/evaluation.json" ] && continue
    OMP_NUM_THREADS=1 "${MARO[@]}" evaluate "warm_start=$dir/warm_start.ckpt" "final=$dir/last.ckpt" \
        "clone_only=$control" --opponents linear,boulware,conceder --held-out-option "listing_range=(120,200)" \
        --out "$OUT/seed$seed/paired" \
        > "$OUT/seed$seed/paired.txt"
    echo "seed $seed: $OUT/seed$seed/paired.txt"
done
