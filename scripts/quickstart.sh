#!/usr/bin/env bash
# Smoke run of the whole pipeline on the built-in default: no GPU, no downloads.
#
# It uses a tiny *randomly initialised* CLIP and a small generated dataset in
# EuroSAT's on-disk layout, so the accuracies it prints are meaningless: it shows
# that zero-shot CLIP and CoOp train, checkpoint, evaluate and tabulate end to end.
# (A pretrained mini CLIP with a synthetic benchmark will replace it.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUTPUT=${OUTPUT:-output/quickstart}
ASSETS="${OUTPUT}/assets"

echo "[1/4] generating the smoke assets (tiny random CLIP + EuroSAT-layout images) in ${ASSETS}"
${PYTHON} tools/make_smoke_assets.py "${ASSETS}" > /dev/null
CLIP="${ASSETS}/tiny_clip.pt"
DATA="${ASSETS}/data"

common=(--root "${DATA}" --dataset-config-file configs/datasets/eurosat.yaml
        --config-file configs/smoke/tiny_clip.yaml --backbone "${CLIP}")

run() {  # run OUTDIR ARGS...: skip finished runs, keep the console short
    local dir=$1; shift
    if [ -f "${dir}/results.json" ]; then
        echo "      results are available in ${dir}, skipping"
        return
    fi
    ${PYTHON} train.py --output-dir "${dir}" "$@" > /dev/null
    grep -E "^\* (accuracy|macro_f1)" "${dir}/log.txt" | sed 's/^/      /'
}

echo "[2/4] zero-shot CLIP"
run "${OUTPUT}/zsclip/seed1" "${common[@]}" --trainer ZeroshotCLIP --seed 1 --eval-only

echo "[3/4] CoOp, 2 epochs, seeds 1 and 2"
for seed in 1 2; do
    run "${OUTPUT}/coop/seed${seed}" "${common[@]}" --trainer CoOp --seed "${seed}" \
        DATASET.NUM_SHOTS 4 TRAINER.COOP.N_CTX 4 TRAINER.COOP.PREC fp32
done

echo "[4/4] summary over seeds (parse_test_res.py)"
${PYTHON} parse_test_res.py "${OUTPUT}/coop"
echo "Logs, checkpoints and results.json files are under ${OUTPUT}"
