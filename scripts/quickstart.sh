#!/usr/bin/env bash
# Smoke run of the whole pipeline on the built-in default: no GPU, no downloads.
#
# It uses a tiny *randomly initialised* CLIP and a small generated dataset in
# EuroSAT's on-disk layout, so the accuracies it prints are meaningless: it shows
# that zero-shot CLIP, CoOp and MaPLe run the base-to-novel protocol end to end
# (train on base classes, test on new ones) and that the results become a table.
# (A pretrained mini CLIP with a synthetic benchmark will replace these assets.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON=${PYTHON:-python}
export OUTPUT=${OUTPUT:-output/quickstart}
ASSETS="${OUTPUT}/assets"

echo "[1/3] generating the smoke assets (tiny random CLIP + EuroSAT-layout images) in ${ASSETS}"
"${PYTHON}" tools/make_smoke_assets.py "${ASSETS}" > /dev/null
export DATA="${ASSETS}/data"
export DATASETS=eurosat SEEDS=1 SHOTS=4 LOADEP=2
# The official configs are for ViT-B/16 at 224 px; shrink them to the tiny CLIP and 2 epochs.
export EXTRA_OPTS="--backbone ${ASSETS}/tiny_clip.pt --device cpu INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 2 \
DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 50 TRAINER.COOP.PREC fp32 TRAINER.MAPLE.PREC fp32 \
TRAINER.ZSCLIP.PREC fp32"

echo "[2/3] base-to-novel sweeps (logs under ${OUTPUT})"
for method in zsclip coop maple; do
    bash scripts/sweep.sh base2new "${method}" | grep -E "^\[[0-9]+/[0-9]+\]" | sed 's/^/      /'
done

echo "[3/3] the Base / New / HM table (parse_test_res.py --table base2new)"
"${PYTHON}" parse_test_res.py --table base2new "${OUTPUT}"
